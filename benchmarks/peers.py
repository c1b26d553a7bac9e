"""The systems the harness compares, each started as its own server and stopped after its runs.

Every ``start_*`` is a context manager yielding a `Served`: how to make a per-worker call and
the server's process id (for RSS). The peers run from their own virtual environments under
``build/bench-venvs/`` (see ``ensure_venv``): PyTriton pins numpy<2 and an old tritonclient,
LitServe and BentoML want numpy 2, and none of them belongs in the project's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess  # nosec B404
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from closed_loop import Call
from servers.onnx_embedder import SPINNING_ENV

HERE = Path(__file__).parent
SERVERS = HERE / "servers"
VENVS = HERE.parent / "build" / "bench-venvs"
PEER_PACKAGES = {
    "pytriton": ["nvidia-pytriton==0.7.0", "onnxruntime", "tokenizers"],
    "litserve": ["litserve", "onnxruntime", "tokenizers", "numpy"],
    "bentoml": ["bentoml", "onnxruntime", "tokenizers", "numpy"],
}


@dataclass(frozen=True)
class Served:
    """A running system: a factory of per-worker calls, and its process (for memory)."""

    make_call: Callable[[], Call]
    pid: int | None
    triton_http_url: str | None = None
    """tritonhf's server: its HTTP endpoint, for the statistics and repository APIs."""


def ensure_venv(name: str, log: Callable[[str], None]) -> Path:
    """The peer's own venv (created with pip from PyPI on first use); its python."""
    python = VENVS / name / "bin" / "python"
    stamp = VENVS / name / ".bench-installed"
    if stamp.is_file():
        return python
    log(f"creating {VENVS / name} ({' '.join(PEER_PACKAGES[name])}); once, ~1-2 min")
    subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES[name]], check=True
    )
    stamp.touch()
    return python


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail with the process's exit if it dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} while starting")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310  # nosec B310
        ):
            if response.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


@contextlib.contextmanager
def _process(
    command: list[str], log_path: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603  # nosec B603
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            yield process
        finally:
            # Its own session: the group is this server and whatever it started, nothing else.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _peer_env(spinning: bool) -> dict[str, str]:
    """The environment of a peer whose ONNX Runtime threads spin (ORT's default) or not."""
    return {**os.environ, SPINNING_ENV: "1" if spinning else "0"}


def _json_post(url: str) -> Callable[[], Call]:
    def make_call() -> Call:
        import http.client

        host, port_path = url.split("//", 1)[1].split(":", 1)
        port, path = port_path.split("/", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=60)

        def call(text: str) -> object:
            body, _ = _body(url, text)
            connection.request("POST", "/" + path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
            return payload

        return call

    return make_call


def _body(url: str, text: str) -> tuple[str, None]:
    if url.endswith("/embed"):
        return json.dumps({"texts": [text]}), None
    return json.dumps({"text": text}), None


@contextlib.contextmanager
def start_fastapi(model_dir: Path, port: int, logs: Path) -> Iterator[Served]:
    """The ancestor: FastAPI + PyTorch eager (the project's venv has both)."""
    command = [
        sys.executable,
        str(SERVERS / "fastapi_torch_server.py"),
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
    ]
    with _process(command, logs / "fastapi.log") as process:
        wait_http(f"http://127.0.0.1:{port}/docs", process)
        yield Served(_json_post(f"http://127.0.0.1:{port}/embed"), process.pid)


@contextlib.contextmanager
def start_litserve(
    onnx: Path,
    tokenizer: Path,
    port: int,
    logs: Path,
    log: Callable[[str], None],
    *,
    spinning: bool = True,
) -> Iterator[Served]:
    """LitServe with batching (max 32, 5 ms timeout) on the same graph and tokenizer."""
    python = ensure_venv("litserve", log)
    command = [
        str(python),
        str(SERVERS / "litserve_server.py"),
        "--onnx",
        str(onnx),
        "--tokenizer",
        str(tokenizer),
        "--port",
        str(port),
    ]
    with _process(command, logs / "litserve.log", env=_peer_env(spinning)) as process:
        wait_http(f"http://127.0.0.1:{port}/health", process)
        yield Served(_json_post(f"http://127.0.0.1:{port}/predict"), process.pid)


@contextlib.contextmanager
def start_bentoml(
    onnx: Path,
    tokenizer: Path,
    port: int,
    logs: Path,
    log: Callable[[str], None],
    *,
    spinning: bool = True,
) -> Iterator[Served]:
    """BentoML with adaptive batching (its defaults, max 32) on the same graph and tokenizer."""
    python = ensure_venv("bentoml", log)
    env = {
        **_peer_env(spinning),
        "BENCH_ONNX": str(onnx),
        "BENCH_TOKENIZER": str(tokenizer),
        "BENTOML_DO_NOT_TRACK": "True",  # no usage reports from a benchmark
    }
    command = [
        str(python),
        "-m",
        "bentoml",
        "serve",
        "bentoml_server:Embed",
        "--working-dir",
        str(SERVERS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with _process(command, logs / "bentoml.log", env=env) as process:
        wait_http(f"http://127.0.0.1:{port}/readyz", process)
        yield Served(_json_post(f"http://127.0.0.1:{port}/embed"), process.pid)


@contextlib.contextmanager
def start_pytriton(
    onnx: Path,
    tokenizer: Path,
    ports: list[int],
    logs: Path,
    log: Callable[[str], None],
    *,
    spinning: bool = True,
) -> Iterator[Served]:
    """PyTriton (Triton + @batch dynamic batching) on the same graph and tokenizer, over gRPC."""
    python = ensure_venv("pytriton", log)
    http, grpc, metrics = ports
    env = _peer_env(spinning)
    # The stub links libpython3.X; the base interpreter's library must win over the system's.
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(sysconfig.get_config_var("LIBDIR")), env.get("LD_LIBRARY_PATH")) if p
    )
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    command = [
        str(python),
        str(SERVERS / "pytriton_server.py"),
        "--onnx",
        str(onnx),
        "--tokenizer",
        str(tokenizer),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
    ]
    with _process(command, logs / "pytriton.log", env=env) as process:
        wait_http(f"http://127.0.0.1:{http}/v2/models/embed/ready", process)
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")

        def make_call() -> Call:
            def call(text: str) -> object:
                tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[text.encode("utf-8")]], dtype=object))
                return client.infer("embed", [tensor]).as_numpy("EMBEDDING")

            return call

        yield Served(make_call, process.pid)
        client.close()


@contextlib.contextmanager
def start_tritonhf(repo: Path, logs: Path, name: str) -> Iterator[tuple[Served, Served]]:
    """Tritonhf's own server on ``repo``; calls over gRPC and over HTTP (the typed client)."""
    from tritonhf.client import TritonHFClient
    from tritonhf.server.launcher import ServerConfig, TritonServer
    from tritonhf.server.ports import free_ports

    http, grpc, metrics = free_ports(3)
    config = ServerConfig(repo=repo, http_port=http, grpc_port=grpc, metrics_port=metrics)
    with TritonServer(config, log_path=logs / f"{name}.log") as server:
        grpc_client = TritonHFClient(config.grpc_url, protocol="grpc", timeout_s=60)
        http_client = TritonHFClient(config.http_url, protocol="http", timeout_s=60)
        try:
            yield (
                Served(lambda: lambda text: grpc_client.embed([text]), server.pid, config.http_url),
                Served(lambda: lambda text: http_client.embed([text]), server.pid, config.http_url),
            )
        finally:
            grpc_client.close()
            http_client.close()
