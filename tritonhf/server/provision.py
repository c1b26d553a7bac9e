"""Locate the Triton build inside the ``nvidia-pytriton`` wheel and lay out a backend folder.

The wheel ships ``tritonserver`` 2.51, the Python backend, and one backend stub per Python
version. Triton wants ``<backends>/python/`` to hold the backend library, its utils module and
the stub for the Python that will run the steps; we assemble that folder from the wheel.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tritonhf.errors import ServerError
from tritonhf.telemetry import telemetry_off

INSTALL_HINT = "install it with `pip install --no-deps nvidia-pytriton==0.7.0` (see the README)"


@dataclass(frozen=True)
class TritonDistribution:
    """Paths of the Triton server files inside the installed wheel."""

    root: Path  # .../site-packages/pytriton/tritonserver
    libs: Path  # .../site-packages/nvidia_pytriton.libs

    @property
    def binary(self) -> Path:
        """The ``tritonserver`` executable."""
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        """The Python backend's library folder."""
        return self.root / "backends" / "python"

    def stub(self, python_version: str) -> Path:
        """The Python-backend stub for ``python_version`` (``"3.11"``)."""
        return self.root / "python_backend_stubs" / python_version / "triton_python_backend_stub"


def find_distribution() -> TritonDistribution:
    """Find the server files without importing pytriton (which needs packages we do not)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            f"the Triton server wheel (nvidia-pytriton) is not installed; {INSTALL_HINT}"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    dist = TritonDistribution(
        root=package / "tritonserver", libs=package.parent / "nvidia_pytriton.libs"
    )
    if not dist.binary.is_file():
        raise ServerError(
            f"{dist.binary} is missing; the nvidia-pytriton install is broken: {INSTALL_HINT}"
        )
    return dist


def python_version() -> str:
    """The running interpreter's ``major.minor``: the stub must match it."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def check_libpython() -> None:
    """The stub links ``libpython3.X.so.1.0``; fail early with the fix if it is missing."""
    name = f"libpython{python_version()}.so.1.0"
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    if (Path(libdir) / name).exists() or ctypes.util.find_library(f"python{python_version()}"):
        return
    raise ServerError(
        f"{name} is not installed, and Triton's Python-backend stub needs it; install it with "
        f"`apt-get install libpython{python_version()}` (or `make system-deps`)"
    )


def check_stub_numpy(version: str | None = None) -> None:
    """Refuse numpy 2 in the environment the steps run in (``version``: the installed one).

    Triton 2.51's Python-backend stub unpacks string tensors wrongly under numpy 2: the server
    starts and says ready, and every request then fails with an unhealthy stub.
    """
    if version is None:
        try:
            version = metadata.version("numpy")
        except metadata.PackageNotFoundError:
            return  # the steps' own import fails then, naming numpy
    if int(version.split(".", 1)[0]) >= 2:
        raise ServerError(
            f"numpy {version} is installed, and the Python-backend stub of Triton 2.51 cannot "
            "read text tensors under numpy 2 (every request would fail): install the serve "
            "extra, which pins it: pip install 'tritonhf[serve]' (or 'numpy<2')"
        )


def prepare_backend_dir(dist: TritonDistribution, target: Path) -> Path:
    """Assemble ``target/python`` from the wheel, with the stub for this Python; return target."""
    check_libpython()
    check_stub_numpy()
    stub = dist.stub(python_version())
    if not stub.is_file():
        raise ServerError(
            f"the Triton wheel has no Python-backend stub for Python {python_version()} "
            f"(looked for {stub}); use Python 3.8-3.13"
        )
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copyfile(dist.python_backend / name, python_dir / name)
    shutil.copyfile(stub, python_dir / "triton_python_backend_stub")
    (python_dir / "triton_python_backend_stub").chmod(0o755)
    return target


def server_environment(
    dist: TritonDistribution, base: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment for ``tritonserver`` so the Python steps run in *this* environment.

    The stub runs isolated and finds its prefix through ``python3`` on PATH, so the running
    interpreter's ``bin/`` goes first. It links ``libpython3.X.so``; the base interpreter's
    library folder goes first on LD_LIBRARY_PATH so the loader does not pick a system
    libpython whose standard library differs from the one the prefix brings.
    """
    env = dict(os.environ if base is None else base)
    telemetry_off(env)
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")]
    )
    libdir = sysconfig.get_config_var("LIBDIR")
    library_path = [p for p in (libdir, str(dist.libs), env.get("LD_LIBRARY_PATH")) if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(library_path)
    return env
