from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonhf.errors import ConfigError
from tritonhf.repository.configs import (
    ONNXRUNTIME_PLATFORM,
    PYTHON_BACKEND,
    BatchingPolicy,
    StepTuning,
    ensemble_config,
    model_config,
    parse_pbtxt,
    to_pbtxt,
    tokenizer_config,
)
from tritonhf.spec import Layout, PipelineSpec, Precision, Runtime, Task

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("TRITONHF_UPDATE_GOLDEN") == "1"
RUNTIMES = tuple(Runtime)
PAD_TOKEN_ID = 0


def assert_matches_golden(name: str, text: str) -> None:
    """Compare with tests/unit/golden/<name>; TRITONHF_UPDATE_GOLDEN=1 rewrites it first."""
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing; create it with TRITONHF_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"{path} differs from the generated config; review the change, then rerun with "
        "TRITONHF_UPDATE_GOLDEN=1 to accept it"
    )


def configs(runtime: Runtime) -> dict[str, Any]:
    spec = PipelineSpec(runtime=runtime)
    return {
        "tokenizer": tokenizer_config(spec, pad_token_id=PAD_TOKEN_ID),
        "model": model_config(spec),
        "ensemble": ensemble_config(spec),
    }


def parameters(config: Any) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.value)
@pytest.mark.parametrize("step", ["tokenizer", "model", "ensemble"])
def test_config_pbtxt_matches_the_reviewed_golden_file(runtime: Runtime, step: str) -> None:
    config = configs(runtime)[step]

    assert_matches_golden(f"{runtime.value}/{step}.pbtxt", to_pbtxt(config))


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.value)
@pytest.mark.parametrize("step", ["tokenizer", "model", "ensemble"])
def test_golden_file_parses_back_to_the_same_protobuf(runtime: Runtime, step: str) -> None:
    text = (GOLDEN / runtime.value / f"{step}.pbtxt").read_text(encoding="utf-8")

    parsed = parse_pbtxt(text)

    assert isinstance(parsed, pb.ModelConfig)
    assert parsed == configs(runtime)[step]


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.value)
def test_to_pbtxt_and_parse_pbtxt_round_trip(runtime: Runtime) -> None:
    for config in configs(runtime).values():
        assert parse_pbtxt(to_pbtxt(config)) == config


def test_parse_pbtxt_rejects_a_field_triton_does_not_know() -> None:
    text = 'name: "minilm"\nmax_batch_size: 8\nmax_batch: 8\n'

    with pytest.raises(text_format.ParseError, match="max_batch"):
        parse_pbtxt(text)


def test_parse_pbtxt_rejects_an_unknown_enum_value() -> None:
    with pytest.raises(text_format.ParseError, match="TYPE_STRINGS"):
        parse_pbtxt('input { name: "TEXT" data_type: TYPE_STRINGS dims: 1 }')


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.value)
def test_all_three_configs_share_the_spec_max_batch_size(runtime: Runtime) -> None:
    spec = PipelineSpec(runtime=runtime, max_batch_size=12)
    built = [
        tokenizer_config(spec, pad_token_id=0),
        model_config(spec),
        ensemble_config(spec),
    ]

    assert [c.max_batch_size for c in built] == [12, 12, 12]


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.value)
def test_ensemble_wires_text_through_tokenizer_then_model(runtime: Runtime) -> None:
    spec = PipelineSpec(runtime=runtime)
    config = ensemble_config(spec)

    assert config.platform == "ensemble"
    assert not config.backend
    tokenize, infer = config.ensemble_scheduling.step
    assert (tokenize.model_name, tokenize.model_version) == ("minilm_tokenizer", -1)
    assert dict(tokenize.input_map) == {"TEXT": "TEXT"}
    assert dict(tokenize.output_map) == {
        "input_ids": "input_ids",
        "attention_mask": "attention_mask",
        "NUM_TOKENS": "NUM_TOKENS",
        "TRUNCATED": "TRUNCATED",
    }
    assert (infer.model_name, infer.model_version) == ("minilm_model", -1)
    assert dict(infer.input_map) == {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    assert dict(infer.output_map) == {"EMBEDDING": "EMBEDDING"}


def test_every_ensemble_tensor_is_produced_by_a_step_and_consumed_or_returned() -> None:
    config = ensemble_config(PipelineSpec())
    produced = {"TEXT"}  # the ensemble input
    for step in config.ensemble_scheduling.step:
        assert set(step.input_map.values()) <= produced, step.model_name
        produced |= set(step.output_map.values())

    assert {o.name for o in config.output} <= produced


def test_ensemble_step_maps_use_the_step_models_own_tensor_names() -> None:
    spec = PipelineSpec()
    tokenizer, model = tokenizer_config(spec, pad_token_id=0), model_config(spec)
    tokenize, infer = ensemble_config(spec).ensemble_scheduling.step

    assert set(tokenize.input_map) == {i.name for i in tokenizer.input}
    assert set(tokenize.output_map) == {o.name for o in tokenizer.output}
    assert set(infer.input_map) == {i.name for i in model.input}
    assert set(infer.output_map) == {o.name for o in model.output}


def test_ensemble_and_steps_agree_on_types_and_dims_of_shared_tensors() -> None:
    spec = PipelineSpec()
    tensors: dict[str, tuple[int, list[int]]] = {}
    for config in (tokenizer_config(spec, pad_token_id=0), model_config(spec)):
        for entry in (*config.input, *config.output):
            seen = tensors.setdefault(entry.name, (entry.data_type, list(entry.dims)))
            assert seen == (entry.data_type, list(entry.dims)), entry.name
    ensemble = ensemble_config(spec)

    for entry in (*ensemble.input, *ensemble.output):
        assert tensors[entry.name] == (entry.data_type, list(entry.dims)), entry.name


def test_python_onnx_model_step_is_a_python_backend_with_ragged_inputs() -> None:
    config = model_config(PipelineSpec(runtime=Runtime.PYTHON_ONNX))

    assert config.backend == PYTHON_BACKEND == "python"
    assert not config.platform
    assert [(i.name, i.allow_ragged_batch) for i in config.input] == [
        ("input_ids", True),
        ("attention_mask", True),
    ]
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (pb.ModelInstanceGroup.KIND_CPU, 2)
    ]
    assert parameters(config) == {
        "intra_op_threads": "1",
        "intra_op_spinning": "0",
        "widen_when_idle": "1",
        "length_group_slack": "1.5",
        "run_token_budget": "512",
        "pipeline": "minilm",
        "normalized": "1",
        "max_length": "256",
    }
    assert parameters(model_config(PipelineSpec(), vocab_size=30522))["vocab_size"] == "30522"
    unnormalized = model_config(PipelineSpec(runtime=Runtime.PYTHON_ONNX, normalized=False))
    assert parameters(unnormalized)["normalized"] == "0"


def test_onnxruntime_model_step_uses_the_native_platform_without_ragged_inputs() -> None:
    config = model_config(PipelineSpec(runtime=Runtime.ONNXRUNTIME))

    assert config.platform == ONNXRUNTIME_PLATFORM == "onnxruntime_onnx"
    assert not config.backend
    assert [i.allow_ragged_batch for i in config.input] == [False, False]
    # No instance_group: Triton then places one instance per GPU (or one on the CPU).
    assert len(config.instance_group) == 0
    assert parameters(config) == {}


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.value)
def test_model_step_outputs_an_fp32_embedding_of_embedding_size(runtime: Runtime) -> None:
    config = model_config(PipelineSpec(runtime=runtime, embedding_size=1024))

    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("EMBEDDING", pb.TYPE_FP32, [1024])
    ]
    assert config.HasField("dynamic_batching")


@pytest.mark.parametrize(
    ("runtime", "multiple"),
    [
        (Runtime.ONNXRUNTIME, "16"),
        (Runtime.TENSORRT, "16"),
        (Runtime.PYTHON_ONNX, "1"),
        (Runtime.PYTHON_TORCH, "1"),
    ],
    ids=lambda r: r.value if isinstance(r, Runtime) else r,
)
def test_tokenizer_config_buckets_lengths_only_for_native_backends(
    runtime: Runtime, multiple: str
) -> None:
    config = tokenizer_config(PipelineSpec(runtime=runtime, max_length=128), pad_token_id=1)

    assert parameters(config) == {
        "max_length": "128",
        "pad_token_id": "1",
        "pad_to_multiple_of": multiple,
        "max_text_bytes": "1048576",
        "pipeline": "minilm",
    }


def test_tokenizer_step_is_a_batched_python_backend_on_cpu() -> None:
    config = tokenizer_config(PipelineSpec(), pad_token_id=0)

    assert config.name == "minilm_tokenizer"
    assert config.backend == "python"
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("TEXT", pb.TYPE_STRING, [1])
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("input_ids", pb.TYPE_INT64, [-1]),
        ("attention_mask", pb.TYPE_INT64, [-1]),
        ("NUM_TOKENS", pb.TYPE_INT32, [1]),
        ("TRUNCATED", pb.TYPE_BOOL, [1]),
    ]
    # Two: Triton 2.51's batcher stalls a lone instance with a queue policy for 500 ms
    # (benchmarks/batcher_stall.py).
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (pb.ModelInstanceGroup.KIND_CPU, 2)
    ]
    assert config.HasField("dynamic_batching")


def test_tuning_changes_instances_threads_and_queue_delay_but_not_the_contract() -> None:
    spec = PipelineSpec()
    tuning = StepTuning(
        tokenizer_instances=3,
        model_instances=2,
        intra_op_threads=4,
        batching=BatchingPolicy(max_queue_delay_us=500),
    )

    tokenizer = tokenizer_config(spec, pad_token_id=0, tuning=tuning)
    model = model_config(spec, tuning=tuning)

    assert tokenizer.instance_group[0].count == 3
    assert model.instance_group[0].count == 2
    assert parameters(model)["intra_op_threads"] == "4"
    assert tokenizer.dynamic_batching.max_queue_delay_microseconds == 500
    assert model.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(tokenizer.output) == list(tokenizer_config(spec, pad_token_id=0).output)
    assert list(model.input) == list(model_config(spec).input)


def test_configs_are_named_after_the_spec() -> None:
    spec = PipelineSpec(name="bge")

    assert tokenizer_config(spec, pad_token_id=0).name == "bge_tokenizer"
    assert model_config(spec).name == "bge_model"
    assert ensemble_config(spec).name == "bge"
    assert [s.model_name for s in ensemble_config(spec).ensemble_scheduling.step] == [
        "bge_tokenizer",
        "bge_model",
    ]


def test_a_classifier_ensemble_publishes_its_labels_in_column_order() -> None:
    import json

    spec = PipelineSpec(task=Task.CLASSIFICATION, labels=("neg", "pos"))

    config = ensemble_config(spec)

    assert json.loads(config.parameters["labels"].string_value) == ["neg", "pos"]
    assert [o.name for o in config.output] == [
        "LABEL",
        "SCORE",
        "PROBABILITIES",
        "NUM_TOKENS",
        "TRUNCATED",
    ]
    assert "labels" not in ensemble_config(PipelineSpec()).parameters


def test_tensorrt_model_step_is_a_plan_with_dense_token_inputs() -> None:
    config = model_config(PipelineSpec(runtime=Runtime.TENSORRT, max_batch_size=32))

    assert config.platform == "tensorrt_plan"
    assert not config.backend
    assert [i.name for i in config.input] == ["input_ids", "attention_mask"]
    assert not any(i.allow_ragged_batch for i in config.input)
    assert len(config.instance_group) == 0  # Triton: one instance per GPU
    assert config.max_batch_size == 32


def test_python_torch_step_goes_on_the_gpu_only_when_asked() -> None:
    spec = PipelineSpec(runtime=Runtime.PYTHON_TORCH)
    on_cpu = model_config(spec)
    on_gpu = model_config(spec, tuning=StepTuning(model_on_gpu=True))
    python_onnx = model_config(PipelineSpec(), tuning=StepTuning(model_on_gpu=True))

    assert on_cpu.backend == on_gpu.backend == "python"
    assert on_cpu.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert on_gpu.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert python_onnx.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert all(i.allow_ragged_batch for i in on_gpu.input)


@pytest.mark.parametrize("precision", list(Precision), ids=lambda p: p.value)
def test_the_ensemble_declares_its_precision(precision: Precision) -> None:
    config = ensemble_config(PipelineSpec(precision=precision))

    assert parameters(config)["precision"] == precision.value


@pytest.mark.parametrize("runtime", [Runtime.PYTHON_ONNX, Runtime.PYTHON_TORCH], ids=str)
def test_merged_ensemble_is_one_step_with_the_same_contract(runtime: Runtime) -> None:
    split = PipelineSpec(runtime=runtime)
    spec = PipelineSpec(runtime=runtime, layout=Layout.MERGED)
    ensemble, model = ensemble_config(spec), model_config(spec, pad_token_id=3)

    (only,) = ensemble.ensemble_scheduling.step
    assert only.model_name == "minilm_model"
    assert dict(only.input_map) == {"TEXT": "TEXT"}
    assert set(only.output_map) == {o.name for o in model.output}
    assert list(ensemble.input) == list(ensemble_config(split).input)
    assert list(ensemble.output) == list(ensemble_config(split).output)
    # The model step takes the ensemble's text and returns its outputs, so they agree.
    assert list(model.input) == list(ensemble.input)
    assert list(model.output) == list(ensemble.output)
    assert parameters(model) == {
        **parameters(model_config(split)),
        **parameters(tokenizer_config(split, pad_token_id=3)),
        "runtime": runtime.value,
    }


@pytest.mark.parametrize("runtime", [Runtime.ONNXRUNTIME, Runtime.TENSORRT], ids=str)
def test_merged_layout_is_refused_for_native_backends(runtime: Runtime) -> None:
    with pytest.raises(ConfigError, match="merged layout needs a Python-backend runtime"):
        PipelineSpec(runtime=runtime, layout=Layout.MERGED)


@pytest.mark.parametrize("field", ["max_queue_size", "queue_timeout_ms"])
def test_a_negative_queue_setting_names_the_export_flag(field: str) -> None:
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ConfigError, match=f"^{flag} must be >= 0"):
        BatchingPolicy(**{field: -1})
