"""Every MatMul int8: which dynamic-quantization settings keep the embeddings, and how fast.

tritonhf's int8 export quantizes the fused graph with ONNX Runtime's dynamic quantization (s8
weights per output channel) and, when that fails the acceptance gate, keeps the most sensitive
MatMuls in fp32. This script asks whether another setting would let *every* MatMul go int8:
it quantizes all of them with each setting below, compares each text's embedding with the
fp32 graph's (one text per call), and times the graph in this process (2 threads, no
spinning: batch 1, and length-sorted batches of 32).

- ``s8``: s8 weights per channel (tritonhf's setting);
- ``s8 reduce-range``: 7-bit weights, ONNX Runtime's advice against u8s8 saturation on CPUs
  without VNNI;
- ``u8``: u8 weights (u8u8 kernels, no saturation);
- ``smooth``: SmoothQuant-style smoothing first (alpha 0.5, activation maxima from the
  corpus): each MatMul's input divided per channel by s, its weight rows multiplied by s.

    .venv/bin/python benchmarks/int8_options.py [--export build/bench-work/default]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from servers.onnx_embedder import OnnxEmbedder  # noqa: E402
from side_by_side import TARGET_KINDS, WORK, ceilings  # noqa: E402

SETTINGS: dict[str, dict[str, Any]] = {
    "s8": {"weight": "s8", "reduce_range": False, "smooth": False},
    "s8 reduce-range": {"weight": "s8", "reduce_range": True, "smooth": False},
    "u8": {"weight": "u8", "reduce_range": False, "smooth": False},
    "smooth + s8": {"weight": "s8", "reduce_range": False, "smooth": True},
    "smooth + s8 reduce-range": {"weight": "s8", "reduce_range": True, "smooth": True},
    "smooth + u8": {"weight": "u8", "reduce_range": False, "smooth": True},
}
ALPHA = 0.5


def smooth(source: Path, target: Path, embedder: OnnxEmbedder, texts: list[str]) -> None:
    """Move activation outliers into the weights of every quantizable MatMul (exact in fp32)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from tritonhf.export.optimize import quantizable_nodes

    model = onnx.load(str(source))
    weights = {i.name: i for i in model.graph.initializer}
    names = set(quantizable_nodes(source))
    by_input: dict[str, list[Any]] = defaultdict(list)  # Q, K and V share one input
    for node in model.graph.node:
        if node.name in names:
            by_input[node.input[0]].append(node)
    probe = onnx.load(str(source))
    for name in by_input:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = list(by_input)
    peak: dict[str, Any] = {}
    for text in texts:
        for name, value in zip(inputs, session.run(inputs, embedder.feeds([text])), strict=True):
            channel_max = np.abs(value).reshape(-1, value.shape[-1]).max(axis=0)
            peak[name] = np.maximum(peak[name], channel_max) if name in peak else channel_max
    smoothing = []
    for name, nodes in by_input.items():
        arrays = [numpy_helper.to_array(weights[n.input[1]]) for n in nodes]
        row_max = np.max([np.abs(w).max(axis=1) for w in arrays], axis=0)
        scale = peak[name] ** ALPHA / np.maximum(row_max, 1e-5) ** (1 - ALPHA)
        scale = np.clip(scale, 1e-2, 1e2).astype(np.float32)
        for node, array in zip(nodes, arrays, strict=True):
            scaled = (array * scale[:, None]).astype(np.float32)
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(scaled, node.input[1]))
            node.input[0] = f"{name}/smoothed"
        model.graph.initializer.append(numpy_helper.from_array(1 / scale, f"{name}/inverse"))
        smoothing.append(helper.make_node("Mul", [name, f"{name}/inverse"], [f"{name}/smoothed"]))
    # Each Mul goes right after the node that produces its input (topological order).
    after = {node.input[0]: node for node in smoothing}
    ordered = [after.pop(i.name) for i in model.graph.input if i.name in after]
    for node in model.graph.node:
        ordered.append(node)
        ordered.extend(after.pop(output) for output in node.output if output in after)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    onnx.save(model, str(target))


def one_by_one(embedder: OnnxEmbedder, texts: list[str]) -> Any:
    """Each text's embedding computed alone (no padding)."""
    return np.concatenate([embedder.embed([text]) for text in texts])


def main() -> int:
    """Quantize with each setting, gate and time it, print the table."""
    from tritonhf import data
    from tritonhf.bench.corpus import traffic_order
    from tritonhf.export.optimize import quantizable_nodes, quantize_nodes
    from tritonhf.gate.agreement import Thresholds, cosine_similarities, embedding_gate
    from tritonhf.spec import Precision

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--export", type=Path, default=WORK / "default", help="fp32 repository")
    parser.add_argument("--seconds", type=float, default=5.0, help="per timing window")
    parser.add_argument("--worst", type=int, default=8, help="texts listed for s8")
    args = parser.parse_args()

    graph = next(args.export.glob("*_model/1/model.onnx"))
    tokenizer = next(args.export.glob("*/1/tokenizer.json"))
    texts = data.sentences()
    timing = traffic_order(texts)  # a window that stops part-way still sees every length
    fp32 = OnnxEmbedder(graph, tokenizer, spinning=False)
    reference = one_by_one(fp32, texts)
    thresholds = Thresholds.for_precision(Precision.INT8)

    def timed(embedder: OnnxEmbedder) -> tuple[float, float, float]:
        batch1, sorted32 = ceilings("ort", embedder, timing, args.seconds, TARGET_KINDS)
        return batch1.throughput, batch1.p50_ms, sorted32.throughput

    base = timed(fp32)
    print(f"{graph}: {len(texts)} texts; gate bounds {thresholds}")
    rows = [
        "| setting | min cos | mean cos | top-5 | gate | batch 1 texts/s (p50 ms) | sorted 32 |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    rows.append(f"| fp32 | 1 | 1 | 1 | | {base[0]:.1f} ({base[1]:.2f}) | {base[2]:.1f} |")
    worst: list[str] = []
    with tempfile.TemporaryDirectory(prefix="int8-options-") as tmp:
        for setting, options in SETTINGS.items():
            source = graph
            if options["smooth"]:
                source = Path(tmp) / "smoothed.onnx"
                smooth(graph, source, fp32, texts)
            target = Path(tmp) / "int8.onnx"
            quantize_nodes(
                source,
                target,
                quantizable_nodes(graph),
                unsigned_weights=options["weight"] == "u8",
                reduce_range=options["reduce_range"],
            )
            int8 = OnnxEmbedder(target, tokenizer, spinning=False)
            values = one_by_one(int8, texts)
            report = embedding_gate(
                values, reference, thresholds=thresholds, precision=Precision.INT8, subject=setting
            )
            figures = " | ".join(f"{c.value:.4f}" for c in report.criteria)
            speed = timed(int8)
            rows.append(
                f"| {setting} | {figures} | {'pass' if report.passed else 'fail'} "
                f"| {speed[0]:.1f} ({speed[1]:.2f}) {speed[0] / base[0]:.2f}x "
                f"| {speed[2]:.1f} {speed[2] / base[2]:.2f}x |"
            )
            print(rows[-1], flush=True)
            if setting == "s8":
                cosines = cosine_similarities(values, reference)
                tokens = [len(e.ids) for e in fp32.tokenizer.encode_batch(texts)]
                worst = [
                    f"{cosines[i]:.4f}  {tokens[i]:>3} tokens  {texts[i][:70]!r}"
                    for i in np.argsort(cosines)[: args.worst]
                ]
    print("\n".join(["", *rows, "", "worst texts with every MatMul s8 (cosine to fp32):", *worst]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
