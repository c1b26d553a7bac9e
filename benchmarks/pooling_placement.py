"""Benchmark: does pooling belong inside the ONNX graph, or in numpy after it.

Exports the default model twice (with pooling + L2 norm in the graph, and raw hidden states),
runs both on the same corpus sentences one at a time, alternating rounds, and prints a table.

    .venv/bin/python benchmarks/pooling_placement.py [--texts 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from alternating import alternate, print_rates


def main() -> None:
    """Export both variants, time them on the same sentences, print the table."""
    import onnxruntime as ort
    import torch

    from tritonhf import data
    from tritonhf.export.head import load_head
    from tritonhf.export.onnx_export import export_onnx, load_encoder, sentence_encoder
    from tritonhf.export.source import DEFAULT_MODEL, load_fast_tokenizer, resolve_model

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    source = resolve_model(DEFAULT_MODEL)
    model, tokenizer = load_encoder(source), load_fast_tokenizer(source)
    # Removed when the script exits, however it exits.
    scratch = tempfile.TemporaryDirectory(prefix="pooling-bench-")
    work = Path(scratch.name)
    pooled = sentence_encoder(model, source.head, load_head(source.head), token_types=True)
    export_onnx(pooled, work / "pooled.onnx")

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            types = torch.zeros_like(input_ids)
            return self.model(input_ids, attention_mask, token_type_ids=types).last_hidden_state

    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            HiddenStates(),
            (torch.ones(2, 16, dtype=torch.int64),) * 2,
            str(work / "raw.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
            opset_version=17,
            dynamo=False,
        )
    pooled = ort.InferenceSession(str(work / "pooled.onnx"), providers=["CPUExecutionProvider"])
    raw = ort.InferenceSession(str(work / "raw.onnx"), providers=["CPUExecutionProvider"])
    feeds = []
    for text in data.sentences()[: args.texts]:
        batch = tokenizer([text], truncation=True, max_length=256, return_tensors="np")
        feeds.append({k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")})

    def in_graph(feed: dict[str, Any]) -> Any:
        return pooled.run(None, feed)[0]

    def in_numpy(feed: dict[str, Any]) -> Any:
        hidden = raw.run(None, feed)[0]
        mask = feed["attention_mask"][..., None].astype(np.float32)
        mean = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        return mean / np.linalg.norm(mean, axis=1, keepdims=True)

    functions: dict[str, Callable[[dict[str, Any]], Any]] = {
        "pooling in graph": in_graph,
        "pooling in numpy": in_numpy,
    }
    runs = alternate(functions, feeds, args.rounds)
    diff = max(float(np.abs(in_graph(f) - in_numpy(f)).max()) for f in feeds)
    print_rates(runs, base="pooling in graph")
    print(f"max |graph - numpy| = {diff:.2e} over {len(feeds)} sentences")


if __name__ == "__main__":
    main()
