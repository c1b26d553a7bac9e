"""Cleaning up the Python backend's shared-memory regions that killed servers left behind."""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

from tritonhf.server.shm import MIN_AGE_S, mapped_files, remove_orphaned_regions, remove_regions

REGION = "triton_python_backend_shm_region_"


def region(folder: Path, name: str, *, age_s: float) -> Path:
    path = folder / f"{REGION}{name}"
    path.write_bytes(b"\0" * 4096)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_only_old_regions_that_no_process_maps_are_removed(tmp_path: Path) -> None:
    orphan = region(tmp_path, "orphan", age_s=MIN_AGE_S + 600)
    young = region(tmp_path, "starting", age_s=1)
    mapped = region(tmp_path, "serving", age_s=MIN_AGE_S + 600)
    other = tmp_path / "some_other_file"
    other.write_bytes(b"x")
    with mapped.open("r+b") as handle, mmap.mmap(handle.fileno(), 0):
        assert str(mapped) in mapped_files(tmp_path)  # as a live server's stub maps it

        removed = remove_orphaned_regions(tmp_path)

    assert removed == [orphan]
    assert not orphan.exists()
    assert all(path.exists() for path in (young, mapped, other))


def test_a_missing_folder_is_nothing_to_clean(tmp_path: Path) -> None:
    assert remove_orphaned_regions(tmp_path / "absent") == []


def test_named_regions_of_a_crashed_server_are_removed_whatever_their_age(tmp_path: Path) -> None:
    crashed = region(tmp_path, "crashed", age_s=0)
    mapped = region(tmp_path, "still-mapped", age_s=0)
    other = region(tmp_path, "another-servers", age_s=0)
    not_a_region = tmp_path / "some_other_file"
    not_a_region.write_bytes(b"x")
    names = [crashed.name, mapped.name, not_a_region.name, "../escape", f"{REGION}gone"]
    with mapped.open("r+b") as handle, mmap.mmap(handle.fileno(), 0):
        remove_regions(names, tmp_path)

    assert not crashed.exists()
    assert all(path.exists() for path in (mapped, other, not_a_region))
