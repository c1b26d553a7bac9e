"""The Triton image's entrypoint (tritonhf.server.entrypoint) with the image's flags, on the
Triton of the nvidia-pytriton wheel: a stop under traffic fails no accepted request."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess  # nosec B404
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tritonhf.client import RetryPolicy, TritonHFClient
from tritonhf.errors import ClientError, ModelNotReadyError, ServerUnavailableError
from tritonhf.export.pipeline import ExportResult
from tritonhf.server.drain import is_ready
from tritonhf.server.ports import free_ports
from tritonhf.server.process import children, process_tree
from tritonhf.server.provision import find_distribution, prepare_backend_dir, server_environment

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "triton.Dockerfile"
LONG_TEXT = "a sentence that keeps going with many words in it " * 30
# What a request refused at the door may see during a stop: the ensemble unloaded ("... has no
# available versions", "not at ready state"), or the server gone (connection refused). A request
# the server had accepted and then failed between two steps reads "Server is stopping".
REFUSED = (ModelNotReadyError, ServerUnavailableError)
FAILED_IN_FLIGHT = re.compile(r"is stopping|stopped accepting|in ensemble", re.IGNORECASE)


def image_entrypoint_and_flags() -> tuple[list[str], list[str]]:
    """The Triton image's ENTRYPOINT and CMD (exec form) from docker/triton.Dockerfile."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = dict(re.findall(r"^(ENTRYPOINT|CMD) (\[.*\])\s*$", text, re.MULTILINE))
    return json.loads(found["ENTRYPOINT"]), json.loads(found["CMD"])


class Entrypoint:
    """The entrypoint module run with the image's flags, adapted to this machine."""

    def __init__(self, repo: Path, workdir: Path, *, model_control: str = "explicit") -> None:
        entrypoint, cmd = image_entrypoint_and_flags()
        # NGC's entrypoint script (absent here) ends with `exec "$@"`: what follows it runs.
        entrypoint = entrypoint[entrypoint.index("python3") :]
        assert entrypoint[:2] == ["python3", "-m"], entrypoint
        dist = find_distribution()
        http, grpc, metrics = free_ports(3)
        local = {
            "--model-repository": str(repo),
            "--http-port": str(http),
            "--grpc-port": str(grpc),
            "--metrics-port": str(metrics),
            "--exit-timeout-secs": "30",
            "--model-control-mode": model_control,
        }
        flags = [_override(flag, local) for flag in cmd]
        if model_control != "explicit":  # Triton loads models by name in explicit mode only
            flags = [flag for flag in flags if not flag.startswith("--load-model")]
        flags += [f"{k}={v}" for k, v in local.items() if not any(f.startswith(k) for f in cmd)]
        flags += [
            # A container listens on every interface; a test binds loopback only.
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--metrics-address=127.0.0.1",
            f"--backend-directory={prepare_backend_dir(dist, workdir / 'backends')}",
            "--allow-gpu-metrics=false",  # the wheel has no DCGM
        ]
        env = server_environment(dist)
        env["PATH"] = os.pathsep.join([str(dist.binary.parent), env["PATH"]])
        self.http_url = f"127.0.0.1:{http}"
        self.grpc_url = f"127.0.0.1:{grpc}"
        self.log = workdir / "entrypoint.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # nosec B603
                [sys.executable, *entrypoint[1:], *flags],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not is_ready(self.http_url):
            assert self.process.poll() is None, f"exited {self.process.returncode}: {self.tail()}"
            assert time.monotonic() < deadline, f"not ready after {timeout_s} s: {self.tail()}"
            time.sleep(0.25)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])

    def stop(self) -> None:
        """Whatever happens in a test: nothing of this entrypoint outlives it."""
        group = process_tree(self.process.pid)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in group:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue


def _override(flag: str, local: dict[str, str]) -> str:
    key = flag.split("=", 1)[0]
    return f"{key}={local[key]}" if key in local else flag


def alive(pids: list[int]) -> list[int]:
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.append(pid)
    return running


@pytest.fixture
def pipeline(exported: ExportResult, tmp_path: Path) -> Path:
    """The session's exported MiniLM pipeline (ensemble, tokenizer, model, feedback), copied."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for folder in exported.folders:
        shutil.copytree(folder, repo / folder.name)
    return repo


@pytest.fixture
def started(pipeline: Path, tmp_path: Path) -> Iterator[Entrypoint]:
    entrypoint = Entrypoint(pipeline, tmp_path)
    try:
        entrypoint.wait_ready()
        yield entrypoint
    finally:
        entrypoint.stop()


class Stream:
    """Concurrent requests until stopped; records each outcome."""

    def __init__(self, url: str, workers: int) -> None:
        self.outcomes: Counter[str] = Counter()
        self.failures: list[ClientError] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client = TritonHFClient(url, retry=RetryPolicy(attempts=1), timeout_s=60)
        self._threads = [threading.Thread(target=self._run) for _ in range(workers)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._client.embed([LONG_TEXT] * 4)
                outcome = "ok"
            except ClientError as exc:
                outcome = type(exc).__name__
                with self._lock:
                    self.failures.append(exc)
                time.sleep(0.05)  # refused: a client backs off
            with self._lock:
                self.outcomes[outcome] += 1

    def __enter__(self) -> Stream:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)
        self._client.close()


def test_sigterm_under_traffic_drains_so_no_accepted_request_fails(
    started: Entrypoint,
) -> None:
    tree = process_tree(started.process.pid)
    assert len(tree) > 2, "the entrypoint, tritonserver and its Python-backend stubs"
    with Stream(started.grpc_url, workers=6) as stream:
        deadline = time.monotonic() + 30
        while stream.outcomes["ok"] < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        began = time.monotonic()
        started.process.send_signal(signal.SIGTERM)
        code = started.process.wait(timeout=60)
        took = time.monotonic() - began
    print(f"\nSIGTERM under traffic: {dict(stream.outcomes)}, exit {code} in {took:.1f} s")
    for failure in sorted({f"{type(f).__name__}: {f}" for f in stream.failures}):
        print(f"  {failure}")
    in_flight = [f for f in stream.failures if FAILED_IN_FLIGHT.search(str(f))]
    assert not in_flight, f"accepted requests failed during the stop: {in_flight[:3]}"
    assert all(isinstance(f, REFUSED) for f in stream.failures), stream.outcomes
    assert stream.outcomes["ok"] >= 6
    assert code == 0, started.tail()
    assert "drained: no model loaded" in started.tail()
    assert not alive(tree), "the entrypoint left Triton or a stub running"


def test_a_killed_tokenizer_stub_is_replaced_while_the_container_runs(started: Entrypoint) -> None:
    (server,) = children(started.process.pid)
    killed = [
        pid
        for pid in children(server)
        if b"/minilm_tokenizer/1/model.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(killed) == 2  # two tokenizer instances
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    client = TritonHFClient(started.grpc_url, retry=RetryPolicy(attempts=1))
    deadline, served = time.monotonic() + 60, False
    while not served and time.monotonic() < deadline:
        try:
            served = client.embed(["served again"]).shape == (1, 384)
        except ClientError:
            time.sleep(0.1)
    client.close()
    assert served, started.tail()
    assert "stub of minilm_tokenizer (version 1) died: reloading" in started.tail()
    assert "reloaded minilm_tokenizer: new stubs serve it" in started.tail()


def test_without_explicit_model_control_the_signal_is_forwarded(tmp_path: Path) -> None:
    empty = tmp_path / "empty-repo"
    empty.mkdir()
    entrypoint = Entrypoint(empty, tmp_path, model_control="none")
    try:
        entrypoint.wait_ready()
        entrypoint.process.send_signal(signal.SIGINT)
        assert entrypoint.process.wait(timeout=30) == 0, entrypoint.tail()
        assert "SIGINT: forwarding it to Triton" in entrypoint.tail()
    finally:
        entrypoint.stop()


def test_a_triton_that_cannot_start_ends_the_entrypoint_with_its_code(tmp_path: Path) -> None:
    entrypoint = Entrypoint(tmp_path / "missing-repo", tmp_path)
    try:
        code = entrypoint.process.wait(timeout=60)
        assert code != 0, entrypoint.tail()
        assert "failed to stat" in entrypoint.tail() or "model repository" in entrypoint.tail()
    finally:
        entrypoint.stop()
