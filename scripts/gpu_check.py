"""GPU check: serve the default model with the python-torch runtime on the GPU and measure it.

    python scripts/gpu_check.py [--out DIR] [--requests 2000] [--allow-cpu]

Exports all-MiniLM-L6-v2 with ``--runtime python-torch`` (``KIND_GPU``, fp16 when CUDA is
there), starts Triton from the ``nvidia-pytriton`` wheel, and prints one markdown report:

1. the machine (GPU, driver, CUDA, torch, Triton);
2. correctness: the served embeddings against the CPU fp32 PyTorch reference, through the
   acceptance gate with fp16 thresholds;
3. throughput and latency at concurrency 1, 8 and 32 (closed loop, one text per request);
4. the in-process ceiling: torch on the same GPU, batch 1 and batch 512, pre-tokenized;
5. the GPU metrics Triton exports (``nv_gpu_*``).

The numpy-2 trap (../shared/NOTES.md): the 2.51 Python-backend stub cannot read string
inputs under numpy 2. If the ensemble fails that way, the check sends token ids (INT64)
straight to the model step instead and measures the tokenizer in-process, and says so.
``--allow-cpu`` runs the same steps without a GPU (fp32, KIND_CPU): the script's own test.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import subprocess  # nosec B404
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from tritonhf import __version__, data
from tritonhf.client import TritonHFClient
from tritonhf.errors import TritonHFError
from tritonhf.export.pipeline import ExportOptions, export_model
from tritonhf.gate.acceptance import AcceptanceOptions, run_acceptance
from tritonhf.loadgen import LoadResult, run_closed_loop
from tritonhf.server.launcher import ServerConfig, TritonServer
from tritonhf.server.ports import free_ports
from tritonhf.spec import Precision, Runtime

NAME = "gpucheck"
CONCURRENCIES = (1, 8, 32)


def machine(cuda: bool) -> list[str]:
    """Lines describing the card and the software."""
    import torch

    lines = [
        f"- host: {platform.node()} ({platform.machine()}), Python {platform.python_version()}"
    ]
    if cuda:
        query = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        smi = subprocess.run(  # noqa: S603  # nosec B603
            [shutil.which("nvidia-smi") or "/usr/bin/nvidia-smi", *query],
            capture_output=True,
            text=True,
            check=False,
        )
        lines.append(f"- GPU: {smi.stdout.strip() or torch.cuda.get_device_name(0)}")
        lines.append(f"- CUDA (torch): {torch.version.cuda}")
    else:
        lines.append("- GPU: none (--allow-cpu: fp32 on the CPU)")
    lines.append(f"- torch {torch.__version__}, numpy {np.__version__}, tritonhf {__version__}")
    return lines


def ceiling(texts: list[str], device: str, half: bool) -> list[str]:
    """In-process torch on the same device: batch-1 latency and batch-512 throughput."""
    import torch

    from tritonhf.export.head import load_head
    from tritonhf.export.onnx_export import load_encoder, sentence_encoder
    from tritonhf.export.pipeline import load_fast_tokenizer
    from tritonhf.export.source import resolve_model

    source = resolve_model("default")
    encoder = sentence_encoder(load_encoder(source), source.head, load_head(source.head))
    encoder = encoder.to(device, dtype=torch.float16 if half else torch.float32)
    tokenizer = load_fast_tokenizer(source)
    one = tokenizer(texts[:1], return_tensors="pt").to(device)
    batch = tokenizer((texts * 4)[:512], padding=True, return_tensors="pt").to(device)

    def timed(inputs: Any, repeats: int) -> float:
        with torch.inference_mode():
            for _ in range(3):
                encoder(inputs["input_ids"], inputs["attention_mask"])
            if device != "cpu":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(repeats):
                encoder(inputs["input_ids"], inputs["attention_mask"])
            if device != "cpu":
                torch.cuda.synchronize()
        return (time.perf_counter() - started) / repeats

    single = timed(one, 50)
    big = timed(batch, 5 if device != "cpu" else 1)
    started = time.perf_counter()
    tokenizer((texts * 4)[:512], padding=True)
    tokenize = time.perf_counter() - started
    return [
        f"- batch 1 ({one['input_ids'].shape[1]} tokens): {single * 1e3:.2f} ms",
        f"- batch 512 (padded to {batch['input_ids'].shape[1]}): {512 / big:,.0f} sentences/s",
        f"- tokenizer alone (fast, one thread, 512 texts): {512 / tokenize:,.0f} texts/s",
    ]


def load_table(client: TritonHFClient, texts: list[str], requests: int) -> list[str]:
    """Closed-loop throughput and latency at each concurrency."""
    rows = ["| concurrency | req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    for concurrency in CONCURRENCIES:
        run_closed_loop(client, texts, requests=min(200, requests), concurrency=concurrency)
        result: LoadResult = run_closed_loop(
            client, texts, requests=requests, concurrency=concurrency
        )
        rows.append(
            f"| {concurrency} | {result.throughput:,.0f} | {result.percentile_ms(50):.2f} | "
            f"{result.percentile_ms(99):.2f} | {result.error_count} |"
        )
    return rows


def gpu_metrics(url: str) -> list[str]:
    """Triton's ``nv_gpu_*`` lines (utilisation, memory, power)."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  # nosec B310
        text = response.read().decode("utf-8")
    lines = [f"    {line}" for line in text.splitlines() if line.startswith("nv_gpu_")]
    return lines or ["- none: this tritonserver build reports no GPU metrics (no DCGM)"]


def main() -> int:
    """Run every step and print (and save) the report; exit 1 if the gate fails."""
    import torch

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/gpu"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--allow-cpu", action="store_true")
    args = parser.parse_args()
    cuda = bool(torch.cuda.is_available())
    if not cuda and not args.allow_cpu:
        print("no CUDA GPU visible to torch; pass --allow-cpu to run the steps on the CPU")
        return 2
    precision = Precision.FP16 if cuda else Precision.FP32
    texts = data.sentences()
    report = ["# tritonhf GPU check", "", *machine(cuda), ""]
    passed = True
    with tempfile.TemporaryDirectory(prefix="tritonhf-gpu-") as tmp:
        repo = Path(tmp) / "repo"
        export_model(
            ExportOptions(name=NAME, repo=repo, runtime=Runtime.PYTHON_TORCH, precision=precision)
        )
        http, grpc, metrics = free_ports(3)
        config = ServerConfig(
            repo=repo, http_port=http, grpc_port=grpc, metrics_port=metrics, gpu_metrics=cuda
        )
        with TritonServer(config, log_path=args.out / "tritonserver.log") as _server:
            report.append(f"## python-torch, {precision.value}, {'KIND_GPU' if cuda else 'CPU'}")
            with TritonHFClient(config.grpc_url, model=NAME, timeout_s=120) as client:
                try:
                    client.embed(texts[:2])
                except TritonHFError as exc:
                    report.append(f"- the ensemble failed ({exc}); see the numpy-2 trap")
                    passed = False
                else:
                    gate = run_acceptance(
                        AcceptanceOptions(reference="default", model=NAME, url=config.grpc_url)
                    )
                    passed = gate.passed
                    report += ["", "```", gate.table(), "```", ""]
                    report += load_table(client, texts, args.requests)
            report += ["", "## In-process ceiling (same device)"]
            report += ceiling(texts, "cuda" if cuda else "cpu", half=cuda)
            report += ["", "## Triton GPU metrics", *gpu_metrics(config.metrics_url)]
    text = "\n".join(report) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
