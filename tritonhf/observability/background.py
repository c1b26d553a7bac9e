"""Recording off the request path: one thread per step instance does the observer's work.

Inside Triton, every metric update from a Python-backend step is a message to the server
process (~70 µs each here) and every JSON log line a formatted write; recorded before the
step returns, they added ~1.5 ms to each request at concurrency 1. The step hands the batch's
results to this thread instead and returns its responses; the thread records them in the
order they came. The queue is bounded: a step that outruns its recording waits for room, so
counts are never dropped.

Both threads are Python: the step's thread needs the GIL back as soon as ONNX Runtime returns.
Python hands it over only every ``sys.getswitchinterval()`` (5 ms by default), so starting a
recorder lowers the process's interval to `SWITCH_INTERVAL_S`; at c32 that was worth ~1.08x
(docs/benchmarks.md, step 9). The steps run in their own stub processes, so nothing else
shares the setting.

The steps also run the recording thread at the lowest CPU priority (`RECORDING_NICE`; Linux
schedules threads, so only this thread is lowered): ONNX Runtime's threads and the next
request go first, and recording takes the cores they leave idle. Under saturation it falls
behind (at concurrency 32 the metrics trailed the requests by up to ~5 s) and catches up as
the load drops; its bounded queue caps how far (docs/benchmarks.md, step 11).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

Task = tuple[Callable[..., None], tuple[Any, ...]]
SWITCH_INTERVAL_S = 0.0005
RECORDING_NICE = 19
"""The recording thread's nice value: the lowest priority."""


def lower_thread_priority(nice: int) -> None:
    """Give the calling thread the nice value ``nice`` (best effort: Linux only)."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


class BackgroundRecorder:
    """A daemon thread that runs submitted calls one at a time, in order.

    A call that raises is handed to ``on_error`` and the thread goes on with the next one.
    ``nice`` > 0 runs the thread at a lower CPU priority than the rest of the process.
    """

    def __init__(
        self,
        name: str,
        *,
        on_error: Callable[[Exception], None],
        max_pending: int = 1024,
        nice: int = 0,
    ) -> None:
        self._on_error = on_error
        self._nice = nice
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self._tasks: queue.Queue[Task | None] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[..., None], /, *args: Any) -> None:
        """Run ``call(*args)`` on the recording thread; blocks only while the queue is full."""
        if not self._thread.is_alive():
            raise RuntimeError(f"recorder {self._thread.name} is closed")
        self._tasks.put((call, args))

    def flush(self) -> None:
        """Wait until everything submitted so far has run."""
        self._tasks.join()

    def close(self, timeout_s: float = 10.0) -> None:
        """Run what is pending, then stop the thread (idempotent)."""
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join(timeout_s)

    def _run(self) -> None:
        if self._nice:
            lower_thread_priority(self._nice)
        while True:
            task = self._tasks.get()
            try:
                if task is None:
                    return
                call, args = task
                call(*args)
            except Exception as exc:  # noqa: BLE001  # a failed recording must not stop the rest
                self._on_error(exc)
            finally:
                self._tasks.task_done()
