from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tritonhf.cli.main import build_parser, main
from tritonhf.export.onnx_export import DEFAULT_OPSET
from tritonhf.export.pipeline import ExportOptions
from tritonhf.export.validate import DEFAULT_ATOL
from tritonhf.server.launcher import ServerConfig

SUBCOMMANDS = ["export", "train", "serve", "embed", "classify", "health", "deploy", "models"]
HEAVY = ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "tritonhf.export")


def parse(*argv: str) -> dict[str, object]:
    return vars(build_parser().parse_args(argv))


# parser ------------------------------------------------------------------------------------


def test_export_defaults_to_the_offline_model_and_the_python_onnx_runtime() -> None:
    assert parse("export") == {
        "verbose": False,
        "command": "export",
        "model": "default",
        "task": None,
        "name": "minilm",
        "repo": Path("model_repository"),
        "max_length": None,
        "max_batch_size": 64,
        "runtime": "python-onnx",
        "precision": "fp32",
        "layout": "split",
        "optimize": False,
        "opset": 17,
        "atol": 1e-4,
        "allow_pickle_weights": False,
        "revision": None,
        "version": 1,
        "drift_reference": None,
        "max_queue_size": 256,
        "queue_timeout_ms": 5000,
        "max_text_bytes": 1 << 20,
        "label_agreement": None,
        "max_probability_diff": None,
        "min_cosine": None,
        "mean_cosine": None,
        "top5_agreement": None,
    }


def test_export_flag_defaults_agree_with_export_options() -> None:
    args, options = parse("export"), ExportOptions()

    assert args["model"] == options.model
    assert args["name"] == options.name
    assert args["repo"] == options.repo
    assert args["task"] is options.task is None  # detected from the model's config
    assert args["runtime"] == options.runtime.value
    assert args["max_length"] == options.max_length
    assert args["max_batch_size"] == options.max_batch_size
    assert args["opset"] == options.opset == DEFAULT_OPSET
    assert args["atol"] == options.atol == DEFAULT_ATOL


def test_serve_defaults_to_tritons_usual_local_ports() -> None:
    assert parse("serve") == {
        "verbose": False,
        "command": "serve",
        "repo": Path("model_repository"),
        "host": "127.0.0.1",
        "http_port": 8000,
        "grpc_port": 8001,
        "metrics_port": 8002,
        "log_file": None,
        "log_text": None,
        "model_control": "explicit",
    }


def test_serve_flag_defaults_agree_with_server_config() -> None:
    args, config = parse("serve"), ServerConfig(repo=Path("model_repository"))

    assert (args["host"], args["http_port"], args["grpc_port"], args["metrics_port"]) == (
        config.host,
        config.http_port,
        config.grpc_port,
        config.metrics_port,
    )


def test_embed_takes_texts_and_defaults_to_grpc_and_the_minilm_ensemble() -> None:
    assert parse("embed", "a", "b c") == {
        "verbose": False,
        "command": "embed",
        "texts": ["a", "b c"],
        "json": False,
        "url": None,
        "protocol": "grpc",
        "timeout": 30.0,
        "model": "minilm",
    }


def test_health_defaults_to_grpc_and_the_minilm_ensemble() -> None:
    assert parse("health") == {
        "verbose": False,
        "command": "health",
        "url": None,
        "protocol": "grpc",
        "timeout": 30.0,
        "model": "minilm",
    }


def test_models_has_client_flags_but_no_model() -> None:
    assert parse("models") == {
        "verbose": False,
        "command": "models",
        "url": None,
        "protocol": "grpc",
        "timeout": 30.0,
    }


def test_flags_are_parsed_to_their_types() -> None:
    args = parse(
        "-v", "export", "./m", "--max-length", "128", "--runtime", "onnxruntime", "--atol", "1e-3"
    )

    assert args["verbose"] is True
    assert (args["model"], args["max_length"], args["runtime"], args["atol"]) == (
        "./m",
        128,
        "onnxruntime",
        1e-3,
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["embed"],
        ["export", "--runtime", "openvino"],
        ["health", "--protocol", "websocket"],
        ["serve", "--http-port", "eighty"],
        ["unknown"],
    ],
    ids=["no-command", "embed-without-text", "bad-runtime", "bad-protocol", "bad-port", "unknown"],
)
def test_bad_command_lines_exit_with_usage_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)

    assert info.value.code == 2
    assert "usage: tritonhf" in capsys.readouterr().err


def test_help_lists_every_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tritonhf.cli.main", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_cli_and_client_import_none_of_the_export_stack() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import tritonhf.cli.main
        import tritonhf.client
        loaded = [m for m in {HEAVY!r} if m in sys.modules]
        print(",".join(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


# running against no server -----------------------------------------------------------------


def test_embed_without_a_server_prints_one_error_line_and_exits_1(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"127.0.0.1:{closed_port}"

    code = main(["embed", "hi", "--url", url, "--timeout", "2"])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith(f"error: cannot reach Triton at {url}")
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_health_without_a_server_reports_not_live_and_exits_1(
    closed_port: int, protocol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["health", "--url", f"127.0.0.1:{closed_port}", "--protocol", protocol])

    captured = capsys.readouterr()
    assert code == 1
    assert f"server 127.0.0.1:{closed_port}: live=False ready=False" in captured.out
    assert "model minilm: ready=False" in captured.out
    assert captured.err == ""


def test_models_without_a_server_exits_1_with_one_error_line(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["models", "--url", f"127.0.0.1:{closed_port}", "--protocol", "http"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: cannot reach Triton")
    assert err.count("\n") == 1


def test_blank_text_is_rejected_with_exit_2_before_any_request(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["embed", "ok", "   ", "--url", f"127.0.0.1:{closed_port}"])

    assert code == 2
    assert capsys.readouterr().err.startswith("error: texts[1] is empty or whitespace only")


def test_export_takes_the_gate_thresholds_and_refuses_bad_ones_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert parse("export", "--min-cosine", "0.97")["min_cosine"] == 0.97

    code = main(["export", "--precision", "int8", "--min-cosine", "1.5", "--repo", str(tmp_path)])

    assert code == 2
    assert capsys.readouterr().err == "error: threshold min_cosine must be in [0, 1], got 1.5\n"
    assert not any(tmp_path.iterdir())


def test_a_non_positive_timeout_is_a_config_error_with_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["health", "--timeout", "0"])

    assert code == 2
    assert capsys.readouterr().err == "error: timeout_s must be > 0, got 0.0\n"


def test_serve_on_a_missing_repository_exits_1_and_says_to_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["serve", "--repo", str(tmp_path / "missing")])
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert code == 1
    assert "run `tritonhf export` first" in capsys.readouterr().err
