"""Where one request's time goes at concurrency 1: the client, the ensemble and each step.

    .venv/bin/python benchmarks/latency_breakdown.py [--repo build/bench-work/default]
        [--seconds 10] [--corpus short]

In one run: the in-process ONNX Runtime ceiling (tokenize + run, batch 1; ORT's default
session and the served step's no-spinning one), then ``--repo`` served by tritonhf's own
server and driven by the harness's closed loop with one client, over gRPC and over HTTP. For
each window, Triton's statistics API (``/v2/models/stats``, read before and after) gives every
model's mean time per request: queueing, input handling, execution and output handling. The
client's mean (window / requests) against the ensemble's mean is what the client library and
the protocol cost. An ensemble's phases are its steps' (its compute is their compute summed),
not its own, and leave out the steps' queueing: read the steps' rows for where the time goes.
The steps' means summed come out a little above the ensemble's (a step's output handling
overlaps the next step), so their difference is no measure of the scheduling between them.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from closed_loop import Call, Measured, in_process, run_for  # noqa: E402
from peers import start_tritonhf  # noqa: E402
from servers.onnx_embedder import OnnxEmbedder  # noqa: E402

PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def model_stats(http_url: str) -> dict[str, dict[str, Any]]:
    """Triton's inference statistics, by model name."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/stats", timeout=10) as answer:  # nosec B310
        return {entry["name"]: entry for entry in json.load(answer)["model_stats"]}


def per_request_ms(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float] | None:
    """Mean ms per successful request of one model between two reads (None: none ran)."""

    def delta(key: str, field: str) -> int:
        return int(after["inference_stats"][key][field]) - int(
            before["inference_stats"][key][field]
        )

    count = delta("success", "count")
    if count <= 0:
        return None
    times = {phase: delta(phase, "ns") / count / 1e6 for phase in ("success", *PHASES)}
    return {"requests": float(count), **times}


def served_window(
    label: str, make_call: Callable[[], Call], texts: list[str], http_url: str, seconds: float
) -> list[str]:
    """One c1 window: the client's figures, then each model's mean phases, as table rows."""
    before = model_stats(http_url)
    measured = run_for(label, make_call, texts, concurrency=1, seconds=seconds)
    after = model_stats(http_url)
    mean = measured.seconds / max(measured.requests, 1) * 1e3
    rows = [f"| {label} (client) | {measured.p50_ms:.2f} | {mean:.2f} | | | | |"]
    for name in sorted(after):  # an ensemble sorts before its steps
        figures = per_request_ms(before.get(name, after[name]), after[name])
        if figures is None:
            continue
        phases = " | ".join(f"{figures[p]:.3f}" for p in PHASES)
        rows.append(f"| {name} | | {figures['success']:.2f} | {phases} |")
    return rows


def ceiling_row(label: str, measured: Measured) -> str:
    """An in-process run as a table row: p50 and mean per call."""
    mean = measured.seconds / max(measured.requests, 1) * 1e3
    return f"| {label} | {measured.p50_ms:.2f} | {mean:.2f} | | | | |"


def main() -> int:
    """Measure the ceiling, serve, measure each protocol, print one table."""
    from tritonhf.bench.corpus import load_corpus

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repo", type=Path, default=HERE.parent / "build/bench-work/default")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--corpus", default="short")
    args = parser.parse_args()
    graphs = sorted(args.repo.glob("*_model/1/model.onnx"))
    tokenizers = sorted(args.repo.glob("*/1/tokenizer.json"))  # either layout
    if not graphs or not tokenizers:
        parser.error(f"no export in {args.repo}: `tritonhf export --repo {args.repo}` first")
    texts = list(load_corpus(args.corpus))
    single = [[text] for text in texts]
    rows = []
    for spinning, label in ((True, "in-process ORT, default session"), (False, "no spinning")):
        embedder = OnnxEmbedder(graphs[0], tokenizers[0], spinning=spinning)
        rows.append(
            ceiling_row(
                f"{label} (batch 1)",
                in_process(label, embedder.embed, single, seconds=args.seconds),
            )
        )
    logs = HERE.parent / "build" / "bench-latency-logs"
    with start_tritonhf(args.repo, logs, "latency-breakdown") as (grpc, http):
        http_url = grpc.triton_http_url or ""
        run_for("warm-up", grpc.make_call, texts, concurrency=1, seconds=3)
        rows += served_window("gRPC", grpc.make_call, texts, http_url, args.seconds)
        rows += served_window("HTTP", http.make_call, texts, http_url, args.seconds)
    print(f"## One request's time at concurrency 1: {args.repo}, corpus {args.corpus}\n")
    print("Means are per request (Triton's statistics; the client's: window / requests), in ms.\n")
    print("| what | p50 | mean | queue | input | execute | output |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
