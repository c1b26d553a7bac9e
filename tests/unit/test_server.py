from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess  # nosec B404
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tritonhf.errors import ConfigError, ServerError
from tritonhf.server import admin
from tritonhf.server.drain import drain
from tritonhf.server.entrypoint import TritonFlags, exit_status, with_admin_key
from tritonhf.server.entrypoint import main as entrypoint_main
from tritonhf.server.launcher import (
    ModelControl,
    RestartBudget,
    ServerConfig,
    TritonServer,
    exit_description,
    missing_package_hint,
    remove_stale_env_folders,
    remove_stale_workdirs,
)
from tritonhf.server.ports import free_ports
from tritonhf.server.process import oldest_server_start
from tritonhf.server.provision import (
    TritonDistribution,
    check_stub_numpy,
    find_distribution,
    prepare_backend_dir,
    python_version,
    server_environment,
)

LIBDIR = sysconfig.get_config_var("LIBDIR")


@pytest.fixture(scope="module")
def dist() -> TritonDistribution:
    return find_distribution()


# provision ---------------------------------------------------------------------------------


def test_find_distribution_finds_an_executable_tritonserver(dist: TritonDistribution) -> None:
    assert dist.binary.name == "tritonserver"
    assert dist.binary.is_file()
    assert os.access(dist.binary, os.X_OK)
    assert (dist.python_backend / "libtriton_python.so").is_file()
    assert dist.stub(python_version()).is_file()


def test_python_version_is_the_running_interpreters() -> None:
    assert python_version() == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_prepare_backend_dir_assembles_the_python_backend_with_this_pythons_stub(
    dist: TritonDistribution, tmp_path: Path
) -> None:
    target = tmp_path / "backends"

    assert prepare_backend_dir(dist, target) == target

    python_dir = target / "python"
    assert {p.name for p in python_dir.iterdir()} == {
        "libtriton_python.so",
        "triton_python_backend_utils.py",
        "triton_python_backend_stub",
    }
    stub = python_dir / "triton_python_backend_stub"
    assert stub.stat().st_mode & stat.S_IXUSR
    assert stub.read_bytes() == dist.stub(python_version()).read_bytes()
    library = python_dir / "libtriton_python.so"
    assert library.stat().st_size == (dist.python_backend / "libtriton_python.so").stat().st_size


def test_prepare_backend_dir_can_run_twice_on_the_same_folder(
    dist: TritonDistribution, tmp_path: Path
) -> None:
    prepare_backend_dir(dist, tmp_path)
    prepare_backend_dir(dist, tmp_path)

    assert len(list((tmp_path / "python").iterdir())) == 3


def test_prepare_backend_dir_without_a_stub_for_this_python_is_a_server_error(
    tmp_path: Path,
) -> None:
    empty = TritonDistribution(root=tmp_path / "tritonserver", libs=tmp_path / "libs")

    with pytest.raises(ServerError, match=f"no Python-backend stub for Python {python_version()}"):
        prepare_backend_dir(empty, tmp_path / "backends")


def test_numpy_2_where_the_steps_run_is_refused_naming_the_serve_extra() -> None:
    with pytest.raises(ServerError, match=r"numpy 2\.4\.6 is installed.*tritonhf\[serve\]"):
        check_stub_numpy("2.4.6")
    check_stub_numpy("1.26.4")
    check_stub_numpy()  # this environment: the serve extra's numpy 1.x


def test_server_environment_puts_this_interpreter_first_on_path(
    dist: TritonDistribution,
) -> None:
    env = server_environment(dist, base={"PATH": "/usr/bin:/bin"})

    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin", "/bin"]


def test_server_environment_turns_onnx_runtimes_telemetry_off_unless_the_user_chose(
    dist: TritonDistribution,
) -> None:
    """ONNX Runtime 1.32 sends usage events to Microsoft from every step's process, and keeps
    a device id in ~/.cache/Microsoft, unless ORT_DISABLE_TELEMETRY is set before it loads."""
    assert server_environment(dist, base={})["ORT_DISABLE_TELEMETRY"] == "1"
    chosen = server_environment(dist, base={"ORT_DISABLE_TELEMETRY": "0"})
    assert chosen["ORT_DISABLE_TELEMETRY"] == "0"


def test_server_environment_puts_the_interpreter_libdir_first_then_the_wheel_libs(
    dist: TritonDistribution,
) -> None:
    env = server_environment(dist, base={"PATH": "/bin", "LD_LIBRARY_PATH": "/opt/lib"})

    assert LIBDIR
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [LIBDIR, str(dist.libs), "/opt/lib"]


def test_server_environment_without_a_library_path_adds_no_empty_entry(
    dist: TritonDistribution,
) -> None:
    env = server_environment(dist, base={})

    assert "" not in env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_server_environment_keeps_other_variables_and_does_not_touch_the_base(
    dist: TritonDistribution,
) -> None:
    base = {"PATH": "/bin", "HOME": "/home/me"}

    env = server_environment(dist, base=base)

    assert env["HOME"] == "/home/me"
    assert base == {"PATH": "/bin", "HOME": "/home/me"}


def test_server_environment_defaults_to_the_process_environment(
    dist: TritonDistribution, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRITONHF_UNIT_MARKER", "42")

    assert server_environment(dist)["TRITONHF_UNIT_MARKER"] == "42"


# launcher ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "port"),
    [("http_port", 0), ("grpc_port", 65536), ("metrics_port", -1), ("http_port", 70000)],
)
def test_ports_outside_1_to_65535_are_config_errors(tmp_path: Path, field: str, port: int) -> None:
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ConfigError, match=f"{flag} must be in 1..65535, got {port}"):
        ServerConfig(repo=tmp_path, **{field: port})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ports",
    [(8000, 8000, 8002), (8000, 8001, 8001), (8002, 8001, 8002), (9000, 9000, 9000)],
)
def test_duplicate_ports_are_config_errors(tmp_path: Path, ports: tuple[int, int, int]) -> None:
    http, grpc, metrics = ports

    with pytest.raises(ConfigError, match="ports must differ"):
        ServerConfig(repo=tmp_path, http_port=http, grpc_port=grpc, metrics_port=metrics)


def test_edge_ports_are_accepted(tmp_path: Path) -> None:
    config = ServerConfig(repo=tmp_path, http_port=1, grpc_port=65535, metrics_port=2)

    assert (config.http_port, config.grpc_port, config.metrics_port) == (1, 65535, 2)


def test_command_binds_every_endpoint_to_the_host_and_its_port(
    tmp_path: Path, dist: TritonDistribution
) -> None:
    config = ServerConfig(
        repo=tmp_path / "repo",
        host="0.0.0.0",  # noqa: S104
        http_port=18000,
        grpc_port=18001,
        metrics_port=18002,
        model_control=ModelControl.EXPLICIT,
    )
    backends = tmp_path / "backends"

    command = config.command(dist.binary, backends)

    assert command[0] == str(dist.binary)
    flags = set(command[1:])
    assert {
        f"--model-repository={(tmp_path / 'repo').resolve()}",
        f"--backend-directory={backends}",
        "--model-control-mode=explicit",
        "--http-address=0.0.0.0",
        "--http-port=18000",
        "--grpc-address=0.0.0.0",
        "--grpc-port=18001",
        "--metrics-address=0.0.0.0",
        "--metrics-port=18002",
        "--strict-readiness=false",
    } <= flags


def test_command_uses_an_absolute_repository_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dist: TritonDistribution
) -> None:
    monkeypatch.chdir(tmp_path)

    command = ServerConfig(repo=Path("model_repository")).command(dist.binary, tmp_path)

    assert f"--model-repository={tmp_path.resolve() / 'model_repository'}" in command


def test_default_command_loads_everything_in_explicit_mode_on_loopback(
    tmp_path: Path, dist: TritonDistribution
) -> None:
    command = ServerConfig(repo=tmp_path).command(dist.binary, tmp_path)

    assert "--model-control-mode=explicit" in command
    assert "--load-model=*" in command
    assert "--http-address=127.0.0.1" in command
    assert "--grpc-port=8001" in command
    assert "--allow-gpu-metrics=false" in command


def test_gpu_metrics_are_asked_for_only_when_configured(
    tmp_path: Path, dist: TritonDistribution
) -> None:
    command = ServerConfig(repo=tmp_path, gpu_metrics=True).command(dist.binary, tmp_path)

    assert "--allow-gpu-metrics=true" in command
    assert "--allow-gpu-metrics=false" not in command


@pytest.mark.parametrize(
    ("host", "client_host"),
    [
        ("0.0.0.0", "127.0.0.1"),  # noqa: S104
        ("", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
    ],
)
def test_clients_reach_a_wildcard_bind_through_loopback(
    tmp_path: Path, host: str, client_host: str
) -> None:
    config = ServerConfig(repo=tmp_path, host=host, http_port=1, grpc_port=2, metrics_port=3)

    assert config.client_host == client_host
    assert config.http_url == f"{client_host}:1"
    assert config.grpc_url == f"{client_host}:2"
    assert config.metrics_url == f"http://{client_host}:3/metrics"


def test_a_server_never_started_has_nothing_to_stop_or_wait_for(tmp_path: Path) -> None:
    server = TritonServer(ServerConfig(repo=tmp_path))

    assert server.stop() is None
    with pytest.raises(ServerError, match="not running"):
        server.wait()


def test_readiness_probe_is_false_when_nothing_listens(tmp_path: Path, closed_port: int) -> None:
    config = ServerConfig(repo=tmp_path, http_port=closed_port, grpc_port=1, metrics_port=2)

    assert TritonServer(config).is_ready() is False


def test_model_control_none_loads_without_the_explicit_flag(
    tmp_path: Path, dist: TritonDistribution
) -> None:
    command = ServerConfig(repo=tmp_path, model_control=ModelControl.NONE).command(
        dist.binary, tmp_path
    )

    assert "--model-control-mode=none" in command
    assert not any(arg.startswith("--load-model") for arg in command)


def test_drain_of_a_server_in_another_model_control_mode_is_a_no_op(tmp_path: Path) -> None:
    config = ServerConfig(repo=tmp_path, model_control=ModelControl.NONE)

    assert TritonServer(config).drain(timeout_s=1.0) is False


def test_drain_gives_up_at_once_when_nothing_answers(closed_port: int) -> None:
    assert drain(f"127.0.0.1:{closed_port}", timeout_s=30.0) is False


# the Triton image's entrypoint -------------------------------------------------------------


def test_entrypoint_reads_the_image_flags() -> None:
    image_cmd = [
        "--model-repository=/models",
        "--model-control-mode=explicit",
        "--load-model=*",
        "--http-port=8000",
        "--exit-timeout-secs=30",
    ]

    flags = TritonFlags.parse(image_cmd)

    assert flags == TritonFlags(http_url="127.0.0.1:8000", explicit=True, exit_timeout_s=30.0)


def test_entrypoint_falls_back_to_tritons_defaults() -> None:
    flags = TritonFlags.parse(["--model-store=/mnt/models"])

    assert flags == TritonFlags(http_url="127.0.0.1:8000", explicit=False, exit_timeout_s=30.0)


def test_entrypoint_reads_space_separated_flags_and_the_last_repeat() -> None:
    args = ["--http-port", "8080", "--model-control-mode", "poll", "--model-control-mode=explicit"]

    flags = TritonFlags.parse([*args, "--http-address", "10.1.2.3", "--exit-timeout-secs=5"])

    assert flags == TritonFlags(http_url="10.1.2.3:8080", explicit=True, exit_timeout_s=5.0)


@pytest.mark.parametrize("value", ["false", "False", "0"])
def test_entrypoint_has_no_drain_endpoint_when_http_is_off(value: str) -> None:
    flags = TritonFlags.parse(["--model-control-mode=explicit", f"--allow-http={value}"])

    assert flags.http_url is None


@pytest.mark.parametrize(("code", "status"), [(0, 0), (1, 1), (-15, 143), (-9, 137)])
def test_entrypoint_exits_as_a_shell_reports_the_child(code: int, status: int) -> None:
    assert exit_status(code) == status


def test_entrypoint_reaps_orphans_but_leaves_triton_to_its_popen() -> None:
    # In a child interpreter: reaping in the test process would take its other children.
    script = """
import os, subprocess, sys, time
from tritonhf.server.entrypoint import reap_orphans
kept = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
orphan = os.fork()
if orphan == 0:
    os._exit(3)
time.sleep(0.3)
reap_orphans(keep=kept.pid)
print(os.path.exists(f"/proc/{orphan}"), kept.wait())
"""
    result = subprocess.run(  # nosec B603
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )

    assert result.stdout.split() == ["False", "0"]  # the zombie reaped; the exit code kept


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_entrypoint_refuses_a_bad_exit_timeout_in_one_line(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tritonhf.server.entrypoint import main

    assert main([f"--exit-timeout-secs={value}", "--model-repository=/nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--exit-timeout-secs must be a number of seconds >= 0" in err


# the admin key ------------------------------------------------------------------------------

KEY = "0123456789abcdef-admin"


def test_the_admin_key_restricts_the_admin_apis_over_http_and_grpc() -> None:
    setting = f"model-repository,shared-memory,trace,logging:tritonhf-admin-key={KEY}"

    assert admin.restricted_flags(KEY) == [
        f"--http-restricted-api={setting}",
        f"--grpc-restricted-protocol={setting}",
    ]


def test_inference_health_metadata_and_config_stay_open() -> None:
    open_apis = {"inference", "health", "metadata", "model-config", "statistics"}

    assert not open_apis & set(admin.RESTRICTED_APIS)


def test_grpc_carries_the_key_under_tritons_protocol_prefix() -> None:
    assert admin.http_headers(KEY) == {"tritonhf-admin-key": KEY}
    assert admin.grpc_headers(KEY) == {"triton-grpc-protocol-tritonhf-admin-key": KEY}
    assert admin.http_headers(None) == admin.grpc_headers(None) == {}


@pytest.mark.parametrize("key", ["short", "has a space in it ok", "tab\there-0123456789", "é" * 20])
def test_a_key_that_is_short_or_not_visible_ascii_is_a_config_error_naming_the_variable(
    key: str,
) -> None:
    with pytest.raises(ConfigError, match="TRITONHF_ADMIN_KEY must be at least 16 visible"):
        admin.check_key(key)


def test_the_key_comes_from_the_environment_and_empty_means_unset() -> None:
    assert admin.admin_key({"TRITONHF_ADMIN_KEY": KEY}) == KEY
    assert admin.admin_key({"TRITONHF_ADMIN_KEY": ""}) is None
    assert admin.admin_key({}) is None


def test_the_server_command_restricts_the_admin_apis_only_with_a_key(tmp_path: Path) -> None:
    plain = ServerConfig(repo=tmp_path).command(Path("tritonserver"), Path("/b"))
    keyed = ServerConfig(repo=tmp_path, admin_key=KEY).command(Path("tritonserver"), Path("/b"))

    assert not admin.has_restricted_flags(plain)
    assert keyed[: len(plain)] == plain
    assert keyed[len(plain) :] == admin.restricted_flags(KEY)


def test_the_server_config_never_shows_its_key(tmp_path: Path) -> None:
    config = ServerConfig(repo=tmp_path, admin_key=KEY)

    assert KEY not in repr(config)
    with pytest.raises(ConfigError, match="TRITONHF_ADMIN_KEY"):
        ServerConfig(repo=tmp_path, admin_key="short")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"])
def test_no_warning_for_a_server_on_loopback_without_a_key(tmp_path: Path, host: str) -> None:
    assert ServerConfig(repo=tmp_path, host=host).exposure_warnings == []


@pytest.mark.parametrize("host", ["0.0.0.0", "", "10.0.0.5", "::", "triton.example"])  # noqa: S104
def test_a_server_beyond_loopback_without_a_key_warns_in_one_line(
    tmp_path: Path, host: str
) -> None:
    (key_warning,) = ServerConfig(repo=tmp_path, host=host).exposure_warnings

    assert "\n" not in key_warning
    assert key_warning.startswith("warning: TRITONHF_ADMIN_KEY is not set")
    assert "unload models" in key_warning
    # HTTP beyond loopback is no longer a warning: the guard refuses the nested JSON that
    # crashed Triton 2.51's HTTP frontend (a server without the guard warns of that instead).
    assert ServerConfig(repo=tmp_path, host=host, admin_key=KEY).exposure_warnings == []


def test_http_can_stay_on_loopback_while_grpc_serves_the_network(tmp_path: Path) -> None:
    config = ServerConfig(repo=tmp_path, host="0.0.0.0", http_host="127.0.0.1", admin_key=KEY)  # noqa: S104

    assert config.exposure_warnings == []
    command = config.command(Path("tritonserver"), tmp_path)
    assert "--http-address=127.0.0.1" in command
    assert "--grpc-address=0.0.0.0" in command
    assert config.http_url == "127.0.0.1:8000"
    assert config.grpc_url == "127.0.0.1:8001"


def test_serve_passes_the_environments_key_to_the_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tritonhf.cli import main as cli

    seen: list[ServerConfig] = []

    def refuse(self: TritonServer) -> None:
        seen.append(self.config)
        raise ServerError("not started in a unit test")

    monkeypatch.setenv("TRITONHF_ADMIN_KEY", KEY)
    monkeypatch.setattr(TritonServer, "start", refuse)
    monkeypatch.setattr(TritonServer, "stop", lambda self, timeout_s=None: None)

    assert cli.main(["serve", "--repo", str(tmp_path)]) == 1
    assert seen[0].admin_key == KEY


class _FakeTriton(BaseHTTPRequestHandler):
    """A fake Triton's HTTP endpoint: each subclass answers a path with (status, JSON body)."""

    def _reply(self) -> tuple[int, object] | None:
        """The status and body for ``self.path``; None hangs up without an answer."""
        raise NotImplementedError

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        reply = self._reply()
        if reply is None:
            self.close_connection = True  # no answer at all: a reset for the client
            return
        code, body = reply
        encoded = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[_FakeTriton]) -> Iterator[str]:
    """``handler`` on a free 127.0.0.1 port, as ``host:port``, until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Recorder(_FakeTriton):
    """A fake Triton whose repository API answers only requests with the admin key."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def _reply(self) -> tuple[int, object]:
        self.seen.append((self.path, self.headers.get("tritonhf-admin-key")))
        restricted = self.path.startswith("/v2/repository")
        code = 403 if restricted and self.headers.get("tritonhf-admin-key") != KEY else 200
        return code, [] if self.path == "/v2/repository/index" and code == 200 else {}


@pytest.fixture
def fake_triton() -> Iterator[str]:
    _Recorder.seen = []
    with serving(_Recorder) as url:
        yield url


def test_the_drain_sends_the_admin_key_on_every_repository_call(fake_triton: str) -> None:
    assert drain(fake_triton, 5.0, headers=admin.http_headers(KEY))

    repository_calls = [key for path, key in _Recorder.seen if path.startswith("/v2/repository")]
    assert repository_calls
    assert set(repository_calls) == {KEY}


def test_a_drain_refused_for_a_missing_key_is_left_to_sigterm(fake_triton: str) -> None:
    assert not drain(fake_triton, 5.0)


class _DroppingTriton(_FakeTriton):
    """A fake Triton with one loaded model that hangs up on its first ``drops`` index calls."""

    drops: ClassVar[int] = 0
    unloaded: ClassVar[bool] = False

    def _reply(self) -> tuple[int, object] | None:
        if self.path == "/v2/repository/index":
            if _DroppingTriton.drops:
                _DroppingTriton.drops -= 1
                return None
            return 200, [{"name": "m", "state": "UNAVAILABLE" if self.unloaded else "READY"}]
        if self.path.endswith("/unload"):
            _DroppingTriton.unloaded = True
        return 200, {}


@pytest.fixture
def dropping_triton() -> Iterator[str]:
    _DroppingTriton.drops, _DroppingTriton.unloaded = 0, False
    with serving(_DroppingTriton) as url:
        yield url


def test_a_drain_asks_again_when_a_call_gets_no_answer(dropping_triton: str) -> None:
    _DroppingTriton.drops = 1

    assert drain(dropping_triton, 5.0)
    assert _DroppingTriton.unloaded


def test_an_incomplete_drain_says_why(
    dropping_triton: str, caplog: pytest.LogCaptureFixture
) -> None:
    _DroppingTriton.drops = 1000

    assert not drain(dropping_triton, 5.0)
    assert "drain incomplete (POST /v2/repository/index got no answer" in caplog.text


class _PipelineTriton(_FakeTriton):
    """A fake Triton serving the ensemble ``p`` and its steps; ``states`` is its index."""

    states: ClassVar[dict[str, str]] = {}

    def _reply(self) -> tuple[int, object]:
        states = type(self).states
        if self.path == "/v2/repository/index":
            return 200, [{"name": name, "state": state} for name, state in states.items()]
        if self.path.endswith("/config"):
            name = self.path.split("/")[3]
            return 200, {"platform": "ensemble" if name == "p" else "python"}
        if self.path.endswith("/unload"):
            self._unload(self.path.split("/")[4])
        return 200, {}

    def _unload(self, name: str) -> None:
        type(self).states[name] = "UNAVAILABLE"


class _StuckTriton(_PipelineTriton):
    """A fake Triton whose step ``p_model`` lost a stub: it never finishes unloading."""

    states: ClassVar[dict[str, str]] = {}

    def _unload(self, name: str) -> None:
        _StuckTriton.states[name] = "UNLOADING" if name == "p_model" else "UNAVAILABLE"


def test_a_drain_does_not_wait_for_a_model_whose_dead_stub_was_never_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Such a model stays UNLOADING for good: the drain waited out its whole timeout (and
    said "still loaded at the deadline: []"), then Triton its own (a probe's 61 s stop)."""
    _StuckTriton.states = {"p": "READY", "p_tokenizer": "READY", "p_model": "READY"}
    with serving(_StuckTriton) as url:
        assert not drain(url, 1.0)
        assert "still loaded at the deadline: ['p_model']" in caplog.text

        _StuckTriton.states = {"p": "READY", "p_tokenizer": "READY", "p_model": "READY"}
        started = time.monotonic()
        assert drain(url, 10.0, stuck=frozenset({"p_model"}))
        assert time.monotonic() - started < 5
    assert _StuckTriton.states["p"] == _StuckTriton.states["p_tokenizer"] == "UNAVAILABLE"
    assert "not waiting for p_model in the drain" in caplog.text


class _RacedTriton(_PipelineTriton):
    """A fake Triton where a concurrent deploy's step load brings the unloaded ensemble back
    while the drain unloads the steps (Triton loads an ensemble again when its step loads)."""

    states: ClassVar[dict[str, str]] = {}
    comebacks: ClassVar[int] = 0

    def _unload(self, name: str) -> None:
        super()._unload(name)
        if name == "p_model" and _RacedTriton.comebacks:
            _RacedTriton.comebacks -= 1
            _RacedTriton.states["p"] = "READY"


def test_a_drain_also_unloads_an_ensemble_a_concurrent_deploy_brought_back() -> None:
    _RacedTriton.states, _RacedTriton.comebacks = {"p": "READY", "p_model": "READY"}, 1
    with serving(_RacedTriton) as url:
        assert drain(url, 10.0)

    assert _RacedTriton.comebacks == 0
    assert _RacedTriton.states == {"p": "UNAVAILABLE", "p_model": "UNAVAILABLE"}


def test_entrypoint_adds_the_restricting_flags_from_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = with_admin_key(["--model-repository=/models"], {"TRITONHF_ADMIN_KEY": KEY})

    assert args == ["--model-repository=/models", *admin.restricted_flags(KEY)]
    assert KEY not in capsys.readouterr().err
    assert TritonFlags.parse(args).drain_headers == {"tritonhf-admin-key": KEY}


def test_entrypoint_without_a_key_warns_loudly_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert with_admin_key(["--model-repository=/models"], {}) == ["--model-repository=/models"]

    err = capsys.readouterr().err
    assert "WARNING: TRITONHF_ADMIN_KEY is not set" in err
    assert "load new ones" in err


def test_entrypoint_keeps_the_users_own_restriction_and_drains_with_its_header(
    capsys: pytest.CaptureFixture[str],
) -> None:
    own = ["--http-restricted-api=shared-memory,model-repository:x-ops=other-secret-value"]

    args = with_admin_key(own, {"TRITONHF_ADMIN_KEY": KEY})

    assert args == own
    assert TritonFlags.parse(args).drain_headers == {"x-ops": "other-secret-value"}
    assert "WARNING" not in capsys.readouterr().err


def test_entrypoint_warns_when_the_users_restriction_leaves_the_repository_open(
    capsys: pytest.CaptureFixture[str],
) -> None:
    own = ["--http-restricted-api=trace:x-ops=other-secret-value"]

    assert with_admin_key(own, {"TRITONHF_ADMIN_KEY": KEY}) == own
    assert "WARNING: they leave the model-repository API open" in capsys.readouterr().err


def test_entrypoint_drains_without_a_header_when_the_repository_is_not_restricted() -> None:
    flags = TritonFlags.parse(["--http-restricted-api", "trace:x-ops=abc"])

    assert flags.drain_headers == {}
    assert "abc" not in repr(flags)


def test_entrypoint_refuses_an_unusable_key_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRITONHF_ADMIN_KEY", "short")

    assert entrypoint_main(["--model-repository=/models"]) == 2
    assert "error: TRITONHF_ADMIN_KEY must be at least 16" in capsys.readouterr().err


@pytest.mark.parametrize("busy", ["http_port", "grpc_port", "metrics_port"])
def test_a_busy_port_is_refused_before_triton_starts_naming_its_flag(
    tmp_path: Path, busy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    http, grpc, metrics = free_ports(3)
    config = ServerConfig(repo=tmp_path, http_port=http, grpc_port=grpc, metrics_port=metrics)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", getattr(config, busy)))
        holder.listen()
        server = TritonServer(config)

        with pytest.raises(ConfigError, match=f"127.0.0.1:{getattr(config, busy)} .*another "
                           f"--{busy.replace('_', '-')}"):  # fmt: skip
            server.start()

    assert server.pid is None
    assert f"warning: {tmp_path} holds no model" in capsys.readouterr().err


@pytest.mark.parametrize(("make", "what"), [(False, "does not exist"), (True, "is not a folder")])
def test_a_repository_that_is_no_folder_is_a_config_error(
    tmp_path: Path, make: bool, what: str
) -> None:
    repo = tmp_path / "repo"
    if make:
        repo.write_text("a file")

    with pytest.raises(ConfigError, match=f"model repository {repo} {what}; run `tritonhf export`"):
        TritonServer(ServerConfig(repo=repo)).start()


def test_stubs_whose_triton_is_gone_are_stopped_and_a_served_one_is_not(tmp_path: Path) -> None:
    import shutil
    import time

    from tritonhf.server.process import orphaned_stubs, process_tree, stop_orphaned_stubs

    stub = tmp_path / "triton_python_backend_stub"  # /bin/sleep under the stub's name
    shutil.copy("/bin/sleep", stub)
    server = tmp_path / "tritonserver"  # a shell under the server's name, as its parent
    shutil.copy("/bin/sh", server)
    # The orphan: its shell exits at once, so it is re-parented away from any tritonserver.
    started = subprocess.run(
        ["/bin/sh", "-c", f"'{stub}' 300 >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    orphan = int(started.stdout)
    running = subprocess.Popen([str(server), "-c", f"'{stub}' 301 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(process_tree(running.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        (served,) = process_tree(running.pid)[1:]
        found = orphaned_stubs()
        assert orphan in found
        assert served not in found

        assert orphan in stop_orphaned_stubs()
        while orphan in orphaned_stubs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert orphan not in orphaned_stubs()
        assert served in process_tree(running.pid)
    finally:
        for pid in [orphan, *process_tree(running.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        running.wait()


def test_the_restart_budget_allows_its_limit_per_window() -> None:
    budget = RestartBudget(2, window_s=0.2)
    assert [budget.take(), budget.take(), budget.take()] == [True, True, False]
    time.sleep(0.25)
    assert budget.take()
    assert not RestartBudget(0).take()


@pytest.mark.parametrize(
    ("code", "said"),
    [(-11, "code -11 (SIGSEGV)"), (-8, "code -8 (SIGFPE)"), (1, "code 1"), (-99, "code -99")],
)
def test_an_exit_is_described_with_its_signal(code: int, said: str) -> None:
    assert exit_description(code) == said


def test_a_step_that_lacks_a_package_names_the_extra_that_brings_it() -> None:
    log = [
        "E1129 08:30:01 model_lifecycle.cc:654] failed to load 'minilm_tokenizer' version 1: "
        "Internal: ModuleNotFoundError: No module named 'tokenizers'",
        "E1129 08:30:01 ... No module named 'onnxruntime.capi'",
        "E1129 08:30:01 ... No module named 'tokenizers'",
    ]
    assert missing_package_hint(log) == (
        "\nthe Python steps could not import onnxruntime, tokenizers: install the 'serve' "
        "extra in this environment: pip install 'tritonhf[serve]'"
    )
    assert "'tritonhf[export]'" in missing_package_hint(["No module named 'torch'"])
    assert missing_package_hint(["I1129 loaded", "No module named 'tritonhf'"]) == ""


def test_triton_gets_a_plain_path_to_a_repository_whose_path_has_a_space_or_an_accent(
    tmp_path: Path,
) -> None:
    from tritonhf.server.launcher import plain_path_to

    plain = tmp_path / "repo"
    plain.mkdir()
    assert plain_path_to(plain, tmp_path) == plain.resolve()
    for name in ("with space", "rëpo"):
        repo, workdir = tmp_path / name, tmp_path / f"work-{len(name)}"
        repo.mkdir()
        workdir.mkdir()
        link = plain_path_to(repo, workdir)
        assert link == workdir / "repository"
        assert link.resolve() == repo.resolve()


@pytest.mark.parametrize(
    ("name", "pid"),
    [
        ("tritonhf-export-4242-abc", 4242),
        ("tritonhf-export-4242", 4242),
        ("tritonhf-export-x42-abc", None),
        ("tritonhf-export--abc", None),
        ("other-4242-abc", None),
    ],
)
def test_the_pid_in_a_folder_name_is_read_only_after_its_prefix(name: str, pid: int | None) -> None:
    from tritonhf.server.process import pid_in_name

    assert pid_in_name(name, "tritonhf-export-") == pid


def test_tritons_process_takes_the_hard_limit_on_open_files() -> None:
    """At a soft limit of 1,024 (many Linux sessions), ~1,000 idle connections would stop
    Triton accepting any, on every port; its process raises the soft limit to the hard one."""
    import resource

    from tritonhf.server.launcher import _child_setup

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        child = subprocess.Popen(["sleep", "30"], preexec_fn=_child_setup)  # nosec
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        limits = Path(f"/proc/{child.pid}/limits").read_text()
    finally:
        child.kill()
        child.wait()
    row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    child_soft, child_hard = row.split()[3:5]
    assert child_soft == child_hard != "256"


def test_a_log_file_that_cannot_be_written_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    """A folder or a read-only path as --log-file was a traceback (probe E2)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    with pytest.raises(ConfigError, match=f"cannot write --log-file {tmp_path}: "):
        TritonServer(ServerConfig(repo=repo), log_path=tmp_path).start()


def test_work_folders_of_killed_servers_are_removed_and_a_running_ones_kept(
    tmp_path: Path,
) -> None:
    """A serve killed with SIGKILL left its ~3 MB work folder in /tmp for good (probe E2)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"tritonhf-server-{dead.pid}-abc"
    alive = tmp_path / f"tritonhf-server-{os.getpid()}-def"
    other = tmp_path / "tritonhf-server-oldformat"
    for folder in (stale, alive, other):
        (folder / "backends").mkdir(parents=True)

    assert remove_stale_workdirs(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


def test_only_empty_env_folders_older_than_every_running_triton_are_removed(
    tmp_path: Path,
) -> None:
    """The Python backend's /tmp/python_env_* of killed servers piled up (224 on one machine)."""
    stale, newer, full, other = (tmp_path / f"python_env_{n}" for n in ("a", "b", "c", "d"))
    for folder in (stale, newer, full):
        folder.mkdir()
    (full / "env.tar.gz").write_bytes(b"")
    other.write_text("a file, not a folder")
    for path, mtime in ((stale, 1000), (newer, 3000), (full, 1000), (other, 1000)):
        os.utime(path, (mtime, mtime))

    assert remove_stale_env_folders(tmp_path, oldest_start=2000.0) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "python_env_b",
        "python_env_c",
        "python_env_d",
    ]


def test_the_start_of_the_oldest_running_triton_is_read_from_proc(tmp_path: Path) -> None:
    fake = tmp_path / "tritonserver"
    fake.symlink_to(shutil.which("sleep") or "/bin/sleep")
    before = time.time()
    process = subprocess.Popen([str(fake), "30"])
    try:
        started = oldest_server_start()
    finally:
        process.kill()
        process.wait()
    assert started <= before + 1.0  # this one, or an older Triton
