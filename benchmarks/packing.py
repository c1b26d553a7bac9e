"""Benchmark: packed sequences (no padding at all) against the model step's length groups.

Packing puts a batch's texts end to end in one row, with position ids that restart per text
and a block-diagonal attention mask, so no token is padding; the price is attention over the
whole row. Exports the default model's encoder twice (padded rows; one packed row), checks
that both give the same mean-pooled vectors, then times, on consecutive batches of the
corpus in traffic order, alternating rounds, one ONNX Runtime session per graph:

- padded: each batch padded to its longest text (one call);
- length groups: the model step's rule (``StepTuning``'s slack and token budget);
- packed: rows of at most ``--pack-tokens`` tokens, texts in arrival order.

    .venv/bin/python benchmarks/packing.py [--corpus short] [--batch 8,32] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from alternating import alternate, print_rates

Rows = list[Any]


def main() -> None:
    """Export both graphs, check they agree, time the three ways per batch size."""
    import torch

    from tritonhf.backends.onnx_runtime import length_groups, open_session
    from tritonhf.bench.corpus import load_corpus, traffic_order
    from tritonhf.export.onnx_export import load_encoder
    from tritonhf.export.source import DEFAULT_MODEL, load_fast_tokenizer, resolve_model
    from tritonhf.repository.configs import DEFAULT_TUNING

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", default="short")
    parser.add_argument("--batch", default="8,32", help="batch sizes, comma-separated")
    parser.add_argument("--threads", type=int, default=DEFAULT_TUNING.intra_op_threads)
    parser.add_argument("--pack-tokens", type=int, default=DEFAULT_TUNING.run_token_budget)
    parser.add_argument("--texts", type=int, default=480)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    source = resolve_model(DEFAULT_MODEL)
    model, tokenizer = load_encoder(source), load_fast_tokenizer(source)
    # Removed when the script exits, however it exits.
    scratch = tempfile.TemporaryDirectory(prefix="packing-bench-")
    work = Path(scratch.name)

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> Any:
            return self.model(input_ids=ids, position_ids=positions, attention_mask=mask)[0]

    ids = torch.ones(2, 16, dtype=torch.int64)
    positions = torch.arange(16).expand(2, 16)
    packed_mask = torch.zeros(1, 1, 16, 16)
    with torch.no_grad():
        for name, mask, axes in (
            ("padded", torch.ones(2, 16, dtype=torch.int64), {"mask": {0: "b", 1: "t"}}),
            ("packed", packed_mask, {"mask": {2: "t", 3: "t"}}),
        ):
            rows = 2 if name == "padded" else 1
            torch.onnx.export(
                Hidden(),
                (ids[:rows], positions[:rows], mask),
                str(work / f"{name}.onnx"),
                input_names=["ids", "positions", "mask"],
                output_names=["hidden"],
                dynamic_axes={
                    "ids": {0: "b", 1: "t"},
                    "positions": {0: "b", 1: "t"},
                    "hidden": {0: "b", 1: "t"},
                    **axes,
                },
                opset_version=17,
                dynamo=False,
            )
    padded_session = open_session(work / "padded.onnx", threads=args.threads, spinning=False)
    packed_session = open_session(work / "packed.onnx", threads=args.threads, spinning=False)

    texts = traffic_order(load_corpus(args.corpus))[: args.texts]
    encoded: Rows = [
        np.array(tokenizer(t, truncation=True, max_length=args.max_length)["input_ids"], np.int64)
        for t in texts
    ]

    def padded(batch: Rows) -> Rows:
        width = max(len(row) for row in batch)
        ids = np.zeros((len(batch), width), np.int64)
        mask = np.zeros_like(ids)
        for i, row in enumerate(batch):
            ids[i, : len(row)], mask[i, : len(row)] = row, 1
        positions = np.broadcast_to(np.arange(width), ids.shape).copy()
        hidden = padded_session.run(None, {"ids": ids, "positions": positions, "mask": mask})[0]
        return [hidden[i, : len(row)].mean(0) for i, row in enumerate(batch)]

    def grouped(batch: Rows) -> Rows:
        out: Rows = [None] * len(batch)
        widths = [len(row) for row in batch]
        slack, budget = DEFAULT_TUNING.length_group_slack, DEFAULT_TUNING.run_token_budget
        for group in length_groups(widths, [1] * len(batch), slack, budget):
            for index, vector in zip(group, padded([batch[i] for i in group]), strict=True):
                out[index] = vector
        return out

    blocked = np.float32(np.finfo(np.float32).min)

    def one_row(batch: Rows) -> Rows:
        lengths = [len(row) for row in batch]
        segment = np.repeat(np.arange(len(batch)), lengths)
        mask = np.where(segment[:, None] == segment[None, :], np.float32(0), blocked)
        feed = {
            "ids": np.concatenate(batch)[None],
            "positions": np.concatenate([np.arange(n) for n in lengths])[None],
            "mask": mask[None, None].astype(np.float32),
        }
        hidden = packed_session.run(None, feed)[0][0]
        bounds = np.cumsum([0, *lengths])
        return [hidden[a:b].mean(0) for a, b in itertools.pairwise(bounds)]

    def packed(batch: Rows) -> Rows:
        out: Rows = []
        row: Rows = []
        for text in batch:
            if row and sum(map(len, row)) + len(text) > args.pack_tokens:
                out += one_row(row)
                row = []
            row.append(text)
        return out + one_row(row)

    check = encoded[:32]
    diff = max(
        float(np.abs(a - b).max()) for a, b in zip(padded(check), packed(check), strict=True)
    )
    print(f"corpus {args.corpus}: {len(encoded)} texts, max |packed - padded| = {diff:.2e}")
    functions: dict[str, Callable[[Rows], Rows]] = {
        "length groups": grouped,
        "padded to longest": padded,
        f"packed ({args.pack_tokens} tokens)": packed,
    }
    for size in (int(s) for s in args.batch.split(",")):
        batches = [encoded[i : i + size] for i in range(0, len(encoded), size)]
        runs = alternate(functions, batches, args.rounds)
        per_text = {
            name: [rate * len(encoded) / len(batches) for rate in rates]
            for name, rates in runs.items()
        }
        print(f"\nbatches of {size}, {args.threads} ONNX Runtime thread(s):")
        print_rates(per_text, base="length groups", label="batching")


if __name__ == "__main__":
    main()
