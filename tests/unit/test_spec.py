from __future__ import annotations

import pytest

from tritonhf.errors import ConfigError, TritonHFError
from tritonhf.spec import (
    DEFAULT_MODEL_NAME,
    DataType,
    PipelineSpec,
    Runtime,
    Task,
    TensorSpec,
    look_alike_labels,
)


def test_default_spec_serves_minilm_embeddings_with_the_python_onnx_runtime() -> None:
    spec = PipelineSpec()

    assert spec.name == DEFAULT_MODEL_NAME == "minilm"
    assert spec.task is Task.EMBEDDING
    assert spec.runtime is Runtime.PYTHON_ONNX
    assert (spec.embedding_size, spec.max_length, spec.max_batch_size) == (384, 256, 64)


def test_step_names_derive_from_the_ensemble_name() -> None:
    spec = PipelineSpec(name="e5.small-v2")

    assert spec.tokenizer_name == "e5.small-v2_tokenizer"
    assert spec.model_name == "e5.small-v2_model"


def test_ensemble_takes_one_text_per_row_as_bytes() -> None:
    assert PipelineSpec().ensemble_inputs == (TensorSpec("TEXT", DataType.BYTES, (1,)),)


def test_ensemble_returns_an_fp32_embedding_of_embedding_size_and_an_int32_token_count() -> None:
    spec = PipelineSpec(embedding_size=768)

    assert spec.ensemble_outputs == (
        TensorSpec("EMBEDDING", DataType.FP32, (768,)),
        TensorSpec("NUM_TOKENS", DataType.INT32, (1,)),
        TensorSpec("TRUNCATED", DataType.BOOL, (1,)),
    )
    assert spec.model_outputs == (TensorSpec("EMBEDDING", DataType.FP32, (768,)),)


def test_tokenizer_feeds_variable_length_int64_ids_and_mask_to_the_model() -> None:
    spec = PipelineSpec()

    assert spec.token_tensors == (
        TensorSpec("input_ids", DataType.INT64, (-1,)),
        TensorSpec("attention_mask", DataType.INT64, (-1,)),
    )
    assert spec.tokenizer_outputs == (
        *spec.token_tensors,
        TensorSpec("NUM_TOKENS", DataType.INT32, (1,)),
        TensorSpec("TRUNCATED", DataType.BOOL, (1,)),
    )


@pytest.mark.parametrize(
    "name", ["bad name", "_leading", "-leading", ".hidden", "", "a/b", "ünïcode", "x" * 129]
)
def test_unusable_model_names_are_config_errors_quoting_the_name(name: str) -> None:
    with pytest.raises(ConfigError, match="is not usable as a Triton model directory") as info:
        PipelineSpec(name=name)

    assert repr(name) in str(info.value)


@pytest.mark.parametrize("name", ["a", "minilm", "bge-small_en.v1.5", "7b", "x" * 128])
def test_names_of_letters_digits_dots_dashes_and_underscores_are_accepted(name: str) -> None:
    assert PipelineSpec(name=name).name == name


def test_a_name_with_a_trailing_newline_is_rejected() -> None:
    with pytest.raises(ConfigError):
        PipelineSpec(name="minilm\n")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("max_length", 1, "max_length must be >= 2, got 1"),
        ("max_length", 0, "max_length must be >= 2, got 0"),
        ("max_batch_size", 0, "max_batch_size must be >= 1, got 0"),
        ("max_batch_size", -8, "max_batch_size must be >= 1, got -8"),
        ("embedding_size", 0, "embedding_size must be >= 1, got 0"),
    ],
)
def test_out_of_range_sizes_are_config_errors_naming_field_and_value(
    field: str, value: int, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        PipelineSpec(**{field: value})  # type: ignore[arg-type]

    assert str(info.value) == expected


def test_smallest_valid_sizes_are_accepted() -> None:
    spec = PipelineSpec(max_length=2, max_batch_size=1, embedding_size=1)

    assert (spec.max_length, spec.max_batch_size, spec.embedding_size) == (2, 1, 1)


def test_config_error_is_a_tritonhf_error_and_a_value_error() -> None:
    assert issubclass(ConfigError, TritonHFError)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("dtype", "wire", "numpy_name", "config_name"),
    [
        (DataType.BYTES, "BYTES", "object", "TYPE_STRING"),
        (DataType.INT32, "INT32", "int32", "TYPE_INT32"),
        (DataType.INT64, "INT64", "int64", "TYPE_INT64"),
        (DataType.FP32, "FP32", "float32", "TYPE_FP32"),
        (DataType.FP16, "FP16", "float16", "TYPE_FP16"),
    ],
)
def test_data_types_know_their_config_wire_and_numpy_names(
    dtype: DataType, wire: str, numpy_name: str, config_name: str
) -> None:
    assert dtype.value == config_name
    assert dtype.wire_name == wire
    assert dtype.numpy_name == numpy_name


def test_every_data_type_has_a_numpy_name() -> None:
    import numpy as np

    for dtype in DataType:
        assert np.dtype(dtype.numpy_name).name == dtype.numpy_name


def test_wire_names_are_what_tritonclient_expects_for_the_numpy_dtype() -> None:
    import numpy as np
    from tritonclient.utils import np_to_triton_dtype

    for dtype in DataType:
        assert np_to_triton_dtype(np.dtype(dtype.numpy_name)) == dtype.wire_name


@pytest.mark.parametrize("dims", [(1,), (-1,), (-1, 384), (3, 5, 7)])
def test_tensor_spec_accepts_positive_and_variable_dims(dims: tuple[int, ...]) -> None:
    assert TensorSpec("T", DataType.FP32, dims).dims == dims


@pytest.mark.parametrize("dims", [(0,), (-2,), (4, 0), (-1, -3), ()])
def test_tensor_spec_rejects_zero_below_minus_one_and_empty_dims(dims: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="'T' has dims") as info:
        TensorSpec("T", DataType.FP32, dims)

    assert str(dims) in str(info.value)


def test_specs_are_immutable_values() -> None:
    spec = PipelineSpec()

    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    assert spec == PipelineSpec()
    assert hash(spec) == hash(PipelineSpec())


def test_a_classifier_exposes_label_score_probabilities_and_token_counts() -> None:
    spec = PipelineSpec(task=Task.CLASSIFICATION, labels=("negative", "neutral", "positive"))

    outputs = {t.name: (t.dtype, t.dims) for t in spec.ensemble_outputs}
    assert outputs == {
        "LABEL": (DataType.BYTES, (1,)),
        "SCORE": (DataType.FP32, (1,)),
        "PROBABILITIES": (DataType.FP32, (3,)),
        "NUM_TOKENS": (DataType.INT32, (1,)),
        "TRUNCATED": (DataType.BOOL, (1,)),
    }


@pytest.mark.parametrize(
    ("task", "labels", "fragment"),
    [
        (Task.CLASSIFICATION, (), "at least 2 labels"),
        (Task.CLASSIFICATION, ("only",), "at least 2 labels"),
        (Task.CLASSIFICATION, ("a", "a"), "distinct"),
        (Task.CLASSIFICATION, ("nul\x00x", "b"), "NUL"),
        (Task.CLASSIFICATION, ("", "b"), "may not be empty"),
        (Task.EMBEDDING, ("a", "b"), "no labels"),
    ],
)
def test_labels_must_fit_the_task(task: Task, labels: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        PipelineSpec(task=task, labels=labels)


@pytest.mark.parametrize(
    ("labels", "groups"),
    [
        (("Positive", "positive", "negative"), [("Positive", "positive")]),
        (("cafe\u0301", "caf\u00e9", "tea"), [("cafe\u0301", "caf\u00e9")]),
        (("yes", "yes ", "no", "NO"), [("yes", "yes "), ("no", "NO")]),
        (("\uff4f\uff4b", "ok", "bad"), [("\uff4f\uff4b", "ok")]),  # fullwidth "ok"
        (("LABEL_0", "LABEL_1"), []),
        ((), []),
    ],
)
def test_labels_a_reader_cannot_tell_apart_are_grouped(
    labels: tuple[str, ...], groups: list[tuple[str, ...]]
) -> None:
    assert look_alike_labels(labels) == groups
