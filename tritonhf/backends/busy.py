"""Which instances of a model step are running a batch right now, across their processes.

Each Python-backend instance is its own process. They share a small file (in ``/dev/shm``
where it exists) mapped into memory, one byte per instance: 1 while that instance runs a
batch. A step reads it to decide how many threads a batch may use: all the cores when the
other instances are idle (a lone request at concurrency 1), one when they are busy (so
instances overlap batches instead of fighting for the cores). Reads and writes are plain
bytes: a race costs one batch a less than ideal thread count, never a wrong result.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tritonhf.server.process import running

SLOTS = 256
_INSTANCE_SUFFIX = re.compile(r"_(\d+)_(\d+)$")


def board_dir() -> Path:
    """Shared memory where the OS has it (no disk writes), else the temporary folder."""
    shm = Path("/dev/shm")  # noqa: S108  # nosec B108  # this user's files only (open_owned)
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def instance_slot(instance_name: str) -> int:
    """The byte an instance owns, from Triton's ``<model>_<group>_<index>`` instance name."""
    found = _INSTANCE_SUFFIX.search(instance_name)
    if found is None:
        return 0
    group, index = int(found.group(1)), int(found.group(2))
    return (group * 16 + index) % SLOTS


def owned(path_or_descriptor: Path | int) -> bool:
    """Whether it is a regular file of this user (not a link, not another user's file).

    ``/dev/shm`` is writable by every user, and the files' names are predictable: a file
    another user made there under such a name is neither read, written, nor deleted.
    """
    try:
        found = (
            os.fstat(path_or_descriptor)
            if isinstance(path_or_descriptor, int)
            else os.lstat(path_or_descriptor)
        )
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid()


def open_owned(path: Path, size: int, *, fresh: bool) -> int:
    """A descriptor of ``path``, this user's regular file of ``size`` allocated bytes.

    ``fresh``: made anew (a file of an earlier process of this user is replaced); else an
    existing file of this user is shared. A file of another user is refused
    (`PermissionError`), never used: whoever controls it would control what it says.
    """
    # O_NONBLOCK: a FIFO under the name must not block the open (owned() refuses it after).
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_EXCL if fresh else 0)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        if not owned(path):
            raise PermissionError(errno.EPERM, "not this user's file", str(path)) from None
        path.unlink()
        descriptor = os.open(path, flags, 0o600)
    try:
        if not owned(descriptor):
            raise PermissionError(errno.EPERM, "not this user's file", str(path))
        # Allocated, not only sized: on a full /dev/shm the first write to a sparse page is
        # SIGBUS, which killed the stub at its first batch; this is ENOSPC here.
        os.posix_fallocate(descriptor, 0, size)
    except OSError:
        os.close(descriptor)
        if fresh and owned(path):  # made here: an empty file would read as idle
            path.unlink(missing_ok=True)
        raise
    return descriptor


def remove_stale_boards(folder: Path) -> None:
    """Delete the busy boards and stub clocks of servers that are gone (stopped before finalize)."""
    for path in [*folder.glob("tritonhf-*-*.busy"), *folder.glob("tritonhf-*-*.exec")]:
        server = path.name.split("-")[1]
        if server.isdigit() and not running(int(server)) and owned(path):
            with suppress(OSError):
                path.unlink()


class BusyBoard:
    """One byte per instance of one model in one server: 1 while it runs a batch."""

    def __init__(self, path: Path, slot: int) -> None:
        self.path = path
        self.slot = slot
        # Shared with the step's other instances: the bytes they wrote are kept.
        descriptor = open_owned(path, SLOTS, fresh=False)
        try:
            self._map = mmap.mmap(descriptor, SLOTS)
        finally:
            os.close(descriptor)

    @classmethod
    def for_instance(
        cls, model: str, version: str, instance_name: str, folder: Path | None = None
    ) -> BusyBoard:
        """The board shared by the instances of ``model`` ``version`` in this server.

        One board per version: while a reload or deploy loads version 2 beside version 1,
        their instances have the same names (same slots) and must not share a board.
        """
        folder = folder or board_dir()
        remove_stale_boards(folder)
        path = folder / f"tritonhf-{os.getppid()}-{model}-{version}.busy"
        return cls(path, instance_slot(instance_name))

    @contextmanager
    def running(self) -> Iterator[int]:
        """Mark this instance busy for the block; yields how many others are busy."""
        self._map[self.slot] = 1
        try:
            yield self._map[:].count(1) - 1
        finally:
            self._map[self.slot] = 0

    def close(self) -> None:
        """Unmap; the file stays until the server is gone (`remove_stale_boards`).

        Instances of the same version loaded again (a reload with a new config, a deploy back
        to this version) may share it already.
        """
        self._map.close()
