"""Turn the validated fp32 graph into the requested variant, through the acceptance gate.

The plain fp32 export is checked element-wise (``--atol``) by `tritonhf.export.validate`.
A fused, fp16 or int8 graph is then compared with PyTorch on the whole bundled corpus with
the acceptance gate's thresholds for its precision, and refused with the measured table if
it falls short, so what reaches the repository always passed the gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonhf.errors import ConfigError
from tritonhf.export.optimize import convert_fp16, fuse_transformer, quantize_int8
from tritonhf.gate.agreement import GateReport, Thresholds, classifier_gate, embedding_gate
from tritonhf.gate.reference import BATCH_SIZE, onnx_outputs, torch_outputs
from tritonhf.spec import Precision, Runtime, Task


@dataclass(frozen=True)
class VariantRequest:
    """What the user asked for, and what the gate compares with."""

    precision: Precision
    optimize: bool
    runtime: Runtime
    task: Task = Task.EMBEDDING
    thresholds: Thresholds | None = None
    """None: the defaults for ``precision``."""


@dataclass(frozen=True)
class Variant:
    """The graph to serve and what was done to it (for the manifest)."""

    path: Path
    gate: GateReport | None
    manifest: dict[str, Any] = field(default_factory=dict)


def check_request(request: VariantRequest) -> None:
    """Refuse combinations no runtime can serve (bad options: `ConfigError`), before any work."""
    if request.runtime is Runtime.TENSORRT:
        if request.task is Task.CLASSIFICATION:
            raise ConfigError(
                "the tensorrt runtime serves embedding models; a TensorRT engine cannot output "
                "the LABEL strings of a classifier: use --runtime onnxruntime (GPU) instead"
            )
        if request.optimize:
            raise ConfigError(
                "--optimize writes ONNX Runtime contrib ops that TensorRT cannot parse; "
                "TensorRT fuses the graph itself: drop --optimize"
            )
        if request.precision is Precision.INT8:
            raise ConfigError(
                "TensorRT int8 needs calibration data, which tritonhf does not do; "
                "use --precision fp16 with --runtime tensorrt"
            )
    if request.runtime is Runtime.PYTHON_TORCH:
        if request.optimize:
            raise ConfigError("--optimize applies to ONNX graphs, not the python-torch runtime")
        if request.precision is Precision.INT8:
            raise ConfigError(
                "the python-torch runtime serves fp32 or fp16 (on CUDA); for int8 use an "
                "ONNX runtime (python-onnx or onnxruntime)"
            )


def build_variant(
    *,
    graph: Path,
    work: Path,
    request: VariantRequest,
    encoder: Any,
    tokenizer: Any,
    texts: list[str],
    max_length: int,
    output: str,
    labels: tuple[str, ...],
    model_config: Any,
    progress: Callable[[str], None] = lambda _: None,
) -> Variant:
    """The graph to ship for ``request``, starting from the validated fp32 ``graph``."""
    check_request(request)
    plain = request.precision is Precision.FP32 and not request.optimize
    if plain or request.runtime in (Runtime.TENSORRT, Runtime.PYTHON_TORCH):
        # TensorRT builds its own engine (fp16 there is a builder flag) and the torch
        # runtime runs PyTorch itself: both start from the plain graph.
        return Variant(path=graph, gate=None, manifest={"precision": request.precision.value})
    thresholds = request.thresholds or Thresholds.for_precision(request.precision)
    progress(f"computing PyTorch reference outputs for the gate ({len(texts)} texts)")
    reference = torch_outputs(encoder, tokenizer, texts, max_length=max_length)

    def gate(candidate: Path) -> GateReport:
        values, served_labels = onnx_outputs(
            candidate,
            tokenizer,
            texts,
            max_length=max_length,
            output=output,
            with_labels=bool(labels),
            batch_size=1 if request.precision.runs_texts_alone else BATCH_SIZE,  # as served
        )
        subject = f"{request.precision.value} graph vs PyTorch"
        if labels:
            return classifier_gate(
                values,
                reference,
                thresholds=thresholds,
                precision=request.precision,
                subject=subject,
                candidate_labels=served_labels,
                labels=labels,
            )
        return embedding_gate(
            values,
            reference,
            thresholds=thresholds,
            precision=request.precision,
            subject=subject,
        )

    manifest: dict[str, Any] = {"precision": request.precision.value, "optimized": False}
    current = graph
    if request.optimize:
        fused = work / "model.fused.onnx"
        report = fuse_transformer(
            current,
            fused,
            model_type=str(getattr(model_config, "model_type", "")),
            num_heads=int(model_config.num_attention_heads),
            hidden_size=int(model_config.hidden_size),
        )
        progress(f"graph fusion: {report.summary()}")
        manifest.update(optimized=True, fused=report.fused)
        current = fused
    if request.precision is Precision.INT8:
        quantized = work / "model.int8.onnx"
        result = quantize_int8(
            current,
            quantized,
            gate=gate,
            progress=progress,
        )
        progress(result.summary())
        manifest["int8"] = {
            "quantized": len(result.quantized),
            "kept_fp32": list(result.kept_fp32),
        }
        final, verdict = quantized, result.gate
    else:
        if request.precision is Precision.FP16:
            half = work / "model.fp16.onnx"
            convert_fp16(current, half)
            current = half
        final, verdict = current, gate(current)
    progress(verdict.table())
    verdict.raise_if_failed(
        advice="refused: export with --precision fp32 (the reference), or relax the gate "
        "with the threshold flags (--min-cosine, --min-top5-agreement, ...; see --help)"
    )
    manifest["gate"] = verdict.as_dict()
    return Variant(path=final, gate=verdict, manifest=manifest)
