"""Shared-memory regions of the Python backend that a killed server left in ``/dev/shm``.

Each Python-backend model instance talks to Triton through a region in ``/dev/shm`` (1 MiB,
growing with the largest request it saw). Triton removes them when it unloads the models; a
server that was killed (SIGKILL, out of memory, a crash) leaves them in RAM for good, and the
next server does not look at them. `remove_orphaned_regions` deletes those that no process
maps any more.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

SHM = Path("/dev/shm")  # noqa: S108  # nosec B108  # read and unlinked, never written
REGION_GLOB = "triton_python_backend_shm_region_*"
MIN_AGE_S = 60.0
"""A younger region may belong to a server that is starting and has not mapped it yet."""


def mapped_files(folder: Path, proc: Path = Path("/proc")) -> set[str]:
    """Every file in ``folder`` that some process we can inspect has mapped."""
    prefix = f"{folder}/"
    mapped: set[str] = set()
    for maps in proc.glob("[0-9]*/maps"):
        try:
            text = maps.read_text(encoding="utf-8", errors="replace")
        except OSError:  # the process ended, or it is not ours to read
            continue
        for line in text.splitlines():
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith(prefix):
                mapped.add(fields[5])
    return mapped


def remove_orphaned_regions(folder: Path = SHM) -> list[Path]:
    """Delete this user's regions that are older than `MIN_AGE_S` and mapped by no process."""
    if not folder.is_dir():
        return []
    in_use, now, removed = mapped_files(folder), time.time(), []
    for path in folder.glob(REGION_GLOB):
        with suppress(OSError):
            info = path.stat()
            old = now - info.st_mtime >= MIN_AGE_S
            if info.st_uid == os.getuid() and old and str(path) not in in_use:
                path.unlink()
                removed.append(path)
    return removed


def remove_regions(names: Iterable[str], folder: Path = SHM) -> None:
    """Delete the regions called ``names`` that no process maps (those of a crashed server)."""
    in_use = mapped_files(folder)
    for name in names:
        path = folder / Path(name).name
        if path.match(REGION_GLOB) and str(path) not in in_use:
            with suppress(OSError):
                path.unlink()
