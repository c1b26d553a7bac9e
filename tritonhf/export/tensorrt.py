"""Build a TensorRT plan from the exported ONNX graph (``--runtime tensorrt``).

A plan is specific to the GPU model and the TensorRT version that built it: the version is
recorded in the repository manifest and in the model step's config, and `tritonhf serve`
refuses a plan built with another TensorRT than the server's (see
`tritonhf.repository.compat`). Shapes are dynamic within one optimisation profile taken from
the export options: batch 1..max_batch_size and sequence 1..max_length, tuned for ``opt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonhf.errors import ConfigError, ExportError
from tritonhf.spec import PipelineSpec

DEFAULT_OPT_BATCH = 8
DEFAULT_OPT_LENGTH = 128
WORKSPACE_BYTES = 2 << 30


@dataclass(frozen=True)
class ShapeRange:
    """min/opt/max of one dynamic dimension."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ConfigError(
                f"a TensorRT profile needs 1 <= min <= opt <= max, got "
                f"min={self.min} opt={self.opt} max={self.max}"
            )


@dataclass(frozen=True)
class OptimizationProfile:
    """The one profile every token input gets: shape ``(batch, sequence)``."""

    batch: ShapeRange
    sequence: ShapeRange

    @classmethod
    def for_spec(
        cls,
        spec: PipelineSpec,
        *,
        opt_batch: int = DEFAULT_OPT_BATCH,
        opt_length: int = DEFAULT_OPT_LENGTH,
    ) -> OptimizationProfile:
        """Batch 1..max_batch_size and length 1..max_length, ``opt`` clipped into range."""
        return cls(
            batch=ShapeRange(1, min(opt_batch, spec.max_batch_size), spec.max_batch_size),
            sequence=ShapeRange(1, min(opt_length, spec.max_length), spec.max_length),
        )

    def shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """``(min, opt, max)`` shapes of one ``(batch, sequence)`` input."""
        return (
            (self.batch.min, self.sequence.min),
            (self.batch.opt, self.sequence.opt),
            (self.batch.max, self.sequence.max),
        )

    def as_dict(self) -> dict[str, list[int]]:
        """JSON-ready form for the manifest."""
        low, opt, high = self.shapes()
        return {"min": list(low), "opt": list(opt), "max": list(high)}


@dataclass(frozen=True)
class PlanInfo:
    """What was built."""

    path: Path
    tensorrt_version: str
    fp16: bool
    profile: OptimizationProfile


def tensorrt_module() -> Any:
    """The ``tensorrt`` package and a usable CUDA GPU, or a clear `ExportError`."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ExportError(
            "--runtime tensorrt needs the `tensorrt` Python package (pip install "
            "tensorrt-cu12, matching the server's TensorRT: 10.5 for Triton 24.10) and a CUDA "
            "GPU; on this machine use --runtime python-onnx or onnxruntime"
        ) from exc
    try:
        import torch

        has_gpu = bool(torch.cuda.is_available())
    except ImportError:
        has_gpu = True  # let TensorRT itself find the GPU, or fail below
    if not has_gpu:
        raise ExportError(
            f"--runtime tensorrt found TensorRT {tensorrt.__version__} but no CUDA GPU: a plan "
            "is built on (and for) the GPU that serves it"
        )
    return tensorrt


def build_plan(
    onnx_path: Path,
    plan_path: Path,
    *,
    profile: OptimizationProfile,
    input_names: tuple[str, ...],
    fp16: bool,
    workspace_bytes: int = WORKSPACE_BYTES,
) -> PlanInfo:
    """Parse ``onnx_path`` and serialise an engine with ``profile`` to ``plan_path``."""
    trt = tensorrt_module()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    trt_profile = builder.create_optimization_profile()
    low, opt, high = profile.shapes()
    for name in input_names:
        trt_profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(trt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see its log)")
    plan_path.write_bytes(bytes(serialized))
    return PlanInfo(
        path=plan_path, tensorrt_version=str(trt.__version__), fp16=fp16, profile=profile
    )
