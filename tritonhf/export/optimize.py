"""Graph variants of an exported ONNX model: fused fp32, fp16, and gated int8.

* Fusion: ONNX Runtime's transformer optimizer rewrites attention, LayerNorm and GELU
  subgraphs into contrib ops (``Attention``, ``SkipLayerNormalization``, ``BiasGelu``, ...)
  that both the ``onnxruntime`` package and Triton's onnxruntime backend run.
* fp16: weights and compute in half precision with fp32 inputs/outputs, for GPUs.
* int8: ONNX Runtime dynamic quantization, int8 weights per output channel. Quantizing every
  MatMul of MiniLM moves some embeddings too far (min cosine ~0.95 on the bundled corpus), so
  :func:`quantize_int8` measures how much each MatMul alone costs and keeps the most sensitive
  ones in fp32 until the acceptance gate passes (mixed precision), or refuses.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tritonhf.errors import ConfigError, ExportError, ValidationError
from tritonhf.gate.agreement import GateReport, shown_figure
from tritonhf.repository.onnx_files import data_file, external_data_files, save_graph

log = logging.getLogger(__name__)

# Architectures whose attention/LayerNorm/GELU patterns ORT's "bert" fusions recognise.
BERT_LIKE = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert", "mpnet", "deberta"}
)
QUANTIZABLE_OPS = ("MatMul", "Attention")
# Keeping more than this share of MatMuls in fp32 leaves too little gain to call it int8.
MAX_FP32_SHARE = 0.5

GateFn = Callable[[Path], GateReport]
"""Runs the acceptance gate on a candidate graph."""


@dataclass(frozen=True)
class FusionReport:
    """Which subgraphs the optimizer fused."""

    fused: dict[str, int]

    @property
    def any(self) -> bool:
        """True when at least one attention or LayerNorm block was fused."""
        return any(self.fused.values())

    def summary(self) -> str:
        """``Attention x6, SkipLayerNormalization x12, ...``."""
        return ", ".join(f"{op} x{n}" for op, n in sorted(self.fused.items()) if n) or "nothing"


@dataclass(frozen=True)
class QuantizationReport:
    """What the int8 variant quantized, what it kept in fp32, and its gate verdict."""

    quantized: tuple[str, ...]
    kept_fp32: tuple[str, ...]
    gate: GateReport
    sensitivity: dict[str, float]
    """Per node: the gate's worst figure with only that node quantized (1.0 = harmless)."""

    def summary(self) -> str:
        """One line for the export log."""
        total = len(self.quantized) + len(self.kept_fp32)
        return (
            f"int8: {len(self.quantized)} of {total} MatMul/Attention nodes quantized, "
            f"{len(self.kept_fp32)} kept fp32 by sensitivity"
        )


def check_fusable(model_type: str) -> None:
    """Refuse ``--optimize`` for a model the graph fusion does not know (`ConfigError`)."""
    if model_type not in BERT_LIKE:
        raise ConfigError(
            f"graph fusion knows BERT-like encoders ({', '.join(sorted(BERT_LIKE))}), not "
            f"{model_type!r}; export without --optimize"
        )


@contextmanager
def _quiet_fusion_log() -> Iterator[None]:
    """Hide the optimizer's per-fusion INFO lines (the summary is reported) unless --verbose."""
    if log.getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


FUSION_MEMORY_FACTOR = 9
"""Peak memory of ORT's transformer optimizer per byte of graph: a 2.4 GB graph (a random
BERT of 641M parameters) went past 19 GB and finished its fusion under 23 GB."""


def check_memory_for_fusion(size: int, *, available: int | None = None) -> None:
    """Raise `ExportError` if fusing a graph of ``size`` bytes would exhaust the memory.

    ``available``: bytes (default: the kernel's MemAvailable). An export killed by the
    kernel minutes in (taking other processes with it) is worse than a refusal now.
    """
    available = memory_available() if available is None else available
    if available and size * FUSION_MEMORY_FACTOR > available:
        raise ExportError(
            f"graph fusion (--optimize) of a {size / 1e9:.1f} GB graph needs ~"
            f"{size * FUSION_MEMORY_FACTOR / 1e9:.1f} GB of memory ({FUSION_MEMORY_FACTOR}x the "
            f"graph) and {available / 1e9:.1f} GB is available: export without --optimize, or "
            "on a machine with more memory"
        )


def memory_available() -> int:
    """The kernel's estimate of memory available without swapping (bytes); 0 if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def fuse_transformer(
    source: Path, target: Path, *, model_type: str, num_heads: int, hidden_size: int
) -> FusionReport:
    """Write ``source`` with ORT's transformer fusions applied to ``target``."""
    check_fusable(model_type)
    weights = external_data_files(source)  # reads the graph: once
    check_memory_for_fusion(sum(p.stat().st_size for p in (source, *weights)))
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_fusion_log():
        optimized = optimize_model(
            str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size
        )
        stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items()}
        # Its save replaces the target's data file.
        optimized.save_model_to_file(str(target), use_external_data_format=bool(weights))
    report = FusionReport(fused=stats)
    if not report.any:
        log.warning("graph fusion found no attention/LayerNorm pattern to fuse in %s", source)
    return report


def convert_fp16(source: Path, target: Path) -> None:
    """Write an fp16 copy of ``source`` that keeps fp32 (and int64) inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    save_graph(model, target, external=bool(external_data_files(source)))


def quantizable_nodes(path: Path) -> tuple[str, ...]:
    """Names of the nodes dynamic quantization can turn int8, in graph order."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    nodes = []
    for node in graph.node:
        # Only products with a constant weight: MatMuls of two activations (attention
        # scores in an unfused graph) gain nothing and lose accuracy.
        if node.op_type == "Attention" or (
            node.op_type == "MatMul" and any(name in initializers for name in node.input)
        ):
            nodes.append(node.name)
    return tuple(nodes)


def quantize_nodes(
    source: Path,
    target: Path,
    nodes: tuple[str, ...],
    *,
    unsigned_weights: bool = False,
    reduce_range: bool = False,
) -> None:
    """Dynamic int8 of ``nodes``, weights per output channel (s8 unless ``unsigned_weights``).

    ``reduce_range`` keeps weights to 7 bits (ONNX Runtime's advice against u8s8 saturation on
    CPUs without VNNI). The exporter uses the defaults; benchmarks/int8_options.py compares.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs every tensor at INFO, and a pre-processing hint at WARNING for each
    # call, through the root logger; the gate's figures are what matter here.
    logging.disable(logging.WARNING)
    try:
        data_file(target).unlink(missing_ok=True)  # the quantizer's save appends to one
        quantize_dynamic(
            str(source),
            str(target),
            use_external_data_format=bool(external_data_files(source)),
            weight_type=QuantType.QUInt8 if unsigned_weights else QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            nodes_to_quantize=list(nodes),
            # Needed once the graph holds fused contrib ops whose outputs have no inferred type.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.disable(logging.NOTSET)


def _worst(report: GateReport) -> float:
    """The gate figure furthest below 1 (higher-is-better criteria only)."""
    return min((c.value for c in report.criteria if c.higher_is_better), default=1.0)


def quantize_int8(
    source: Path,
    target: Path,
    *,
    gate: GateFn,
    progress: Callable[[str], None] = lambda _: None,
) -> QuantizationReport:
    """Quantize ``source`` to int8 into ``target``, as much as the acceptance gate allows.

    First every MatMul/Attention; if that fails the gate, each node is quantized alone to
    measure what it costs, and the most sensitive are kept in fp32, two more at a time,
    until the gate passes. Refuses (`ValidationError` with the measured tables) when even
    keeping half of them in fp32 fails.
    """
    nodes = quantizable_nodes(source)
    if not nodes:
        raise ExportError(f"{source} has no MatMul or Attention node to quantize")
    quantize_nodes(source, target, nodes)
    report = gate(target)
    if report.passed:
        return QuantizationReport(nodes, (), report, {})
    progress(f"int8 of all {len(nodes)} nodes fails the gate:\n{report.table()}")
    progress(f"measuring the sensitivity of each of the {len(nodes)} nodes ...")
    sensitivity: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tritonhf-int8-") as tmp:
        probe = Path(tmp) / "probe.onnx"
        for node in nodes:
            quantize_nodes(source, probe, (node,))
            sensitivity[node] = _worst(gate(probe))
    ranked = sorted(nodes, key=lambda n: sensitivity[n])
    limit = int(len(nodes) * MAX_FP32_SHARE)
    keep = 2
    attempts = [report]
    while keep <= limit:
        kept = set(ranked[:keep])
        quantized = tuple(n for n in nodes if n not in kept)
        quantize_nodes(source, target, quantized)
        report = gate(target)
        attempts.append(report)
        failing = ", ".join(f"{c.name} {shown_figure(c.value, c.bound)}" for c in report.failures)
        progress(
            f"keeping the {keep} most sensitive nodes in fp32: "
            + (f"still failing the gate ({failing})" if failing else "passes the gate")
        )
        if report.passed:
            return QuantizationReport(
                quantized, tuple(n for n in nodes if n in kept), report, sensitivity
            )
        keep += 2
    target.unlink(missing_ok=True)
    raise ValidationError(
        f"int8 refused: no quantization that keeps at most {limit} of {len(nodes)} nodes in "
        f"fp32 passes the acceptance gate. Last attempt:\n{attempts[-1].table()}\n"
        "All of them quantized:\n"
        f"{attempts[0].table()}\nexport with --precision fp32 (optionally --optimize) instead"
    )
