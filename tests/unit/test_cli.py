from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tritonhf.cli import main as cli
from tritonhf.cli.main import STOP_SIGNALS, main
from tritonhf.cli.parser import build_parser
from tritonhf.errors import ConfigError
from tritonhf.export.onnx_export import DEFAULT_OPSET
from tritonhf.export.pipeline import ExportOptions
from tritonhf.export.validate import DEFAULT_ATOL
from tritonhf.server.launcher import ServerConfig


@pytest.fixture
def signals_restored() -> Iterator[None]:
    """Commands that run long set handlers for the stop signals; the test process keeps its."""
    import signal

    from tritonhf.cli.main import STOP_SIGNALS

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (what a command prints, how it exits)."""
    return subprocess.run(  # nosec B603
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


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
        "gate_data": None,
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
        "http_host": None,
        "http_port": 8000,
        "grpc_port": 8001,
        "metrics_port": 8002,
        "log_file": None,
        "log_text": None,
        "model_control": "explicit",
        "restarts": 5,
        "stub_hang_timeout": 300.0,
    }


def test_serve_flag_defaults_agree_with_server_config() -> None:
    args, config = parse("serve"), ServerConfig(repo=Path("model_repository"))

    assert (args["host"], args["http_port"], args["grpc_port"], args["metrics_port"]) == (
        config.host,
        config.http_port,
        config.grpc_port,
        config.metrics_port,
    )
    assert args["stub_hang_timeout"] == config.stub_hang_timeout_s


def test_train_flag_defaults_and_choices_agree_with_training_options() -> None:
    from tritonhf.train import ClassWeight, TrainingOptions

    args = parse("train", "--out", "clf")
    options = TrainingOptions(data=Path("train.csv"), out=Path("clf"))
    assert (args["epochs"], args["batch_size"], args["seed"]) == (
        options.epochs,
        options.batch_size,
        options.seed,
    )
    assert (args["top_layers"], args["max_length"]) == (options.top_layers, options.max_length)
    assert args["class_weight"] == options.class_weight.value
    for weight in ClassWeight:
        assert parse("train", "--out", "clf", "--class-weight", weight.value)["class_weight"] == (
            weight.value
        )


def test_embed_takes_texts_and_defaults_to_grpc_and_the_served_embedder() -> None:
    assert parse("embed", "a", "b c") == {
        "verbose": False,
        "command": "embed",
        "texts": ["a", "b c"],
        "input": None,
        "json": False,
        "url": None,
        "protocol": "grpc",
        "timeout": 30.0,
        "model": None,  # the served embedder: minilm when served
    }


def test_input_files_give_one_text_per_line(tmp_path: Path) -> None:
    from tritonhf.cli.main import read_lines

    lines = tmp_path / "texts.txt"
    lines.write_bytes(
        "\ufefffirst line\r\nsecond, with\u2028a line separator\nthird\rfourth\r".encode()
    )
    assert read_lines(lines) == [
        "first line",
        "second, with\u2028a line separator",
        "third",
        "fourth",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"one\n\nthree\n", "line 2 of .* is blank: one text per line"),
        (b"one\n \t\n", "line 2 of .* is blank"),
        (b"ok\nbad \xff byte\n", r"line 2 of .* is not UTF-8 \(byte 5\)"),
    ],
)
def test_an_input_file_line_that_is_no_text_is_named(
    tmp_path: Path, data: bytes, message: str
) -> None:
    from tritonhf.cli.main import read_lines
    from tritonhf.errors import InvalidInputError

    path = tmp_path / "texts.txt"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError, match=message):
        read_lines(path)


@pytest.mark.parametrize(
    "argv",
    [["embed"], ["embed", "a", "--input", "x.txt"], ["classify"]],
    ids=["neither", "both", "classify-neither"],
)
def test_texts_come_from_the_arguments_or_a_file_not_both_or_neither(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "give the texts as arguments or with --input FILE" in capsys.readouterr().err


def test_an_empty_input_file_is_refused_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["embed", "--input", str(empty), "--url", "127.0.0.1:1"]) == 2
    assert "holds no text" in capsys.readouterr().err


def test_health_defaults_to_grpc_and_every_pipeline() -> None:
    assert parse("health") == {
        "verbose": False,
        "command": "health",
        "url": None,
        "protocol": "grpc",
        "timeout": 30.0,
        "model": None,  # every pipeline the server's repository holds
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
        ["export", "--runtime", "openvino"],
        ["health", "--protocol", "websocket"],
        ["serve", "--http-port", "eighty"],
        ["unknown"],
    ],
    ids=["no-command", "bad-runtime", "bad-protocol", "bad-port", "unknown"],
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
    assert capsys.readouterr().err == (
        "error: timeout_s (--timeout) must be a finite number of seconds > 0, got 0.0\n"
    )


@pytest.mark.usefixtures("signals_restored")
def test_serve_on_a_missing_repository_exits_2_and_says_to_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--repo", str(tmp_path / "missing")])

    assert code == 2  # a bad --repo, as for export
    assert "run `tritonhf export` first" in capsys.readouterr().err


@pytest.mark.usefixtures("signals_restored")
def test_serve_refuses_a_bad_log_text_environment_value_in_one_line_before_starting_triton(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tritonhf.observability.logs import LOG_TEXT_ENV
    from tritonhf.server.launcher import TritonServer

    def started(self: TritonServer) -> None:
        pytest.fail("serve started Triton with a bad $TRITONHF_LOG_TEXT")

    monkeypatch.setattr(TritonServer, "start", started)
    monkeypatch.setenv(LOG_TEXT_ENV, "bogus")
    (tmp_path / "repo").mkdir()
    code = main(["serve", "--repo", str(tmp_path / "repo")])

    assert code == 2  # as for `--log-text bogus`
    assert capsys.readouterr().err == (
        f"error: {LOG_TEXT_ENV}='bogus' is not one of: off, hash, raw\n"
    )


@pytest.mark.usefixtures("signals_restored")
def test_the_log_text_flag_overrides_a_bad_environment_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from tritonhf.errors import ServerError
    from tritonhf.observability.logs import LOG_TEXT_ENV
    from tritonhf.server.launcher import TritonServer

    def started(self: TritonServer) -> None:
        raise ServerError(f"would start Triton with {LOG_TEXT_ENV}={os.environ[LOG_TEXT_ENV]}")

    monkeypatch.setattr(TritonServer, "start", started)
    monkeypatch.setenv(LOG_TEXT_ENV, "bogus")
    (tmp_path / "repo").mkdir()
    code = main(["serve", "--repo", str(tmp_path / "repo"), "--log-text", "hash"])

    assert code == 1
    assert capsys.readouterr().err == f"error: would start Triton with {LOG_TEXT_ENV}=hash\n"


# export options refused before any model work -------------------------------------------


@pytest.fixture
def no_model_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the export gets as far as resolving (downloading) the model."""
    from tritonhf.export import pipeline

    def resolved(*args: object, **kwargs: object) -> None:
        pytest.fail("the export resolved the model before refusing its options")

    monkeypatch.setattr(pipeline, "resolve_model", resolved)


def _missing(tmp_path: Path) -> str:
    return str(tmp_path / "missing.txt")


def _blank(tmp_path: Path) -> str:
    (tmp_path / "blank.txt").write_text("\n   \n", encoding="utf-8")
    return str(tmp_path / "blank.txt")


def _zeros(tmp_path: Path) -> str:
    (tmp_path / "zeros.bin").write_bytes(b"\x00" * 5000)
    return str(tmp_path / "zeros.bin")


def _few_lines(tmp_path: Path) -> str:
    lines = "".join(f"in-domain text {n}\n" for n in range(19))
    (tmp_path / "few.txt").write_text(lines, encoding="utf-8")
    return str(tmp_path / "few.txt")


def _huge(tmp_path: Path) -> str:
    with (tmp_path / "huge.txt").open("wb") as huge:  # sparse: no disk or time spent
        huge.truncate(65 << 20)
    return str(tmp_path / "huge.txt")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--opset", "30"], "--opset 30 is outside 10..20"),
        (["--opset", "9"], "--opset 9 is outside 10..20"),
        (["--max-batch-size", "0"], "--max-batch-size must be in 1..2147483647, got 0"),
        (["--max-batch-size", str(2**31)], f"--max-batch-size must be in 1..{2**31 - 1}"),
        (["--max-queue-size", str(2**32)], f"--max-queue-size must be in 0..{2**32 - 1}"),
        (["--max-length", "1"], "--max-length must be at least 2 tokens"),
        (["--atol", "-1"], "--atol must be a finite tolerance >= 0"),
        (["--name", "bad name!"], "model name 'bad name!' is not usable"),
        (["--layout", "merged", "--runtime", "onnxruntime"], "merged layout needs a Python"),
        (["--version", "2"], "has no pipeline 'minilm': export version 1 first"),
        (["--drift-reference", _missing], "cannot read the drift reference set"),
        (["--drift-reference", _blank], "has no non-blank text"),
        (["--drift-reference", _zeros], "holds NUL bytes: it is not text"),
        (["--drift-reference", _huge], "over the 67,108,864 a reference profile reads"),
        (["--version", str(2**63)], f"--version must be in 1..{2**63 - 1}"),
        (["--runtime", "python-torch", "--precision", "int8"], "serves fp32 or fp16"),
        (["--runtime", "tensorrt", "--optimize"], "drop --optimize"),
        (["--gate-data", _blank], "this export builds none (it needs --optimize or"),
        (["--optimize", "--gate-data", _missing], "no such file"),
        (["--precision", "int8", "--gate-data", _few_lines], "holds 19 non-empty texts; the"),
        (["--runtime", "python-torch", "--precision", "int8", "--gate-data", _few_lines],
         "serves fp32 or fp16"),
    ],
    ids=[
        "opset-too-new", "opset-too-old", "batch-zero", "batch-past-int32", "queue-past-uint32",
        "length-one", "negative-atol", "bad-name", "merged-native", "version-without-pipeline",
        "missing-reference", "blank-reference", "binary-reference", "huge-reference",
        "version-past-int64", "torch-int8", "tensorrt-optimize", "gate-data-without-variant",
        "missing-gate-data", "too-few-gate-texts", "unservable-variant-before-gate-data",
    ],
)  # fmt: skip
@pytest.mark.usefixtures("no_model_work")
def test_bad_export_options_exit_2_with_one_line_before_any_model_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[object],
    message: str,
) -> None:
    argv = [arg(tmp_path) if callable(arg) else str(arg) for arg in args]
    repo = tmp_path / "repo"

    code = main(["export", *argv, "--repo", str(repo)])

    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1
    assert not repo.exists()


@pytest.mark.usefixtures("no_model_work")
def test_a_repo_that_cannot_be_a_folder_exits_2_before_any_model_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")

    assert main(["export", "--repo", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["export", "--repo", str(afile / "sub")]) == 2
    assert f"cannot be created: {afile} is a file" in capsys.readouterr().err


@pytest.mark.usefixtures("no_model_work")
def test_a_repo_behind_a_broken_symbolic_link_exits_2_before_any_model_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")

    for repo in ("dangling", "dangling/sub", "loop1"):
        assert main(["export", "--repo", str(tmp_path / repo)]) == 2
        assert "is a broken symbolic link" in capsys.readouterr().err


@pytest.mark.usefixtures("no_model_work")
def test_a_name_whose_folders_belong_to_another_pipeline_exits_2_before_any_model_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    (repo / "minilm_model").mkdir(parents=True)
    (repo / "minilm_model" / "config.pbtxt").write_text(
        'name: "minilm_model"\nplatform: "ensemble"\n'
    )

    assert main(["export", "--repo", str(repo)]) == 2
    assert "would overwrite" in capsys.readouterr().err


def _served_pipeline(repo: Path, **spec: object) -> None:
    """A pipeline's ensemble folder with the export manifest the repository writer leaves."""
    fields = {
        "name": "minilm", "task": "embedding", "runtime": "python-onnx", "embedding_size": 384,
        "normalized": True, "max_length": 256, "max_batch_size": 64, "precision": "fp32",
        "layout": "split", **spec,
    }  # fmt: skip
    (repo / "minilm").mkdir(parents=True)
    (repo / "minilm" / "tritonhf.json").write_text(json.dumps({"spec": fields, "version": 1}))


@pytest.mark.parametrize(
    ("args", "changed"),
    [
        (["--layout", "merged"], "layout (split -> merged)"),
        (["--max-length", "128"], "max_length (256 -> 128)"),
        (["--precision", "int8"], "precision (fp32 -> int8)"),
        (["--runtime", "python-torch"], "runtime (python-onnx -> python-torch)"),
        (["--max-batch-size", "8"], "max_batch_size (64 -> 8)"),
        (["--task", "classification"], "task (embedding -> classification)"),
    ],
)
@pytest.mark.usefixtures("no_model_work")
def test_a_new_version_that_changes_what_version_1_fixed_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], changed: str
) -> None:
    _served_pipeline(tmp_path)

    code = main(["export", "--version", "2", *args, "--repo", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: --version 2 of 'minilm' would change its {changed}")
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minilm"]


def test_a_new_version_of_another_task_is_refused_naming_it_and_version_1_notes_it(
    tmp_path: Path,
) -> None:
    from tritonhf.export.options import check_new_version, replacement_note
    from tritonhf.spec import Task

    _served_pipeline(tmp_path)
    (tmp_path / "minilm_model" / "2").mkdir(parents=True)
    version_2 = ExportOptions(repo=tmp_path, version=2)

    with pytest.raises(ConfigError, match=r"would change its task \(embedding -> classif"):
        check_new_version(version_2, task=Task.CLASSIFICATION)
    check_new_version(version_2, task=Task.EMBEDDING)
    note = replacement_note(ExportOptions(repo=tmp_path), Task.CLASSIFICATION)
    assert note is not None
    assert "(task embedding -> classification; version(s) 2 deleted)" in note
    assert replacement_note(version_2, Task.CLASSIFICATION) is None
    assert replacement_note(ExportOptions(repo=tmp_path / "empty"), Task.EMBEDDING) is None


def test_a_version_1_export_that_renames_or_reorders_the_classes_notes_it(tmp_path: Path) -> None:
    from tritonhf.export.options import replacement_note
    from tritonhf.repository.configs import ensemble_config
    from tritonhf.spec import PipelineSpec, Task

    _served_pipeline(tmp_path, task="classification")
    served = PipelineSpec(name="minilm", task=Task.CLASSIFICATION, labels=("negative", "positive"))
    (tmp_path / "minilm" / "config.pbtxt").write_text(str(ensemble_config(served)))
    options = ExportOptions(repo=tmp_path)

    note = replacement_note(options, Task.CLASSIFICATION, ("positive", "negative"))
    assert note is not None
    assert "(labels ['negative', 'positive'] -> ['positive', 'negative'])" in note
    assert replacement_note(options, Task.CLASSIFICATION, ("negative", "positive")) is None


def test_the_opset_help_states_the_range_the_export_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tritonhf.export.onnx_export import MAX_OPSET, MIN_OPSET

    with pytest.raises(SystemExit):
        main(["export", "--help"])

    assert f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} " in " ".join(capsys.readouterr().out.split())


# figures printed against their bounds (validate's table, the export's validation) ---------


def _gate_table(value: float, bound: float, *, higher_is_better: bool) -> str:
    from tritonhf.gate.agreement import Criterion, GateReport
    from tritonhf.spec import Precision

    criterion = Criterion("figure", value, bound, higher_is_better=higher_is_better)
    report = GateReport("served vs PyTorch", Precision.FP32, 64, (criterion,))
    return report.table().splitlines()[2]


@pytest.mark.parametrize(
    ("value", "bound", "higher_is_better", "row"),
    [
        (3e-5, 0.0, False, "figure 0.00003 <= 0 NO"),
        (0.99989, 0.9999, True, "figure 0.99989 >= 0.9999 NO"),
        (0.99991, 0.9999, True, "figure 0.99991 >= 0.9999 yes"),
        (0.9999, 0.9999, True, "figure 0.9999 >= 0.9999 yes"),
        (0.5, 0.98, True, "figure 0.5000 >= 0.98 NO"),
        (1.0, 1.0, True, "figure 1.0000 >= 1 yes"),
    ],
)
def test_the_gate_table_never_shows_a_failing_figure_equal_to_its_bound(
    value: float, bound: float, higher_is_better: bool, row: str
) -> None:
    assert " ".join(_gate_table(value, bound, higher_is_better=higher_is_better).split()) == row


def test_the_export_validation_table_shows_each_outputs_own_bound() -> None:
    from tritonhf.export.validate import OutputDiff, ValidationReport

    report = ValidationReport(
        outputs=(
            OutputDiff("PROBABILITIES", (64, 3), 1.00004e-4),
            OutputDiff("LABEL", (64, 1), 1 / 64, tolerance=0.0),
        ),
        atol=1e-4,
        num_texts=64,
        batch_size=8,
    )

    rows = [" ".join(line.split()) for line in report.table().splitlines()[1:]]

    assert rows == [
        "PROBABILITIES (64, 3) 1.00004e-04 <= 0.0001 NO",
        "LABEL (64, 1) 1.562e-02 <= 0 NO",
    ]


class _Refusing:
    """tritonclient's gRPC client, answering every call as Triton does without the admin key."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def close(self) -> None:
        pass

    def __getattr__(self, method: str) -> object:
        from tritonclient.utils import InferenceServerException

        def refuse(*args: object, **kwargs: object) -> None:
            raise InferenceServerException(
                "This protocol is restricted, expecting header "
                "'triton-grpc-protocol-tritonhf-admin-key'",
                status="StatusCode.UNAVAILABLE",
            )

        return refuse


@pytest.mark.parametrize("command", [["models"], ["deploy", "--model", "minilm"]])
def test_an_admin_command_without_the_key_says_to_set_it_in_one_line_and_exits_1(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TRITONHF_ADMIN_KEY", raising=False)
    monkeypatch.setattr("tritonclient.grpc.InferenceServerClient", _Refusing)

    assert main([*command, "--url", "127.0.0.1:25999"]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: Triton at 127.0.0.1:25999 refused the request")
    assert err.count("\n") == 1
    assert "set TRITONHF_ADMIN_KEY" in err


def test_a_reader_that_stops_reading_ends_the_cli_quietly() -> None:
    # `tritonhf models | head -1`: the pipe closes while the CLI still writes.
    code = textwrap.dedent(
        """
        import io, os, sys
        from tritonhf.cli import main as cli

        read_end, write_end = os.pipe()
        os.close(read_end)
        sys.stdout = io.TextIOWrapper(io.FileIO(write_end, "w"), write_through=True)
        cli.COMMANDS["models"] = lambda args: print("a table row") or 0  # what models prints
        sys.exit(cli.main(["models"]))
        """
    )
    done = run_python(code)

    assert done.stderr == ""
    assert done.returncode == 141


def test_ctrl_c_ends_a_command_with_130_and_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "export", interrupted)

    assert main(["export"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_command_without_its_extra_names_the_extra_in_one_line() -> None:
    # A base install (the client only) running `tritonhf ui`: gradio is missing.
    code = textwrap.dedent(
        """
        import sys
        from tritonhf.cli import main as cli

        def run_ui(args):
            import gradio_is_not_installed_here  # noqa: F401

        cli.COMMANDS["ui"] = run_ui
        sys.exit(cli.main(["ui"]))
        """
    )
    done = run_python(code)

    assert done.returncode == 1
    assert done.stderr == (
        "error: tritonhf ui needs gradio_is_not_installed_here, which is not installed: "
        "install the 'ui' extra with `pip install 'tritonhf[ui]'`\n"
    )


@pytest.mark.parametrize(
    "command", [["export"], ["train", "--out", "clf"], ["validate", "--reference", "default"]]
)
def test_an_export_extra_command_without_torch_says_so_before_any_work(
    command: list[str],
) -> None:
    # A client-only install: torch is missing, and so is the default model's package.
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        from tritonhf.cli import main as cli

        find_spec = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "torch" else find_spec(name, *a)
        cli.COMMANDS[{command[0]!r}] = lambda args: sys.exit("the command ran")
        sys.exit(cli.main({command!r}))
        """
    )
    done = run_python(code)

    assert done.returncode == 1
    assert done.stderr == (
        f"error: tritonhf {command[0]} needs torch, which is not installed: "
        "install the 'export' extra with `pip install 'tritonhf[export]'`\n"
    )


@pytest.mark.parametrize(
    ("absent", "named"),
    [("matplotlib", "matplotlib"), ("nvidia", "nvidia-cuda-runtime-cu12")],
)
def test_bench_without_its_extra_says_so_before_downloading_perf_analyzer(
    absent: str, named: str
) -> None:
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        from tritonhf.cli import main as cli

        find_spec = importlib.util.find_spec
        def without(name, *a):
            if name.split(".")[0] == {absent!r}:
                if "." in name:  # what find_spec does when the parent package is missing
                    raise ModuleNotFoundError(f"No module named {absent!r}", name={absent!r})
                return None
            return find_spec(name, *a)
        importlib.util.find_spec = without
        cli.COMMANDS["bench"] = lambda args: sys.exit("the command ran")
        sys.exit(cli.main(["bench"]))
        """
    )
    done = run_python(code)

    assert done.returncode == 1
    assert done.stderr == (
        f"error: tritonhf bench needs {named}, which is not installed: "
        "install the 'bench' extra with `pip install 'tritonhf[bench]'`\n"
    )


def test_serve_refuses_a_negative_restart_count_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--restarts", "-1"]) == 2
    assert capsys.readouterr().err == "error: --restarts must be 0 or more, got -1\n"


@pytest.mark.parametrize(
    "argv",
    [["embed", "--input", ""], ["export", "--repo", " "], ["serve", "--log-file", ""]],
    ids=["input", "repo-of-a-space", "log-file"],
)
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--repo ''`` exported into the current folder; ``--input ''`` said ``.`` is a folder."""
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    said = "a path of spaces alone" if argv[2] else "an empty path"
    assert capsys.readouterr().err.endswith(f"error: argument {argv[1]}: {said}\n")


def test_labels_of_wide_characters_are_padded_by_the_columns_they_take() -> None:
    from tritonhf.spec import left_aligned

    assert left_aligned("中性", 6) == "中性  "  # two wide characters: four columns
    assert left_aligned("ne\u0301gatif", 8) == "ne\u0301gatif "  # a combining mark takes none
    assert left_aligned("neutral", 6) == "neutral"


def test_texts_echoed_on_a_console_that_is_not_utf8_are_escaped_not_a_traceback() -> None:
    # `tritonhf embed "😀"` printed the text after a successful request and died printing it
    # (a probe's finding, with PYTHONIOENCODING=ascii: a latin-1 console or log pipe).
    script = (
        "from tritonhf.cli.main import main\n"
        "main(['models', '--url', '127.0.0.1:1', '--timeout', '1'])\n"
        "print('\\U0001f600 h\\u00e9llo')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode("ascii") == "\\U0001f600 h\\xe9llo\n"


@pytest.mark.parametrize("count", [0, 1, 3])
def test_json_results_are_printed_a_row_at_a_time_as_one_document(
    capsys: pytest.CaptureFixture[str], count: int
) -> None:
    from tritonhf.cli.main import _print_results_json

    rows = [{"text": f'"quoted" \\ é {i}\n', "embedding": [0.5, -1e-08]} for i in range(count)]
    _print_results_json('model "x"', iter(rows))
    printed = capsys.readouterr().out
    assert printed == json.dumps({"model": 'model "x"', "results": rows}) + "\n"


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from tritonhf import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"tritonhf {__version__}\n"


def test_memory_that_runs_out_anywhere_is_one_line_not_a_traceback() -> None:
    """Under `ulimit -v` importing a native library failed ("failed to map segment") with a
    traceback (a probe's finding)."""
    code = textwrap.dedent(
        """
        import sys
        from tritonhf.cli import main as cli

        def run(args):
            raise ImportError("/x/cygrpc.so: failed to map segment from shared object")
        cli.COMMANDS["models"] = run
        sys.exit(cli.main(["models"]))
        """
    )
    done = run_python(code)

    assert done.returncode == 1
    assert done.stderr.startswith("error: ImportError: /x/cygrpc.so: failed to map segment")
    assert "not enough memory" in done.stderr
    assert "exporting MiniLM" not in done.stderr  # export's figure, for export's commands
    assert "Traceback" not in done.stderr


def test_an_input_past_the_limit_is_refused_not_read_until_memory_runs_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--input /dev/zero` grew to 23.8 GB until the OOM killer came (probe E2)."""
    from tritonhf.cli import main as cli
    from tritonhf.errors import InvalidInputError

    monkeypatch.setattr(cli, "MAX_INPUT_BYTES", 16)
    path = tmp_path / "texts.txt"
    path.write_bytes(b"a\n" * 8)
    assert cli.read_lines(path) == ["a"] * 8
    path.write_bytes(b"a\n" * 9)
    with pytest.raises(InvalidInputError, match=r"holds more than .* MiB: .*split it"):
        cli.read_lines(path)
    with pytest.raises(InvalidInputError, match="holds more than"):
        cli.read_lines(Path("/dev/zero"))


def test_an_http_server_that_is_not_triton_is_named_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m http.server`'s HTML page was the whole error, under `request to None`."""
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        url = f"127.0.0.1:{other.server_address[1]}"
        assert main(["embed", "hi", "--url", url, "--protocol", "http"]) == 1
    finally:
        other.shutdown()
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {url} does not answer as Triton's HTTP endpoint (501: ")


def test_text_arguments_are_read_as_typed_in_utf8_or_refused_naming_the_argument() -> None:
    """Under a C locale without UTF-8 mode, "naïve" arrived as lone surrogates and was refused
    for "lone surrogate characters"; a Latin-1 terminal's bytes were blamed alike."""
    from tritonhf.cli.main import argument_texts
    from tritonhf.errors import InvalidInputError

    as_ascii_locale = b"na\xc3\xafve".decode("ascii", errors="surrogateescape")
    assert argument_texts(["plain", as_ascii_locale]) == ["plain", "naïve"]
    latin1 = b"caf\xe9".decode("utf-8", errors="surrogateescape")
    with pytest.raises(InvalidInputError, match=r"text argument 2 is not UTF-8 \(byte 0xe9 at 4\)"):
        argument_texts(["fine", latin1])


def test_main_called_in_process_from_a_thread_runs_and_leaves_the_signals_as_they_were(
    closed_port: int,
) -> None:
    """Client commands install stop handlers: from a thread that raised ValueError ("signal
    only works in main thread"), and in the main thread the handlers outlived main()."""
    import signal
    import threading

    argv = ["embed", "x", "--url", f"127.0.0.1:{closed_port}", "--timeout", "2"]
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(main(argv)))
    worker.start()
    worker.join(timeout=60)
    assert codes == [1]  # nothing listens: an error line, not a crash

    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    assert main(argv) == 1
    assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == before
