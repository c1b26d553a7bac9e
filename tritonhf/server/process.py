"""The processes of a server: its Python-backend stubs, their memory, and orphaned ones."""

from __future__ import annotations

import math
import os
import signal
import stat
from contextlib import suppress
from pathlib import Path

PROC = Path("/proc")


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux ``/proc``), zombies included."""
    found = []
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux ``/proc``)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children(current))
    return tree


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, 0 if it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` plus its descendants: Triton and its Python-backend stubs together."""
    return sum(rss_bytes(p) for p in process_tree(pid))


STUB = "triton_python_backend_stub"
SERVER = "tritonserver"


def _program_path(pid: int) -> Path:
    """The program ``pid`` runs, as its argv[0] names it.

    ``Path()`` if it is gone, or a zombie (whose arguments are gone).
    """
    try:
        argv0 = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return Path()
    return Path(argv0.decode(errors="replace"))


def _program(pid: int) -> str:
    """The file name of the program ``pid`` runs (its argv[0]); "" if it is gone."""
    return _program_path(pid).name


def _parent(pid: int) -> int:
    """``pid``'s parent (0 if it is gone); the command name in ``stat`` may hold spaces."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def orphaned_stubs() -> list[int]:
    """Python-backend stubs of this user whose Triton is gone (their parent is no tritonserver).

    Left when Triton and the launcher are both killed (``kill -9``): stuck, they ignore
    SIGTERM and hold their memory (~300 MB each) and their ``/dev/shm`` regions.
    """
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            mine = entry.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and _program(pid) == STUB and _program(_parent(pid)) != SERVER:
            found.append(pid)
    return found


def oldest_server_start() -> float:
    """When the longest-running ``tritonserver`` we can see started (epoch seconds); inf if none."""
    try:
        boot = next(
            float(line.split()[1])
            for line in (PROC / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return 0.0  # unknown: treat every folder as possibly in use
    ticks = os.sysconf("SC_CLK_TCK")
    starts = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and _program(int(entry.name)) == SERVER:
            with suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                starts.append(boot + int(stat.rsplit(")", 1)[1].split()[19]) / ticks)
    return min(starts, default=math.inf)


def running(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def raise_open_files_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit (a server's child).

    Each HTTP or gRPC connection takes a descriptor: at a soft limit of 1,024, the default of
    many Linux sessions, ~1,000 idle keep-alive connections would stop Triton accepting any
    (every port, metrics included). Raising the soft limit up to the hard one needs no
    privilege; the hard limit is left alone.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard
    if hard == resource.RLIM_INFINITY:  # not a number the kernel takes for open files
        try:
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            return
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        with suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


def pid_in_name(name: str, prefix: str) -> int | None:
    """The process id in ``<prefix><pid>-...``, a folder a process named for itself; else None."""
    pid = name.removeprefix(prefix).split("-", 1)[0]
    return int(pid) if name.startswith(prefix) and pid.isdigit() else None


def own_folder(path: Path) -> bool:
    """Whether ``path`` is a folder (not a link to one) of this process's user.

    Leftovers are found by name in folders every user writes (``/tmp``, a repository's
    parent): one of another user's under such a name is not ours to read, move or delete.
    """
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def stubs_started_from(backends: Path) -> list[int]:
    """Python-backend stubs running the stub program under ``backends``, a server's own folder.

    Each server start has its own backend folder, so these are the stubs of one Triton, found
    even after it died and they were reparented; a zombie (its arguments gone) is not.
    """
    pids = (int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit())
    return [
        pid
        for pid in pids
        if (program := _program_path(pid)).name == STUB and program.is_relative_to(backends)
    ]


def stop_orphaned_stubs() -> list[int]:
    """SIGKILL every `orphaned_stubs` process; return their pids."""
    stopped = []
    for pid in orphaned_stubs():
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            stopped.append(pid)
    return stopped
