"""`tritonhf bench` against the session's real server: perf_analyzer runs, its numbers are sane."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import alive
from tritonhf.bench import BenchOptions, run_bench
from tritonhf.server.launcher import TritonServer
from tritonhf.server.process import children


def test_bench_measures_the_served_ensemble_over_grpc_and_http(
    server: TritonServer, tmp_path: Path
) -> None:
    report = run_bench(
        BenchOptions(
            models=("minilm",),
            url_grpc=server.config.grpc_url,
            url_http=server.config.http_url,
            repo=server.config.repo,
            concurrencies=(1, 4),
            measurement_ms=500,
            out=tmp_path,
        )
    )

    assert report.failures == ()
    assert {(p.protocol, p.concurrency) for p in report.points} == {
        ("grpc", 1),
        ("grpc", 4),
        ("http", 1),
        ("http", 4),
    }
    for point in report.points:
        assert point.config == "minilm"
        assert point.throughput > 0
        assert 0 < point.p50_ms <= point.p90_ms <= point.p99_ms
        assert point.avg_ms > 0
    # The input data is the corpus, measured with the served tokenizer.
    assert report.lengths is not None
    assert report.lengths.texts > 200
    with report.csv_path.open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4
    assert report.plot_path.read_bytes()[:4] == b"\x89PNG"
    summary = report.summary_path.read_text()
    assert "| minilm | grpc | 4 |" in summary
    assert "perf_analyzer 2.51.0" in summary


def test_a_sweep_with_a_failed_point_writes_what_ran_and_exits_1(
    server: TritonServer, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "tritonhf.cli.main", "bench",
            "--model", "minilm", "--model", "no_such_model",
            # Only --url-grpc, no --protocol: gRPC alone is measured.
            "--url-grpc", server.config.grpc_url, "--concurrency", "1", "--measurement-ms", "500",
            "--out", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed: no_such_model grpc c1" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: 1 point(s) of the sweep failed"
    with (tmp_path / "bench.csv").open(newline="") as handle:
        assert [row["config"] for row in csv.DictReader(handle)] == ["minilm"]


def test_the_other_protocols_port_is_named_before_the_sweep(
    server: TritonServer, tmp_path: Path
) -> None:
    """perf_analyzer said only "Socket closed" at every point of a sweep on the HTTP port."""
    done = subprocess.run(
        [
            sys.executable, "-m", "tritonhf.cli.main", "bench",
            "--url-grpc", server.config.http_url, "--concurrency", "1,8",
            "--measurement-ms", "500", "--out", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot measure over grpc at {server.config.http_url}: "), last
    assert "it is Triton's http port: --url-grpc takes the grpc port (default 8001)" in last
    assert "FAILED" not in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_bench_leaves_no_perf_analyzer_loading_the_server(
    server: TritonServer, tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGTERM (a cron wrapper, a supervisor that signals the main pid) ended bench and left
    perf_analyzer running under init, loading the server and writing into --out."""
    bench = subprocess.Popen(
        [
            sys.executable, "-m", "tritonhf.cli.main", "bench",
            "--url-grpc", server.config.grpc_url, "--concurrency", "1",
            "--measurement-ms", "20000", "--out", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (measuring := children(bench.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert measuring, "perf_analyzer never started"
        bench.send_signal(signum)
        assert bench.wait(timeout=30) == (143 if signum == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.monotonic() + 10
        while [pid for pid in measuring if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in measuring if alive(pid)]
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()


def test_a_sweep_whose_own_server_dies_stops_saying_so(
    server: TritonServer, tmp_path: Path
) -> None:
    """bench's own server killed mid-sweep: every later point failed with perf_analyzer's
    "Connection refused", and nothing said the server bench started had exited."""
    repo = tmp_path / "repo"
    for step in ("minilm", "minilm_tokenizer", "minilm_model"):  # one pipeline: a quick start
        shutil.copytree(server.config.repo / step, repo / step)
    theirs = set(children(os.getpid())) - {server.pid}
    killed: list[int] = []

    def kill_the_server_after_the_first_point(line: str) -> None:
        if "req/s" in line and not killed:
            (own,) = set(children(os.getpid())) - theirs - {server.pid}
            os.kill(own, signal.SIGKILL)
            killed.append(own)

    report = run_bench(
        BenchOptions(
            models=("minilm",),
            repo=repo,
            concurrencies=(1, 2, 4),
            protocols=("grpc",),
            measurement_ms=300,
            out=tmp_path / "out",
        ),
        progress=kill_the_server_after_the_first_point,
    )

    assert killed
    assert [p.concurrency for p in report.points] == [1]
    (failed,) = report.failures  # the next point, and why the sweep ends there
    assert failed.startswith("minilm grpc c2: ")
    assert "(the server bench started exited (code -9) during the sweep" in failed
    assert str(tmp_path / "out" / "tritonserver.log") in failed
