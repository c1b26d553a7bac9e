"""Build and preload the library that keeps single requests from killing Triton 2.51.

Asking Triton 2.51 for the classification extension on a BYTES output (a classifier's
``LABEL``) divides by zero and kills the server; a shape whose size overflows
(``[1, 2**61 + 4]`` with 32 bytes of data) kills the Python-backend stub it reaches; a large
form-encoded HTTP body or a deeply nested JSON one overflows the HTTP thread's stack.
Preloaded, the library turns each into a refusal, keeps Triton's HTTP frontend from dropping
responses under load, and answers a malformed HTTP request with 400 rather than Triton's 500.
Its sources (`request_guard/`: ``guard.h``, then a C file a fix) say what each fix does and
how. `tritonhf serve` compiles it into the server's work folder at each start (a fraction of a
second with gcc); the Triton image compiles it when it is built.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404
from pathlib import Path

from tritonhf.errors import ServerError

SOURCES = Path(__file__).with_name("request_guard")
"""The guard's C sources: ``guard.h`` and a ``.c`` file per fix."""
LIBRARY = "libtritonhf_request_guard.so"
COMPILE_TIMEOUT_S = 120


def build_guard(folder: Path) -> Path:
    """Compile the guard into ``folder``; `ServerError`, naming the fix, when it cannot."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ServerError(
            "no C compiler (cc) to build tritonhf's request guard, so the single requests "
            "known to kill Triton 2.51 (the classification extension on a classifier's LABEL, "
            "a deeply nested JSON or large form-encoded HTTP body) still do, and its HTTP "
            "frontend can drop responses under load: install gcc (apt-get install gcc)"
        )
    library = folder / LIBRARY
    sources = sorted(str(path) for path in SOURCES.glob("*.c"))
    command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), *sources, "-ldl"]
    try:
        done = subprocess.run(  # noqa: S603  # nosec B603  # our own source, no shell
            command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"could not build tritonhf's request guard: {exc}") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
        raise ServerError(f"could not build tritonhf's request guard: {first}")
    return library


def with_preload(env: dict[str, str], library: Path) -> dict[str, str]:
    """``env`` with ``library`` first in ``LD_PRELOAD`` (what was there stays after it)."""
    preload = " ".join(p for p in (str(library), env.get("LD_PRELOAD", "")) if p)
    return {**env, "LD_PRELOAD": preload}
