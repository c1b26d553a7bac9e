"""Since when each Python-backend stub has been running its current batch, for the stub watch.

A stub whose ``execute`` never returns (a deadlock in a native library, a lock never
released) still passes Triton 2.51's health check, so Triton neither fails nor replaces it: the
request inside waits for ever and the instance serves nothing more. Each tritonhf step writes
the monotonic time (``CLOCK_MONOTONIC``, one clock for every process) at which it started its
current batch, 0 while idle, into a small file of its own process in shared memory,
``tritonhf-<server pid>-<stub pid>.exec``. `tritonhf.server.stub_watch` reads it, and stops a
stub that has run one batch for longer than its limit; Triton then fails that request and the
watch reloads the step as it does after any stub death.

Standard library only: the stub watch (in the container's entrypoint too) reads these files.
"""

from __future__ import annotations

import functools
import logging
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tritonhf.backends.busy import board_dir, open_owned, owned, remove_stale_boards

log = logging.getLogger(__name__)

_STAMP = struct.Struct("<q")
SUFFIX = ".exec"


def clock_path(server_pid: int, stub_pid: int, folder: Path | None = None) -> Path:
    """The file where stub ``stub_pid`` of server ``server_pid`` keeps its batch start."""
    return (folder or board_dir()) / f"tritonhf-{server_pid}-{stub_pid}{SUFFIX}"


def batch_started_ns(server_pid: int, stub_pid: int, folder: Path | None = None) -> int:
    """When the stub started the batch it is running (monotonic ns); 0 when idle or unknown.

    Unknown includes a file of another user under the stub's name (`owned`): it would decide
    when the watch kills the stub.
    """
    path = clock_path(server_pid, stub_pid, folder)
    if not owned(path):
        return 0
    try:
        # O_NONBLOCK: a FIFO swapped in meanwhile must not block the watch (its open waits
        # for a writer); owned() below then refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        data = os.read(descriptor, _STAMP.size) if owned(descriptor) else b""
    except OSError:
        return 0
    finally:
        os.close(descriptor)
    return _STAMP.unpack_from(data)[0] if len(data) >= _STAMP.size else 0


class ExecuteClock:
    """A stub's clock file, mapped; one per process, shared by the steps it holds."""

    _this_process: ClassVar[ExecuteClock | None] = None
    _failed_in: ClassVar[int | None] = None
    """The process that could not make its clock: it does not try again at every batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        self._depth = 0
        descriptor = open_owned(path, _STAMP.size, fresh=True)  # OSError: no clock
        try:
            self._map = mmap.mmap(descriptor, _STAMP.size)
        except OSError:
            path.unlink(missing_ok=True)  # this process's own: the watch reads it as idle
            raise
        finally:
            os.close(descriptor)

    @classmethod
    def of_this_process(cls) -> ExecuteClock | None:
        """The clock of this stub (opened on first use); None where no file can be made."""
        clock = cls._this_process
        if clock is None or clock.pid != os.getpid():
            if cls._failed_in == os.getpid():
                return None
            remove_stale_boards(board_dir())
            try:
                clock = cls._this_process = cls(clock_path(os.getppid(), os.getpid()))
            except OSError as exc:  # a full /dev/shm, another user's file under its name
                cls._failed_in = os.getpid()
                log.warning("this stub runs without hang detection (no clock file): %s", exc)
                return None
        return clock

    @contextmanager
    def running(self) -> Iterator[None]:
        """Stamp the start of a batch for the block (a nested block keeps the outer stamp)."""
        if self._depth == 0:
            _STAMP.pack_into(self._map, 0, time.monotonic_ns())
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                _STAMP.pack_into(self._map, 0, 0)

    @classmethod
    def release(cls) -> None:
        """Unmap and remove this process's clock file (the stub is finalizing)."""
        clock, cls._this_process, cls._failed_in = cls._this_process, None, None
        if clock is not None:
            clock._map.close()
            with suppress(OSError):
                clock.path.unlink()


Step = TypeVar("Step", bound=type)


def clocked(step: Step) -> Step:
    """Class decorator: the stub's clock opens at ``initialize``, goes with ``finalize``.

    ``execute`` stamps it for each batch.
    """
    initialize: Callable[..., Any] = step.initialize  # type: ignore[attr-defined]
    execute: Callable[..., Any] = step.execute  # type: ignore[attr-defined]
    finalize: Callable[..., Any] | None = getattr(step, "finalize", None)

    @functools.wraps(initialize)
    def opening_initialize(self: Any, args: dict[str, str]) -> None:
        initialize(self, args)
        ExecuteClock.of_this_process()  # idle stubs too: the watch reads every stub's

    @functools.wraps(execute)
    def timed_execute(self: Any, requests: list[Any]) -> list[Any]:
        clock = ExecuteClock.of_this_process()
        if clock is None:
            return execute(self, requests)  # type: ignore[no-any-return]
        with clock.running():
            return execute(self, requests)  # type: ignore[no-any-return]

    def releasing_finalize(self: Any) -> None:
        try:
            if finalize is not None:
                finalize(self)
        finally:
            ExecuteClock.release()

    step.initialize = opening_initialize  # type: ignore[attr-defined]
    step.execute = timed_execute  # type: ignore[attr-defined]
    step.finalize = releasing_finalize  # type: ignore[attr-defined]
    return step
