"""The ``tritonhf`` command line against real servers, run as a user runs it."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CLASSIFIER, alive, server_config
from tritonhf.backends.busy import board_dir
from tritonhf.client import RetryPolicy, TritonHFClient, WrongProtocolError
from tritonhf.repository.checks import check_config_matches_onnx
from tritonhf.repository.configs import parse_pbtxt
from tritonhf.server.launcher import ServerConfig, TritonServer
from tritonhf.server.ports import free_ports
from tritonhf.server.process import children
from tritonhf.server.stub_watch import served_by

TRITONHF = [sys.executable, "-m", "tritonhf.cli.main"]


def tritonhf(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRITONHF, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def url_for(server: TritonServer, protocol: str) -> str:
    return server.config.grpc_url if protocol == "grpc" else server.config.http_url


def test_embed_prints_json_with_one_vector_per_text(server: TritonServer, protocol: str) -> None:
    url = url_for(server, protocol)
    done = tritonhf(
        "embed", "hello world", "ça marche", "--json", "--url", url, "--protocol", protocol
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert [r["text"] for r in results] == ["hello world", "ça marche"]
    assert all(len(r["embedding"]) == 384 and r["num_tokens"] > 2 for r in results)


def test_embed_prints_a_readable_line_per_text_marking_truncation(server: TritonServer) -> None:
    done = tritonhf("embed", "a b c", "word " * 300, "--url", server.config.grpc_url)
    assert done.returncode == 0, done.stderr
    short, long = done.stdout.splitlines()
    assert "5 tokens  dim 384" in short
    assert "256 tokens (truncated)  dim 384" in long
    as_json = tritonhf("embed", "a b c", "word " * 300, "--json", "--url", server.config.grpc_url)
    assert [r["truncated"] for r in json.loads(as_json.stdout)["results"]] == [False, True]


def test_embed_and_classify_read_texts_from_a_file_or_standard_input(
    server: TritonServer, tmp_path: Path
) -> None:
    texts = ["first text", "second text, ça marche", "third"]
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    url = server.config.grpc_url
    from_file = tritonhf("embed", "--input", str(path), "--json", "--url", url)
    assert from_file.returncode == 0, from_file.stderr
    assert [r["text"] for r in json.loads(from_file.stdout)["results"]] == texts
    from_stdin = subprocess.run(
        [*TRITONHF, "classify", "--input", "-", "--json", "--url", url],
        input="\n".join(texts),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert [r["text"] for r in json.loads(from_stdin.stdout)["results"]] == texts


def test_health_and_models_report_a_ready_server(server: TritonServer, protocol: str) -> None:
    url = url_for(server, protocol)
    health = tritonhf("health", "--url", url, "--protocol", protocol)
    assert health.returncode == 0, health.stderr
    assert "live=True ready=True" in health.stdout
    # Every pipeline of the repository, the classifier too.
    assert f"model minilm: ready=True\nmodel {CLASSIFIER}: ready=True\n" in health.stdout
    models = tritonhf("models", "--url", url, "--protocol", protocol)
    assert models.returncode == 0, models.stderr
    for name in ("minilm", "minilm_tokenizer", "minilm_model"):
        assert any(line.split()[:3] == [name, "1", "READY"] for line in models.stdout.splitlines())


def test_health_of_an_unknown_model_exits_non_zero(server: TritonServer) -> None:
    done = tritonhf("health", "--url", server.config.grpc_url, "--model", "nope")
    assert done.returncode == 1
    assert "model nope: ready=False (the server's repository has no such model" in done.stdout


@pytest.mark.parametrize(
    ("protocol", "port", "said"),
    [
        ("grpc", "http", "cannot talk gRPC to Triton at {url}: it answers HTTP/1"),
        ("http", "grpc", "cannot talk HTTP to Triton at {url}: it answered in HTTP/2"),
    ],
)
def test_the_other_protocols_port_is_named_as_such(
    server: TritonServer, protocol: str, port: str, said: str
) -> None:
    url = url_for(server, port)
    done = tritonhf("embed", "hello", "--url", url, "--protocol", protocol)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {said.format(url=url)}"), done.stderr
    health = tritonhf("health", "--url", url, "--protocol", protocol)
    assert health.returncode == 1
    assert said.format(url=url) in health.stdout


@pytest.mark.parametrize(("protocol", "port"), [("grpc", "http"), ("http", "grpc")])
def test_the_other_protocols_port_is_not_retried(
    server: TritonServer, protocol: str, port: str
) -> None:
    slow_retries = RetryPolicy(attempts=3, initial_backoff_s=10.0)  # one retry: >= 10 s
    client = TritonHFClient(url_for(server, port), protocol=protocol, retry=slow_retries)
    started = time.monotonic()
    with pytest.raises(WrongProtocolError):
        client.embed(["hello"])
    client.close()

    assert time.monotonic() - started < 5.0


def test_a_key_that_cannot_be_sent_does_not_stop_inference_without_model(
    server: TritonServer,
) -> None:
    """The default model is found without the key; a malformed one (left in a cron job's
    environment) made `embed` without --model exit 2, though inference never sends it."""
    done = subprocess.run(
        [*TRITONHF, "embed", "x y", "--url", server.config.grpc_url],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "TRITONHF_ADMIN_KEY": "garbage"},
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "dim 384" in done.stdout


def test_a_text_of_input_the_server_refuses_is_named_by_its_line(
    server: TritonServer, tmp_path: Path
) -> None:
    """The server names a text by its 0-based index in the request (`TEXT[2]`)."""
    lines = tmp_path / "texts.txt"
    lines.write_text("first\nsecond\n\u200b\u200b\nfourth\n", encoding="utf-8")
    done = tritonhf("embed", "--input", str(lines), "--url", server.config.grpc_url)

    assert done.returncode == 2
    assert f"TEXT[2] (line 3 of {lines}) has no tokens" in done.stderr


def test_a_long_http_run_started_by_a_script_stops_on_sigint_with_one_line(
    server: TritonServer, tmp_path: Path
) -> None:
    """Started in the background by a script (SIGINT ignored), embed ignored Ctrl-C; over HTTP
    gevent's hub printed `KeyboardInterrupt` and a time before `interrupted`."""
    lines = tmp_path / "texts.txt"
    lines.write_text("".join(f"sentence number {n} to embed\n" for n in range(20_000)))
    process = subprocess.Popen(
        [*TRITONHF, "embed", "--input", str(lines), "--protocol", "http",
         "--url", server.config.http_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        time.sleep(4)  # importing, then embedding
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert process.stderr is not None
        assert process.stderr.read() == "interrupted\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_steps_run_with_onnx_runtimes_telemetry_off(server: TritonServer) -> None:
    """Each step's process loads ONNX Runtime, whose Linux wheel reports usage by default."""
    assert server.pid is not None
    stubs = children(server.pid)
    assert stubs
    for stub in stubs:
        environ = Path("/proc", str(stub), "environ").read_bytes().split(b"\0")
        assert b"ORT_DISABLE_TELEMETRY=1" in environ


def test_bad_input_is_one_error_line_and_exit_code_2(server: TritonServer) -> None:
    done = tritonhf("embed", "   ", "--url", server.config.grpc_url)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: texts[0] is empty")
    assert "Traceback" not in done.stderr


def serve(config: ServerConfig, log_name: str, *extra: str) -> subprocess.Popen[str]:
    """``tritonhf serve`` on ``config``'s repository and ports, its output on one pipe."""
    return subprocess.Popen(
        [
            *TRITONHF,
            "serve",
            "--repo", str(config.repo),
            "--http-port", str(config.http_port),
            "--grpc-port", str(config.grpc_port),
            "--metrics-port", str(config.metrics_port),
            "--log-file", str(config.repo.parent / log_name),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal: a runner that ignores SIGHUP (nohup) would pass that on.
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )  # fmt: skip


def ready_line(process: subprocess.Popen[str], ready: str = "Triton is ready") -> str:
    """The first line of serve's output that says ``ready``; warnings before it are skipped
    (e.g. stubs a server killed by an earlier test left running, which serve stops)."""
    assert process.stdout is not None
    skipped = []
    for line in process.stdout:
        if ready in line:
            return line
        skipped.append(line)
    pytest.fail(f"serve ended before saying {ready!r}: {''.join(skipped)}")


@pytest.mark.parametrize(
    ("redirect", "said", "code"),
    [
        # A full disk: a traceback before.
        ("> /dev/full", "error: cannot write the output: No space left on device", 1),
        # Python's stdout is None: print wrote nowhere, with exit 0.
        (">&-", "error: cannot write the output: standard output is closed", 1),
        # Python's stdin is None: an AttributeError.
        ("<&-", "error: cannot read --input -: standard input is closed", 2),
    ],
    ids=["full-disk", "closed-stdout", "closed-stdin"],
)
def test_streams_that_cannot_be_used_are_one_line_on_stderr(
    server: TritonServer, redirect: str, said: str, code: int
) -> None:
    command = shlex.join([*TRITONHF, "embed", "--json", "--input", "-"])
    feed = "" if redirect == "<&-" else "echo one text | "
    done = subprocess.run(
        ["bash", "-c", f"{feed}{command} --url {server.config.grpc_url} {redirect}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert done.returncode == code
    assert done.stderr.splitlines()[-1].startswith(said), done.stderr
    assert "Traceback" not in done.stderr


def test_errors_never_go_to_stdout_when_stderr_is_closed() -> None:
    """`2>&-` sent the error line to stdout, in the middle of a JSON stream (`| jq`)."""
    (nothing_there,) = free_ports(1)
    command = shlex.join([*TRITONHF, "embed", "--json", "x", "--url", f"127.0.0.1:{nothing_there}"])
    done = subprocess.run(
        ["bash", "-c", f"{command} 2>&-"], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 1
    assert done.stdout == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["sigint", "sighup"])
def test_serve_starts_prints_the_endpoints_and_stops_cleanly_on_a_signal(
    repo: Path, signum: signal.Signals
) -> None:
    """SIGHUP (a closed terminal or ssh session) ended serve at once, without a drain or a
    word, and left Triton to stop on its own (a probe's finding): it now stops as Ctrl-C does."""
    config = server_config(repo)
    process = serve(config, "serve-cli.log")
    try:
        assert process.stdout is not None
        ready = ready_line(process)
        assert f"gRPC {config.grpc_url}" in ready, ready
        health = tritonhf("health", "--url", config.http_url, "--protocol", "http")
        assert health.returncode == 0, health.stdout + health.stderr
        (triton,) = children(process.pid)
        boards = list(board_dir().glob(f"tritonhf-{triton}-*"))  # busy boards, stub clocks
        assert boards
        process.send_signal(signum)
        started = time.monotonic()
        assert "stopping Triton" in process.stdout.readline()
        process.send_signal(signum)  # impatient: must not cut the drain short
        code = process.wait(timeout=60)
        rest = process.stdout.read()
        assert code == 0, rest  # with the drain's or the stop's own account of a failure
        assert time.monotonic() - started < 30
        assert "already stopping" in rest
        assert "Traceback" not in rest
        assert not [path for path in boards if path.exists()]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert tritonhf("health", "--url", config.http_url, "--protocol", "http").returncode == 1


def test_ctrl_c_while_the_models_load_leaves_no_shared_memory(repo: Path) -> None:
    """Triton killed by SIGTERM while it loads (its handler is not installed yet) left its
    stubs' /dev/shm regions (1 MiB each, in RAM until the next serve's clean-up)."""
    config = server_config(repo)
    process = serve(config, "serve-ctrl-c.log")
    try:
        deadline = time.monotonic() + 60
        regions: list[str] = []
        while not regions and time.monotonic() < deadline:
            time.sleep(0.05)
            stubs = [pid for triton in children(process.pid) for pid in children(triton)]
            regions = [served[2] for pid in stubs if (served := served_by(pid)) is not None]
        assert regions, "no stub started"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not [r for r in regions if Path("/dev/shm", r).exists()]  # noqa: S108


def test_export_with_the_native_onnxruntime_runtime_writes_a_config_that_matches_the_graph(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    done = tritonhf(
        "export", "--runtime", "onnxruntime", "--name", "native", "--repo", str(repo),
        "--max-length", "128", "--max-batch-size", "16",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "max |onnx - torch|" in done.stdout
    assert "EMBEDDING" in done.stdout
    config = parse_pbtxt((repo / "native_model" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16
    assert not (repo / "native_model" / "1" / "model.py").exists()
    check_config_matches_onnx(config, repo / "native_model" / "1" / "model.onnx")
    tokenizer = parse_pbtxt((repo / "native_tokenizer" / "config.pbtxt").read_text())
    assert tokenizer.parameters["max_length"].string_value == "128"
    manifest = json.loads((repo / "native" / "tritonhf.json").read_text())
    assert manifest["onnx"]["opset"] == 17
    assert manifest["validation"]["max_abs_diff"]["EMBEDDING"] < 1e-4


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["/definitely/not/here"], "not a folder"),
        (["--max-length", "100000"], "exceeds the model's 512 positions"),
        (["--name", "bad name!"], "not usable as a Triton model directory"),
        (["--opset", "22"], "--opset 22 is outside 10..20"),
    ],
)
def test_export_refuses_bad_options_with_one_clear_line(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    done = tritonhf("export", *args, "--repo", str(tmp_path / "repo"))
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "repo").exists()


def test_an_export_only_its_owner_can_read_is_warned_of(tmp_path: Path) -> None:
    """Under umask 077 the repository was 0700/0600 without a word; the image serves as uid
    1000, and serve as another user then failed on it."""
    done = subprocess.run(
        [*TRITONHF, "export", "--repo", str(tmp_path / "repo"), "--max-length", "64"],
        capture_output=True, text=True, timeout=600, check=False,
        preexec_fn=lambda: os.umask(0o077),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "is readable by its owner alone (drwx------" in done.stderr


def test_serve_starts_a_crashed_triton_again_and_serves(repo: Path) -> None:
    config = server_config(repo)
    process = serve(config, "serve-restart.log", "--restarts", "1")
    try:
        assert process.stdout is not None
        ready_line(process)
        (triton,) = children(process.pid)
        os.kill(triton, signal.SIGSEGV)  # what a crash of Triton 2.51 looks like to serve
        assert "tritonserver exited with code -11 (SIGSEGV): starting it again" in (
            process.stdout.readline()
        )
        assert "Triton is ready again" in ready_line(process)
        health = tritonhf("health", "--url", config.http_url, "--protocol", "http")
        assert health.returncode == 0, health.stdout + health.stderr
        embedded = tritonhf("embed", "served again", "--url", config.grpc_url, "--json")
        assert embedded.returncode == 0, embedded.stderr

        (again,) = children(process.pid)
        stubs = children(again)
        regions = [Path("/proc", str(pid), "cmdline").read_bytes().split(b"\0")[2] for pid in stubs]
        os.kill(again, signal.SIGKILL)  # the one restart is spent: serve gives up
        assert process.wait(timeout=60) == 1
        assert "(restarted 1 time(s) in 5 minutes)" in process.stdout.read()
        # The killed Triton's stubs (each a model's memory) and their /dev/shm regions go too.
        assert len(stubs) >= 3
        assert not [pid for pid in stubs if alive(pid)]
        assert not [r for r in regions if Path("/dev/shm", r.decode()).exists()]  # noqa: S108
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
