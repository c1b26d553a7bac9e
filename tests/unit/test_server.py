from __future__ import annotations

import os
import stat
import subprocess  # nosec B404
import sys
import sysconfig
from pathlib import Path

import pytest

from tritonhf.errors import ConfigError, ServerError
from tritonhf.server.drain import drain
from tritonhf.server.entrypoint import TritonFlags, exit_status
from tritonhf.server.launcher import ModelControl, ServerConfig, TritonServer
from tritonhf.server.provision import (
    TritonDistribution,
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


def test_server_environment_puts_this_interpreter_first_on_path(
    dist: TritonDistribution,
) -> None:
    env = server_environment(dist, base={"PATH": "/usr/bin:/bin"})

    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin", "/bin"]


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
    with pytest.raises(ConfigError, match=f"{field} must be in 1..65535, got {port}"):
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


def test_starting_on_a_missing_repository_says_to_export_first(tmp_path: Path) -> None:
    server = TritonServer(ServerConfig(repo=tmp_path / "missing"))

    with pytest.raises(ServerError, match="run `tritonhf export` first") as info:
        server.start()

    assert str(tmp_path / "missing") in str(info.value)
    assert server.pid is None


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
