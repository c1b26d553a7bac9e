"""What the host must offer before Triton starts: checked in one line, not Triton's abort."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tritonhf.errors import ServerError
from tritonhf.server import host


def statvfs(*, noexec: bool = False, size: int = 2**30) -> object:
    return SimpleNamespace(
        f_flag=os.ST_NOEXEC if noexec else 0, f_blocks=size // 4096, f_frsize=4096
    )


@pytest.fixture(autouse=True)
def roomy_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "BACKEND_TMP", tmp_path)
    monkeypatch.setattr(host, "SHM", tmp_path)
    monkeypatch.setattr(os, "statvfs", lambda _: statvfs())


def test_a_roomy_host_passes_without_warnings(tmp_path: Path) -> None:
    assert host.check_host(tmp_path) == []


def test_no_writable_temporary_folder_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve died in a traceback from tempfile (a read-only root filesystem, no TMPDIR)."""

    def none_usable() -> str:
        raise FileNotFoundError(2, "No usable temporary directory found in ['/tmp']")

    monkeypatch.setattr(tempfile, "gettempdir", none_usable)
    with pytest.raises(ServerError, match=r"no writable temporary folder .* set TMPDIR"):
        host.work_folder_parent()


def test_a_read_only_tmp_is_refused_whatever_tmpdir_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Triton's Python backend makes /tmp/python_env_* and aborts (SIGABRT) without it."""
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: Path(p) != tmp_path and access(p, m))
    with pytest.raises(ServerError, match=r"is not writable: Triton's Python backend .* emptyDir"):
        host.check_host(None)


def test_a_noexec_work_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stub and the guard could not be mapped: 'failed to load all models', no reason."""
    monkeypatch.setattr(os, "statvfs", lambda _: statvfs(noexec=True))
    with pytest.raises(ServerError, match=r"is mounted noexec: .* set TMPDIR"):
        host.check_host(tmp_path)
    host.check_host(None)  # the image's entrypoint runs nothing from there


def test_a_small_dev_shm_is_warned_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "statvfs", lambda _: statvfs(size=64 * 2**20))
    (warning,) = host.check_host(tmp_path)
    assert warning.startswith(f"{tmp_path} holds 64 MiB: the Python backend")
    assert "--shm-size 1g" in warning
