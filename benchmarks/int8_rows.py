"""int8 texts run alone: how much a batch moves a text's embedding, and what running alone costs.

ONNX Runtime's dynamic quantization scales each MatMul's activations by the range of the
whole input tensor, so an int8 graph gives a text a different embedding depending on what it
is batched with (and padded to). The served int8 step therefore runs each text alone at its
own length (the model step's ``rows_alone`` setting). This script measures, on the
gated int8 graph of an export and the served session settings (no spinning):

- how far each text's embedding moves when it runs in an arrival-order batch of N instead of
  alone (cosine, min and mean over the corpus), for the fp32 graph beside it when given;
- texts/s of the step's ways of running a batch of N (its own ``run_grouped``): rows alone,
  length groups (the fp32 step's default), and one padded call, on 1 and 2 threads.

    .venv/bin/python benchmarks/int8_rows.py [--int8 build/bench-work/int8] \
        [--fp32 build/bench-work/default]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from closed_loop import in_process  # noqa: E402
from side_by_side import WORK  # noqa: E402

BATCHES = (8, 32)


def main() -> int:
    """Export-independent: read the graphs and tokenizer from the repositories given."""
    from tokenizers import Tokenizer

    from tritonhf import data
    from tritonhf.backends.onnx_runtime import (
        SessionSettings,
        TritonPythonModel,
        open_session,
        stack_ragged,
    )
    from tritonhf.bench.corpus import traffic_order
    from tritonhf.gate.agreement import cosine_similarities
    from tritonhf.repository.configs import DEFAULT_TUNING

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--int8", type=Path, default=WORK / "int8", help="int8 repository")
    parser.add_argument("--fp32", type=Path, default=WORK / "default", help="fp32 repository")
    parser.add_argument("--seconds", type=float, default=4.0, help="per timing window")
    args = parser.parse_args()

    tokenizer = Tokenizer.from_file(str(next(args.int8.glob("*/1/tokenizer.json"))))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=256)
    texts = traffic_order(data.sentences())

    def requests(batch: Sequence[str]) -> list[dict[str, Any]]:
        """One request per text, as the tokenizer step hands them to the model step."""
        return [
            {
                "input_ids": np.array([e.ids], dtype=np.int64),
                "attention_mask": np.ones((1, len(e.ids)), dtype=np.int64),
            }
            for e in tokenizer.encode_batch(list(batch))
        ]

    def step(output: str, *, alone: bool) -> Any:
        """The served model step's batch runner: rows alone, or the fp32 length groups."""
        model = TritonPythonModel()
        model.settings = SessionSettings(
            (output,),
            group_slack=DEFAULT_TUNING.length_group_slack,
            run_token_budget=DEFAULT_TUNING.run_token_budget,
            rows_alone=alone,
        )
        return model

    def way(name: str, session: Any, output: str) -> Callable[[Sequence[str]], Any]:
        names = [output]
        if name == "one padded call":
            return lambda batch: session.run(names, stack_ragged(requests(batch)))
        model = step(output, alone=name == "rows alone")
        return lambda batch: model.run_grouped(session, names, requests(batch))

    print(f"{len(texts)} corpus texts, arrival order")
    print("\n| graph | batch | min cosine batched vs alone | mean |")
    print("|---|---:|---:|---:|")
    graphs = {"int8": args.int8, "fp32": args.fp32}
    for label, repo in graphs.items():
        graph = next(repo.glob("*_model/1/model.onnx"), None)
        if graph is None:
            print(f"| {label} | no graph in {repo} | | |")
            continue
        session = open_session(graph, threads=1, spinning=False)
        output = session.get_outputs()[0].name
        (alone,) = step(output, alone=True).run_grouped(session, [output], requests(texts))
        for size in BATCHES:
            batched = np.concatenate(
                [
                    session.run([output], stack_ragged(requests(texts[i : i + size])))[0]
                    for i in range(0, len(texts), size)
                ]
            )
            cosines = cosine_similarities(batched, alone)
            print(f"| {label} | {size} | {cosines.min():.4f} | {cosines.mean():.4f} |")

    print("\n| graph | threads | batch | way | texts/s | vs rows alone |")
    print("|---|---:|---:|---|---:|---:|")
    for label, repo in graphs.items():
        graph = next(repo.glob("*_model/1/model.onnx"), None)
        if graph is None:
            continue
        for threads in (1, 2):
            session = open_session(graph, threads=threads, spinning=False)
            output = session.get_outputs()[0].name
            for size in BATCHES:
                batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
                base = 0.0
                for name in ("rows alone", "length groups", "one padded call"):
                    run = way(name, session, output)
                    measured = in_process(name, run, batches, seconds=args.seconds)
                    speed = measured.requests / measured.seconds
                    base = base or speed
                    print(
                        f"| {label} | {threads} | {size} | {name} | {speed:.1f} "
                        f"| {speed / base:.2f}x |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
