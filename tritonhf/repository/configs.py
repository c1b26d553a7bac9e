"""Build each step's ``config.pbtxt`` from the `PipelineSpec` as Triton ModelConfig protobufs.

Configs are protobuf objects (Triton's own schema, shipped by tritonclient), written with
``text_format``: a field name or type that Triton would reject fails here, not at load time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tritonhf.errors import ConfigError
from tritonhf.spec import CORRECTED_LABEL, Layout, PipelineSpec, Runtime, TensorSpec

PYTHON_BACKEND = "python"
ONNXRUNTIME_PLATFORM = "onnxruntime_onnx"
TENSORRT_PLATFORM = "tensorrt_plan"
NATIVE_RUNTIMES = frozenset({Runtime.ONNXRUNTIME, Runtime.TENSORRT})
"""Runtimes served by Triton's own backends, which batch only equal shapes."""


@dataclass(frozen=True)
class BatchingPolicy:
    """Dynamic batching and admission settings shared by the steps that batch.

    Past ``max_queue_size`` waiting requests, or after waiting ``queue_timeout_ms`` in the
    queue, a step rejects a request at once ("overloaded") instead of letting latency grow
    without bound.
    """

    max_queue_delay_us: int = 0
    max_queue_size: int = 256
    queue_timeout_ms: int = 5_000

    def __post_init__(self) -> None:
        for name in ("max_queue_delay_us", "max_queue_size", "queue_timeout_ms"):
            if getattr(self, name) < 0:
                flag = "--" + name.replace("_", "-")  # the export flag, where there is one
                raise ConfigError(f"{flag} must be >= 0 (0 disables it), got {getattr(self, name)}")


@dataclass(frozen=True)
class StepTuning:
    """Knobs that do not change the contract, only how the steps run."""

    tokenizer_instances: int = 2
    """Two, not one: Triton 2.51's batcher left ~1 % of the requests to a lone instance with a
    queue policy waiting 500 ms (docs/benchmarks.md, step 17); the pipeline's throughput was
    the same either way."""
    # Measured (docs/benchmarks.md): two single-threaded model instances overlap batches
    # and beat one two-threaded instance at every concurrency on 2 cores.
    model_instances: int = 2
    intra_op_threads: int = 1
    intra_op_spinning: bool = False
    """Measured: idle ORT threads spinning steal the 2 cores from the tokenizer and Triton."""
    widen_when_idle: bool = True
    """Measured: a batch runs on every core while the other model instances are idle (one
    request at a time: ~1.6x faster), on ``intra_op_threads`` while they are busy."""
    run_token_budget: int = 512
    """Measured: ~200-token texts run 2 per ONNX Runtime call, not all together, +10-15 % at
    c8 (one thread per call: larger calls fall out of cache); short texts are unaffected."""
    length_group_slack: float = 1.5
    """The model step splits a batch by length where padding would exceed 1.5x its tokens."""
    max_text_bytes: int = 1 << 20
    model_on_gpu: bool = False
    """Place a Python-backend model step on the GPU (``KIND_GPU``): the python-torch runtime
    with CUDA. Native backends need no instance group: Triton puts them on every GPU."""
    batching: BatchingPolicy = field(default_factory=BatchingPolicy)

    def __post_init__(self) -> None:
        for name in ("tokenizer_instances", "model_instances", "intra_op_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_text_bytes < 1:
            raise ConfigError(
                f"--max-text-bytes must be >= 1 (every text longer is refused), "
                f"got {self.max_text_bytes}"
            )


DEFAULT_TUNING = StepTuning()


def _pb() -> Any:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def _add_tensors(repeated: Any, tensors: tuple[TensorSpec, ...], *, ragged: bool = False) -> None:
    pb = _pb()
    for tensor in tensors:
        entry = repeated.add()
        entry.name = tensor.name
        entry.data_type = pb.DataType.Value(tensor.dtype.value)
        entry.dims.extend(tensor.dims)
        if ragged:
            entry.allow_ragged_batch = True


def _set_parameters(config: Any, parameters: dict[str, str]) -> None:
    for key, value in parameters.items():
        config.parameters[key].string_value = value


def _dynamic_batching(config: Any, policy: BatchingPolicy) -> None:
    batching = config.dynamic_batching
    batching.max_queue_delay_microseconds = policy.max_queue_delay_us
    queue = batching.default_queue_policy
    queue.max_queue_size = policy.max_queue_size
    if policy.queue_timeout_ms:
        queue.timeout_action = _pb().ModelQueuePolicy.REJECT
        queue.default_timeout_microseconds = policy.queue_timeout_ms * 1000
        queue.allow_timeout_override = True


def _instances(config: Any, count: int, *, gpu: bool = False) -> None:
    group = config.instance_group.add()
    kinds = _pb().ModelInstanceGroup
    group.kind = kinds.KIND_GPU if gpu else kinds.KIND_CPU
    group.count = count


def tokenizer_config(
    spec: PipelineSpec, *, pad_token_id: int, tuning: StepTuning = DEFAULT_TUNING
) -> Any:
    """The tokenizer step: Python backend, TEXT in, token tensors + NUM_TOKENS out."""
    config = _pb().ModelConfig(name=spec.tokenizer_name, backend=PYTHON_BACKEND)
    config.max_batch_size = spec.max_batch_size
    _add_tensors(config.input, spec.ensemble_inputs)
    _add_tensors(config.output, spec.tokenizer_outputs)
    _dynamic_batching(config, tuning.batching)
    _instances(config, tuning.tokenizer_instances)
    _set_parameters(config, _tokenizer_parameters(spec, pad_token_id, tuning))
    return config


def _tokenizer_parameters(
    spec: PipelineSpec, pad_token_id: int, tuning: StepTuning
) -> dict[str, str]:
    """What the tokenizing step reads (`TokenizerSettings`): the tokenizer or a merged model."""
    # The native onnxruntime backend batches only equal shapes; bucketing lengths to a
    # multiple of 16 lets requests of similar length share a batch. The Python model steps
    # take ragged batches and pad themselves, so they get exact lengths.
    multiple = 16 if spec.runtime in NATIVE_RUNTIMES else 1
    return {
        "max_length": str(spec.max_length),
        "pad_token_id": str(pad_token_id),
        "pad_to_multiple_of": str(multiple),
        "max_text_bytes": str(tuning.max_text_bytes),
        "pipeline": spec.name,
    }


def model_config(
    spec: PipelineSpec,
    *,
    tuning: StepTuning = DEFAULT_TUNING,
    pad_token_id: int = 0,
    vocab_size: int = 0,
) -> Any:
    """The model step, for the runtime chosen in the spec (merged: it tokenizes as well).

    The Python steps refuse token tensors longer than ``max_length`` or with ids past
    ``vocab_size`` (0: the step reads it from the model, or does not check).
    """
    config = _pb().ModelConfig(name=spec.model_name)
    config.max_batch_size = spec.max_batch_size
    if spec.runtime is Runtime.ONNXRUNTIME:
        config.platform = ONNXRUNTIME_PLATFORM
        _add_tensors(config.input, spec.token_tensors)
        # No instance_group: Triton puts one instance on each GPU, or on the CPU without one.
    elif spec.runtime is Runtime.TENSORRT:
        config.platform = TENSORRT_PLATFORM
        _add_tensors(config.input, spec.token_tensors)
    else:
        config.backend = PYTHON_BACKEND
        merged = spec.layout is Layout.MERGED
        _add_tensors(config.input, spec.model_step_inputs, ragged=not merged)
        on_gpu = tuning.model_on_gpu and spec.runtime is Runtime.PYTHON_TORCH
        _instances(config, tuning.model_instances, gpu=on_gpu)
        if merged:  # `backends.merged` reads the tokenizer's settings and its runtime
            _set_parameters(config, _tokenizer_parameters(spec, pad_token_id, tuning))
            _set_parameters(config, {"runtime": spec.runtime.value})
        _set_parameters(
            config,
            {
                "intra_op_threads": str(tuning.intra_op_threads),
                "intra_op_spinning": "1" if tuning.intra_op_spinning else "0",
                "widen_when_idle": "1" if tuning.widen_when_idle else "0",
                "length_group_slack": str(tuning.length_group_slack),
                "run_token_budget": str(tuning.run_token_budget),
                "pipeline": spec.name,
                "normalized": "1" if spec.normalized else "0",
                "max_length": str(spec.max_length),
            },
        )
        if vocab_size > 0:
            _set_parameters(config, {"vocab_size": str(vocab_size)})
        if spec.precision.runs_texts_alone:
            _set_parameters(config, {"rows_alone": "1"})
    _add_tensors(config.output, spec.model_step_outputs)
    _dynamic_batching(config, tuning.batching)
    return config


def ensemble_config(spec: PipelineSpec) -> Any:
    """The ensemble clients call: TEXT -> tokenizer -> model -> EMBEDDING, NUM_TOKENS, ...

    Merged layout: one step, the model step that tokenizes; the contract is the same.
    """
    config = _pb().ModelConfig(name=spec.name, platform="ensemble")
    config.max_batch_size = spec.max_batch_size
    _add_tensors(config.input, spec.ensemble_inputs)
    _add_tensors(config.output, spec.ensemble_outputs)
    steps = config.ensemble_scheduling.step
    if spec.layout is Layout.MERGED:
        only = steps.add(model_name=spec.model_name, model_version=-1)
        only.input_map["TEXT"] = "TEXT"
        for tensor in spec.ensemble_outputs:
            only.output_map[tensor.name] = tensor.name
    else:
        _split_steps(steps, spec)
    # The precision tells `tritonhf validate` which acceptance thresholds apply.
    _set_parameters(config, {"precision": spec.precision.value})
    if spec.labels:
        # Column order of PROBABILITIES, for clients (`TritonHFClient.classify`).
        _set_parameters(config, {"labels": json.dumps(list(spec.labels))})
    return config


def _split_steps(steps: Any, spec: PipelineSpec) -> None:
    tokenize = steps.add(model_name=spec.tokenizer_name, model_version=-1)
    tokenize.input_map["TEXT"] = "TEXT"
    for tensor in spec.tokenizer_outputs:
        tokenize.output_map[tensor.name] = tensor.name
    infer = steps.add(model_name=spec.model_name, model_version=-1)
    for tensor in spec.token_tensors:
        infer.input_map[tensor.name] = tensor.name
    for tensor in spec.model_outputs:
        infer.output_map[tensor.name] = tensor.name


def feedback_config(spec: PipelineSpec) -> Any:
    """The feedback model: REQUEST_ID, POSITIVE, optional CORRECTED_LABEL -> ACCEPTED.

    Unbatched (feedback is rare); the labels let it reject a correction naming no class.
    """
    config = _pb().ModelConfig(name=spec.feedback_name, backend=PYTHON_BACKEND)
    config.max_batch_size = 0
    _add_tensors(config.input, spec.feedback_inputs)
    for entry in config.input:
        entry.optional = entry.name == CORRECTED_LABEL
    _add_tensors(config.output, spec.feedback_outputs)
    _instances(config, 1)
    _set_parameters(config, {"pipeline": spec.name, "labels": json.dumps(list(spec.labels))})
    return config


RUN_TUNING_PARAMETERS = (
    "intra_op_threads",
    "intra_op_spinning",
    "widen_when_idle",
    "length_group_slack",
    "run_token_budget",
)
"""Model-step parameters from `StepTuning` that no export flag sets: how a step runs, not what
it computes."""


def with_run_tuning_of(config: Any, served: Any) -> Any:
    """A copy of ``config`` with what no export flag sets taken from ``served``.

    That is how the steps run, not what they compute: instance groups, `RUN_TUNING_PARAMETERS`,
    the batcher's delay and preferred sizes, and parameters tritonhf does not write (a team's
    own). A later version joins the config that serves with them, so neither a hand tuning
    nor a release that changes those defaults refuses it.
    """
    merged = _pb().ModelConfig()
    merged.CopyFrom(config)
    merged.ClearField("instance_group")
    merged.instance_group.extend(served.instance_group)
    for key in RUN_TUNING_PARAMETERS:
        if key in served.parameters:
            merged.parameters[key].CopyFrom(served.parameters[key])
        elif key in merged.parameters:
            del merged.parameters[key]
    for key in set(served.parameters) - set(config.parameters) - set(RUN_TUNING_PARAMETERS):
        merged.parameters[key].CopyFrom(served.parameters[key])
    if merged.HasField("dynamic_batching") and served.HasField("dynamic_batching"):
        batching, served_batching = merged.dynamic_batching, served.dynamic_batching
        batching.max_queue_delay_microseconds = served_batching.max_queue_delay_microseconds
        batching.ClearField("preferred_batch_size")
        batching.preferred_batch_size.extend(served_batching.preferred_batch_size)
    return merged


def to_pbtxt(config: Any) -> str:
    """Serialise a ModelConfig the way Triton reads it."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(config))


def parse_pbtxt(text: str) -> Any:
    """Parse ``config.pbtxt`` text into a ModelConfig (raises on unknown fields)."""
    from google.protobuf import text_format

    return text_format.Parse(text, _pb().ModelConfig())
