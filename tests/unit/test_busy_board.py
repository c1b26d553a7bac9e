"""The busy board the model step's instances share to pick their thread count."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from pathlib import Path

import pytest

from tritonhf.backends.busy import SLOTS, BusyBoard, instance_slot, remove_stale_boards


@pytest.mark.parametrize(
    ("name", "slot"),
    [("minilm_model_0_0", 0), ("minilm_model_0_1", 1), ("m_1_2", 18), ("no-suffix", 0)],
)
def test_slot_comes_from_the_instance_names_group_and_index(name: str, slot: int) -> None:
    assert instance_slot(name) == slot


def test_an_instance_sees_the_others_busy_only_while_they_run(tmp_path: Path) -> None:
    path = tmp_path / "board"
    first, second = BusyBoard(path, 0), BusyBoard(path, 1)
    with first.running() as others:
        assert others == 0
        with second.running() as others_of_second:
            assert others_of_second == 1
    with second.running() as others:
        assert others == 0
    assert path.stat().st_size == SLOTS
    first.close()
    second.close()
    assert path.exists()  # until the server is gone: a reloaded instance may share it already


def _hold(
    path: Path, started: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event
) -> None:
    board = BusyBoard(path, 3)
    with board.running():
        started.set()
        done.wait(10)


def test_the_board_is_shared_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "board"
    board = BusyBoard(path, 0)
    context = multiprocessing.get_context("spawn")
    started, done = context.Event(), context.Event()
    other = context.Process(target=_hold, args=(path, started, done))
    other.start()
    try:
        assert started.wait(30)
        with board.running() as others:
            assert others == 1
    finally:
        done.set()
        other.join(30)
    with board.running() as others:
        assert others == 0
    board.close()


def test_boards_of_servers_that_are_gone_are_removed_when_an_instance_starts(
    tmp_path: Path,
) -> None:
    gone = tmp_path / f"tritonhf-{_exited_pid()}-minilm_model-1.busy"
    gone_clock = tmp_path / f"tritonhf-{_exited_pid()}-4242.exec"  # a stub's (execute_clock)
    alive = tmp_path / f"tritonhf-{os.getpid()}-other_model-1.busy"
    for path in (gone, gone_clock, alive):
        path.write_bytes(bytes(SLOTS))

    board = BusyBoard.for_instance("minilm_model", "1", "minilm_model_0_0", tmp_path)

    assert not gone.exists()
    assert not gone_clock.exists()
    assert alive.exists()
    assert board.path == tmp_path / f"tritonhf-{os.getppid()}-minilm_model-1.busy"
    board.close()


def test_a_version_loaded_beside_another_has_its_own_board_which_the_other_cannot_remove(
    tmp_path: Path,
) -> None:
    # A reload: version 2's instances start (same instance names) before version 1's stop.
    old = BusyBoard.for_instance("minilm_model", "1", "minilm_model_0_0", tmp_path)
    new = BusyBoard.for_instance("minilm_model", "2", "minilm_model_0_0", tmp_path)
    sibling_opened_later = "minilm_model_0_1"

    with old.running(), new.running() as others:
        assert others == 0  # version 1 busy in the same slot is not version 2's business
    old.close()
    late = BusyBoard.for_instance("minilm_model", "2", sibling_opened_later, tmp_path)

    assert late.path == new.path
    assert new.path.exists()
    with new.running(), late.running() as others:
        assert others == 1  # the same board, not a new file beside a removed one
    new.close()
    late.close()


def test_instances_of_a_version_loaded_again_share_the_board_the_old_ones_leave(
    tmp_path: Path,
) -> None:
    # A deploy back to version 1 (or a reload with a new config) while version 1's old
    # instances are still unloading: their close must not take the board from the new ones.
    old = BusyBoard.for_instance("minilm_model", "1", "minilm_model_0_0", tmp_path)
    new = BusyBoard.for_instance("minilm_model", "1", "minilm_model_0_1", tmp_path)
    old.close()
    late = BusyBoard.for_instance("minilm_model", "1", "minilm_model_0_0", tmp_path)

    with new.running(), late.running() as others:
        assert others == 1
    new.close()
    late.close()


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_board_is_allocated_when_made_and_keeps_what_others_wrote(tmp_path: Path) -> None:
    """Sparse, a full /dev/shm made the first write SIGBUS (see the execute clock's test)."""
    path = tmp_path / "board"
    first = BusyBoard(path, 0)
    assert path.stat().st_blocks > 0
    with first.running():
        second = BusyBoard(path, 1)  # made while the first runs: its byte stays
        with second.running() as others:
            assert others == 1


def test_another_users_board_is_refused_and_not_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A board another user made steers the instances' thread counts: it is not shared."""
    board = tmp_path / "tritonhf-999999999-minilm_model-1.busy"  # a server long gone
    board.write_bytes(b"\x01" * SLOTS)
    uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: uid + 1)

    with pytest.raises(PermissionError):
        BusyBoard(board, 0)
    remove_stale_boards(tmp_path)
    assert board.exists()


def test_a_fifo_under_a_boards_name_is_refused_at_once(tmp_path: Path) -> None:
    board = tmp_path / "tritonhf-1-minilm_model-1.busy"
    os.mkfifo(board)

    with pytest.raises(PermissionError):
        BusyBoard(board, 0)
