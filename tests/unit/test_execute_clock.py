"""The clock each step keeps of the batch it is running, which the stub watch reads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tritonhf.backends import execute_clock
from tritonhf.backends.execute_clock import ExecuteClock, batch_started_ns, clock_path, clocked


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(execute_clock, "board_dir", lambda: tmp_path)
    yield tmp_path
    ExecuteClock.release()


def started() -> int:
    return batch_started_ns(os.getppid(), os.getpid())


def test_the_clock_holds_the_start_of_the_outermost_batch_while_it_runs() -> None:
    clock = ExecuteClock.of_this_process()
    assert clock is not None
    assert ExecuteClock.of_this_process() is clock  # one per process
    assert started() == 0
    before = time.monotonic_ns()
    with clock.running():
        outer = started()
        assert before <= outer <= time.monotonic_ns()
        with clock.running():
            assert started() == outer
        assert started() == outer
    assert started() == 0


def test_a_clocked_step_stamps_its_batches_and_its_finalize_removes_the_file() -> None:
    seen: list[int] = []

    @clocked
    class Step:  # like the feedback step: no finalize of its own
        def initialize(self, args: dict[str, str]) -> None:
            pass

        def execute(self, requests: list[Any]) -> list[Any]:
            seen.append(started())
            return [f"answer to {r}" for r in requests]

    step = Step()
    path = clock_path(os.getppid(), os.getpid())
    step.initialize({})
    assert path.exists()  # before any batch: the watch reads idle stubs' clocks too
    assert step.execute(["a", "b"]) == ["answer to a", "answer to b"]
    assert seen[0] > 0
    assert started() == 0

    step.finalize()  # type: ignore[attr-defined]
    assert not path.exists()
    step.finalize()  # type: ignore[attr-defined]  # twice (the merged step's two parts): fine


def test_a_batch_that_raises_clears_the_clock() -> None:
    @clocked
    class Failing:
        def initialize(self, args: dict[str, str]) -> None:
            pass

        def execute(self, requests: list[Any]) -> list[Any]:
            raise RuntimeError("boom")

        def finalize(self) -> None:
            pass

    with pytest.raises(RuntimeError, match="boom"):
        Failing().execute([])
    assert started() == 0


def test_a_missing_or_short_clock_file_reads_as_idle(folder: Path) -> None:
    assert batch_started_ns(1, 2, folder) == 0
    clock_path(1, 2, folder).write_bytes(b"\x01")
    assert batch_started_ns(1, 2, folder) == 0


def test_the_clock_file_is_allocated_when_made_not_at_the_first_batch(folder: Path) -> None:
    """A sized but sparse file on a full /dev/shm is SIGBUS at the first write: the stub died
    at its first batch, for good (a probe, Docker's 64 MB /dev/shm). Allocated, a full one is
    an OSError where the clock is made, and the step runs without it."""
    clock = ExecuteClock.of_this_process()
    assert clock is not None
    assert clock.path.stat().st_blocks > 0


def test_a_clock_that_cannot_be_allocated_is_none_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def full(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    assert ExecuteClock.of_this_process() is None
    assert not clock_path(os.getppid(), os.getpid()).exists()


def another_users(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, files made so far belong to another user (this process's uid moved)."""
    uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: uid + 1)


def test_another_users_clock_file_under_a_stubs_name_is_neither_used_nor_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shared memory is everyone's: a user who made the files of the next stub pids (1 ns),
    got every step killed as hung right after start, and then controlled the clocks."""
    path = clock_path(os.getppid(), os.getpid())
    path.write_bytes((1).to_bytes(8, "little"))
    another_users(monkeypatch)

    assert started() == 0  # not "running a batch since boot"
    assert ExecuteClock.of_this_process() is None  # the step runs without a clock
    assert path.read_bytes() == (1).to_bytes(8, "little")  # and leaves theirs alone


def test_a_clock_file_of_this_user_left_under_the_stubs_pid_is_replaced() -> None:
    path = clock_path(os.getppid(), os.getpid())
    path.write_bytes((1).to_bytes(8, "little"))

    clock = ExecuteClock.of_this_process()

    assert clock is not None
    assert started() == 0


def test_a_fifo_under_a_stubs_clock_name_neither_blocks_the_watch_nor_is_used() -> None:
    """A named pipe at the clock's path: the watch's open waited for a writer, for good, and
    killed stubs were never reloaded again."""
    path = clock_path(os.getppid(), os.getpid())
    os.mkfifo(path)
    read: list[int] = []
    reader = threading.Thread(target=lambda: read.append(started()), daemon=True)

    reader.start()
    reader.join(timeout=5)

    assert read == [0]
    assert ExecuteClock.of_this_process() is None


def test_a_stub_that_could_not_make_its_clock_does_not_try_at_every_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[Path] = []

    def refused(path: Path, size: int, *, fresh: bool) -> int:
        attempts.append(path)
        raise PermissionError(1, "not this user's file", str(path))

    monkeypatch.setattr(execute_clock, "open_owned", refused)

    assert ExecuteClock.of_this_process() is None
    assert ExecuteClock.of_this_process() is None
    assert len(attempts) == 1
