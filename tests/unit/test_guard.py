"""Building the preload library that keeps a classification request from killing Triton.

Its effect on the real server is tested in tests/integration/test_bad_input.py.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from tritonhf.errors import ServerError
from tritonhf.server.guard import LIBRARY, build_guard, with_preload


def test_the_guard_builds_and_outside_triton_answers_what_the_library_would(
    tmp_path: Path,
) -> None:
    library = build_guard(tmp_path)
    assert library == tmp_path / LIBRARY
    loaded = ctypes.CDLL(str(library))
    byte_size = loaded.TRITONSERVER_DataTypeByteSize
    byte_size.restype = ctypes.c_uint32
    assert byte_size(13) == 0  # no libtritonserver here, and not called from Triton's code


def test_without_a_compiler_the_error_says_what_is_exposed_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ServerError, match=r"known to kill Triton 2\.51 .* still do.*: install gcc"):
        build_guard(tmp_path)


@pytest.mark.parametrize(
    ("compiler", "message"),
    [("/nonexistent/cc", "No such file"), ("false", r"\(no message\)")],
)
def test_a_compiler_that_fails_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiler: str, message: str
) -> None:
    monkeypatch.setenv("CC", compiler)
    with pytest.raises(ServerError, match=f"could not build .*request guard: .*{message}"):
        build_guard(tmp_path)


def test_the_guard_goes_first_in_ld_preload_and_keeps_what_was_there() -> None:
    library = Path("/srv/guard.so")
    assert with_preload({}, library)["LD_PRELOAD"] == "/srv/guard.so"
    env = with_preload({"LD_PRELOAD": "/opt/other.so", "PATH": "/bin"}, library)
    assert env == {"LD_PRELOAD": "/srv/guard.so /opt/other.so", "PATH": "/bin"}


def test_in_a_tritonserver_without_the_symbols_it_says_what_stays_exposed(tmp_path: Path) -> None:
    import shutil
    import subprocess  # nosec B404

    library = build_guard(tmp_path)
    stripped = tmp_path / "tritonserver"  # a program of that name without Triton's symbols
    shutil.copy("/bin/true", stripped)
    done = subprocess.run(  # nosec B603
        [str(stripped)], env=with_preload({}, library), capture_output=True, text=True, check=True
    )
    assert "tritonhf request guard: this tritonserver lacks a TopkClassifications" in done.stderr
    assert "HTTP responses can be lost under load" in done.stderr
    assert "GetInferenceHeaderLength or Handle symbol" in done.stderr
    assert "a refused compressed request leaks its inflated body" in done.stderr
    assert "malformed HTTP requests are answered 500" in done.stderr
    other = subprocess.run(  # nosec B603
        ["/bin/true"], env=with_preload({}, library), capture_output=True, text=True, check=True
    )
    assert other.stderr == ""  # a backend stub, or anything else, is left alone
