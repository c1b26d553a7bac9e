"""Reading a sentence-transformers model's modules into the head tritonhf exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonhf.errors import ExportError
from tritonhf.export.head import (
    PLAIN_HEAD,
    Activation,
    Dense,
    Normalize,
    Pooling,
    SentenceHead,
    load_head,
    read_head,
    transformer_folder,
)
from tritonhf.export.source import download_patterns, resolve_model

# The module type names sentence-transformers 6 writes, and the older ones.
TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
DENSE = "sentence_transformers.base.modules.dense.Dense"
NORMALIZE = "sentence_transformers.models.Normalize"


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def st_folder(root: Path, modules: list[tuple[str, str, dict[str, object] | None]]) -> Path:
    """A folder with modules.json listing (type, path, config) and each module's config."""
    write_json(
        root / "modules.json",
        [{"idx": i, "name": str(i), "path": p, "type": t} for i, (t, p, _) in enumerate(modules)],
    )
    for _, path, config in modules:
        if config is not None:
            write_json(root / path / "config.json", config)
    return root


def dense_config(in_features: int, out_features: int, **extra: object) -> dict[str, object]:
    return {"in_features": in_features, "out_features": out_features, "bias": True, **extra}


def test_pooling_dense_and_normalize_are_read_in_order(tmp_path: Path) -> None:
    folder = st_folder(
        tmp_path,
        [
            (TRANSFORMER, "", {"model_type": "bert"}),
            (POOLING, "1_Pooling", {"embedding_dimension": 32, "pooling_mode": "max"}),
            (DENSE, "2_Dense", dense_config(32, 16)),
            (NORMALIZE, "3_Normalize", None),
        ],
    )

    head = read_head(folder)

    assert head.pooling == (Pooling.MAX,)
    assert head.steps == (Dense(32, 16, True, Activation.TANH, folder / "2_Dense"), Normalize())
    assert head.normalized
    assert head.embedding_size(32) == 16
    assert head.describe() == "max -> dense 32->16 tanh -> normalize"


def test_without_normalize_the_embeddings_are_not_unit_length(tmp_path: Path) -> None:
    folder = st_folder(
        tmp_path,
        [
            (TRANSFORMER, "", None),
            (POOLING, "1_Pooling", {"pooling_mode": ["cls", "mean"]}),
            ("sentence_transformers.models.Dropout", "2_Dropout", {"dropout": 0.1}),
        ],
    )

    head = read_head(folder)

    assert head.pooling == (Pooling.CLS, Pooling.MEAN)
    assert head.steps == ()  # Dropout does nothing at inference
    assert not head.normalized
    assert head.embedding_size(32) == 64  # the two modes concatenate


def test_legacy_flags_concatenate_in_sentence_transformers_order(tmp_path: Path) -> None:
    flags = {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}
    folder = st_folder(
        tmp_path,
        [(TRANSFORMER, "", None), (POOLING, "1_Pooling", flags), (NORMALIZE, "2_Normalize", None)],
    )

    assert read_head(folder).pooling == (Pooling.CLS, Pooling.MEAN)


def test_a_plain_folder_gets_mean_pooling_and_normalisation(tmp_path: Path) -> None:
    assert read_head(tmp_path) == PLAIN_HEAD
    assert PLAIN_HEAD.pooling == (Pooling.MEAN,)
    assert PLAIN_HEAD.normalized


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (
            [(TRANSFORMER, "", None), (POOLING, "1_Pooling", {}), ("x.models.LayerNorm", "2", {})],
            r"LayerNorm module \(x\.models\.LayerNorm\)",
        ),
        ([(TRANSFORMER, "", None)], r"lists \['Transformer'\]"),
        (
            [(TRANSFORMER, "", None), (POOLING, "1_Pooling", {"pooling_mode": "median"})],
            "pooling",
        ),
        (
            [
                (TRANSFORMER, "", None),
                (POOLING, "1_Pooling", {}),
                (DENSE, "2_Dense", dense_config(32, 8, activation_function="os.system")),
            ],
            "activation 'os.system'",
        ),
        (
            [(TRANSFORMER, "", None), (POOLING, "1_Pooling", {}), (DENSE, "2_Dense", {})],
            "not a Dense config",
        ),
    ],
    ids=["unknown-module", "no-pooling", "unknown-mode", "unknown-activation", "bad-dense"],
)
def test_what_cannot_be_exported_is_refused_by_name(
    tmp_path: Path, modules: list[tuple[str, str, dict[str, object] | None]], message: str
) -> None:
    with pytest.raises(ExportError, match=message):
        read_head(st_folder(tmp_path, modules))


def test_a_dense_module_that_does_not_fit_the_pooled_width_is_refused(tmp_path: Path) -> None:
    head = SentenceHead(steps=(Dense(768, 8, folder=tmp_path),))

    with pytest.raises(ExportError, match="projects 768 features, but the vector before it has 32"):
        head.embedding_size(32)


def test_the_head_round_trips_through_its_dict_form() -> None:
    head = SentenceHead(
        pooling=(Pooling.WEIGHTED_MEAN, Pooling.LAST_TOKEN),
        steps=(Dense(64, 8, False, Activation.IDENTITY), Normalize(), Dense(8, 4)),
    )

    assert SentenceHead.from_dict(json.loads(json.dumps(head.to_dict()))) == head


def test_an_old_layout_keeps_the_transformer_in_its_own_folder(tmp_path: Path) -> None:
    folder = st_folder(
        tmp_path,
        [(TRANSFORMER, "0_Transformer", {"model_type": "bert"}), (POOLING, "1_Pooling", {})],
    )
    write_json(folder / "0_Transformer" / "sentence_bert_config.json", {"max_seq_length": 64})

    source = resolve_model(str(folder))

    assert transformer_folder(folder) == source.path == folder / "0_Transformer"
    assert source.max_seq_length == 64
    assert not source.head.normalized


def test_dense_weights_load_and_pickle_only_weights_need_permission(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    weight, bias = torch.randn(4, 8), torch.randn(4)
    head = SentenceHead(steps=(Dense(8, 4, activation=Activation.IDENTITY, folder=tmp_path),))
    torch.save({"linear.weight": weight, "linear.bias": bias}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ExportError, match="allow-pickle-weights"):
        load_head(head)
    vector = torch.randn(1, 8)

    from_pickle = load_head(head, allow_pickle_weights=True)(vector)
    save_file({"linear.weight": weight, "linear.bias": bias}, str(tmp_path / "model.safetensors"))
    from_safetensors = load_head(head)(vector)

    torch.testing.assert_close(from_pickle, vector @ weight.T + bias)
    torch.testing.assert_close(from_safetensors, from_pickle)


def test_pickle_weights_are_downloaded_only_when_allowed() -> None:
    assert "*.bin" not in download_patterns(allow_pickle_weights=False)
    assert "*.bin" in download_patterns(allow_pickle_weights=True)
    assert "*.safetensors" in download_patterns(allow_pickle_weights=False)


def test_a_default_prompt_is_read_so_the_export_can_say_it_is_not_applied(tmp_path: Path) -> None:
    folder = st_folder(tmp_path, [(TRANSFORMER, "", {"model_type": "bert"}), (POOLING, "p", {})])
    write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": {"query": "query: ", "document": ""}, "default_prompt_name": "query"},
    )
    assert resolve_model(str(folder)).default_prompt == "query: "

    write_json(folder / "config_sentence_transformers.json", {"prompts": {"query": "query: "}})
    assert resolve_model(str(folder)).default_prompt is None


def test_a_pooling_that_leaves_the_prompt_out_is_read(tmp_path: Path) -> None:
    pooled = st_folder(
        tmp_path / "a", [(TRANSFORMER, "", {"model_type": "bert"}), (POOLING, "p", {})]
    )
    excluded = st_folder(
        tmp_path / "b",
        [(TRANSFORMER, "", {"model_type": "bert"}), (POOLING, "p", {"include_prompt": False})],
    )

    assert resolve_model(str(pooled)).prompt_pooled is True
    assert resolve_model(str(excluded)).prompt_pooled is False


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(
            "unable to mmap 90868376 bytes from file <m.safetensors>: Cannot allocate memory (12)"
        ),
        MemoryError(),
        RuntimeError("Could not allocate bytes object!"),
    ],
    ids=["enomem", "memory-error", "pybind11"],
)
def test_weights_that_memory_cannot_hold_are_not_called_corrupt(
    tmp_path: Path, exc: BaseException
) -> None:
    """Under `ulimit -v` the loader's ENOMEM was reported as "a file is truncated or corrupt:
    download the model again" (a probe's finding)."""
    from tritonhf.errors import EXPORT_MEMORY_ADVICE
    from tritonhf.export.head import unreadable_weights

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    message = str(unreadable_weights(tmp_path, exc))

    assert message.endswith(EXPORT_MEMORY_ADVICE)
    assert "corrupt" not in message
    assert "corrupt" in str(unreadable_weights(tmp_path, RuntimeError("header too large")))
