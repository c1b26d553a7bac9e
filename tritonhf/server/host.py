"""What the host must offer a Triton with Python-backend steps, checked before it starts.

Each of these failed late and in Triton's words (or SIGABRT) in containers and hardened hosts:
a read-only ``/tmp`` (``readOnlyRootFilesystem``), a temporary folder mounted ``noexec``, a
small ``/dev/shm`` (Docker's default 64 MB).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tritonhf.errors import ServerError
from tritonhf.server.shm import SHM

BACKEND_TMP = Path("/tmp")  # noqa: S108  # nosec B108  # checked; only empty folders removed
"""Where the Python backend makes its folder at every start, whatever ``TMPDIR`` says."""
SMALL_SHM_BYTES = 256 * 2**20
"""Below this, a batch of long texts may not fit: each tokenizer instance's region grows to
its largest request (64 texts of up to 1 MiB each at the defaults)."""


def work_folder_parent() -> Path:
    """The temporary folder serve makes its work folder in; `ServerError` if there is none."""
    try:
        return Path(tempfile.gettempdir())
    except FileNotFoundError as exc:  # tempfile found no writable candidate at all
        raise ServerError(
            f"no writable temporary folder ({exc.strerror or exc}): serve makes the server's "
            "work folder there; set TMPDIR to a writable folder (in a container: an emptyDir "
            "on /tmp)"
        ) from None


def check_host(work_parent: Path | None) -> list[str]:
    """Raise `ServerError` for what would stop Triton's start; return warnings.

    ``work_parent``: where serve makes its work folder (None: the image's entrypoint, whose
    backends are in the image).
    """
    if not os.access(BACKEND_TMP, os.W_OK | os.X_OK):
        raise ServerError(
            f"{BACKEND_TMP} is not writable: Triton's Python backend makes a folder there at "
            "every start, whatever TMPDIR says, and aborts without one; make it writable (with "
            "readOnlyRootFilesystem, mount an emptyDir on /tmp)"
        )
    if work_parent is not None and os.statvfs(work_parent).f_flag & os.ST_NOEXEC:
        raise ServerError(
            f"{work_parent} is mounted noexec: serve runs the Python backend's stub and the "
            "request guard from a work folder there; set TMPDIR to a folder on a filesystem "
            "that allows executables"
        )
    warnings = []
    if SHM.is_dir() and (size := _size(SHM)) < SMALL_SHM_BYTES:
        warnings.append(
            f"{SHM} holds {size / 2**20:.0f} MiB: the Python backend passes each batch through "
            "it (1 MiB per model instance, growing to its largest batch), so a batch of long "
            "texts can fail; give it 1 GiB (`docker run --shm-size 1g`, compose's shm_size, a "
            "memory emptyDir on Kubernetes)"
        )
    return warnings


def _size(folder: Path) -> int:
    info = os.statvfs(folder)
    return info.f_blocks * info.f_frsize
