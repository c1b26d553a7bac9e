"""``tritonhf ui`` and ``tritonhf console``: flags, safe defaults, and a light import."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tritonhf.cli.parser import build_parser
from tritonhf.client import Protocol
from tritonhf.errors import ConfigError
from tritonhf.ui import DemoConfig


def test_the_demo_binds_loopback_and_does_not_share_by_default() -> None:
    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
    assert args.share is False
    assert args.port == 7860
    assert (args.grpc_url, args.http_url) == ("127.0.0.1:8001", "127.0.0.1:8000")
    config = DemoConfig()
    assert (config.host, config.share) == ("127.0.0.1", False)


def test_the_console_binds_loopback_and_reads_reports_from_a_flag() -> None:
    args = build_parser().parse_args(["console", "--bench-dir", "out/bench"])
    assert args.host == "127.0.0.1"
    assert args.port == 8501
    assert args.bench_dir == Path("out/bench")
    assert args.metrics_url == "http://127.0.0.1:8002/metrics"


def test_demo_config_picks_the_url_of_the_protocol() -> None:
    config = DemoConfig(grpc_url="h:1", http_url="h:2")
    assert config.url(Protocol.GRPC) == "h:1"
    assert config.url(Protocol.HTTP) == "h:2"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 70000}, "port must be in 1..65535"),
        ({"timeout_s": -1}, "timeout_s (--timeout) must be a finite number of seconds > 0"),
        ({"timeout_s": float("inf")}, "timeout_s (--timeout) must be a finite number"),
        ({"timeout_s": 2e6}, "timeout_s (--timeout) must be at most"),
        ({"grpc_url": "127.0.0.1:99999"}, "'127.0.0.1:99999' is not host:port"),
        ({"http_url": "not a url"}, "'not a url' is not host:port"),
    ],
)
def test_demo_config_refuses_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        DemoConfig(**overrides)  # type: ignore[arg-type]


def test_help_does_not_import_gradio_or_streamlit() -> None:
    code = (
        "import sys\n"
        "from tritonhf.cli.parser import build_parser\n"
        "import tritonhf.ui, tritonhf.console\n"
        "build_parser().format_help()\n"
        "print(sorted(m for m in ('gradio', 'streamlit', 'playwright') if m in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["ui", "console"])
def test_a_busy_port_is_one_error_line_and_exit_code_2(command: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tritonhf.cli.main", command, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "pick another --port or --host"
    )


def test_a_port_taken_after_the_check_is_a_config_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gradio as gr

    from tritonhf.errors import ConfigError
    from tritonhf.ui import DemoConfig, serve_demo

    def taken(*args: object, **kwargs: object) -> None:
        raise OSError("Cannot find empty port in range: 7860-7860")

    monkeypatch.setattr(gr.Blocks, "launch", taken)
    with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:7860 \(Cannot find"):
        serve_demo(DemoConfig(grpc_url="127.0.0.1:1", http_url="127.0.0.1:2"))


def test_the_console_refuses_a_malformed_admin_key_in_one_line_before_starting() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tritonhf.cli.main", "console", "--port", "1"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TRITONHF_ADMIN_KEY": "short"},
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stderr.startswith("error: TRITONHF_ADMIN_KEY must be at least 16")
    assert done.stderr.count("\n") == 1
