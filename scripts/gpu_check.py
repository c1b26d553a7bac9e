"""GPU check: serve a model with the python-torch runtime on the GPU and measure it.

    python scripts/gpu_check.py [--model DIR] [--out DIR] [--requests 2000]
                                [--tokenizer-env DIR] [--random-weights] [--allow-cpu]

Exports the model (all-MiniLM-L6-v2 by default) with ``--runtime python-torch`` (``KIND_GPU``,
fp16 when CUDA is there): replayed as CUDA graphs (the default), eager (``cuda_graphs: "0"``),
and in the merged layout. Starts Triton from the ``nvidia-pytriton`` wheel and prints one
markdown report:

1. the machine (GPU, driver, CUDA, torch, Triton);
2. correctness: the served embeddings against the CPU fp32 PyTorch reference, through the
   acceptance gate with fp16 thresholds; and graphs against eager;
3. for each variant, closed-loop throughput and latency at concurrency 1, 8 and 32 with one
   text per request, then 64 texts per request (sentences/s); where one request's time goes
   at concurrency 1 (Triton's statistics per step); the merged layout, on its own server;
4. the GPU metrics Triton exports (``nv_gpu_*``);
5. the in-process ceiling on the same device: batch 1 eager, as a CUDA graph and with the
   step's host copies, batch 512, the tokenizer alone.

The numpy-2 trap (docs/gpu.md): the 2.51 Python-backend stub converts no tensor correctly
under numpy 2; the python-torch step passes its tensors through DLPack instead, but text has
no DLPack form. ``--tokenizer-env`` names a Python environment (a folder with
``bin/activate``) holding numpy 1.x that the steps taking text run in (``EXECUTION_ENV_PATH``);
the model steps keep the server's environment (torch, CUDA). ``--random-weights`` serves the model's
architecture and tokenizer with weights drawn at random (seed 0): the timings are the
model's, the gate then only measures fp16 against fp32 arithmetic. ``--allow-cpu`` runs the
same steps without a GPU (fp32, KIND_CPU): the script's own test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess  # nosec B404
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tritonhf import __version__, data
from tritonhf.client import TritonHFClient
from tritonhf.export.pipeline import ExportOptions, export_model
from tritonhf.gate.acceptance import AcceptanceOptions, run_acceptance
from tritonhf.loadgen import LoadResult, run_closed_loop
from tritonhf.repository.configs import DEFAULT_TUNING
from tritonhf.server.launcher import ServerConfig, TritonServer
from tritonhf.server.ports import free_ports
from tritonhf.spec import Layout, Precision, Runtime

NAME = "gpucheck"
EAGER = f"{NAME}_eager"
MERGED = f"{NAME}_merged"
SINGLE = f"{NAME}_single"
VARIANTS = ((NAME, "CUDA graphs"), (EAGER, "eager"), (SINGLE, "CUDA graphs, one model instance"))
CONCURRENCIES = (1, 8, 32)
BATCHED = ((64, 4), (64, 16))
"""(texts per request, concurrency) for the sentences/s rows."""
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.h5", "*.msgpack", "*.onnx")


def machine(cuda: bool) -> list[str]:
    """Lines describing the card and the software."""
    import torch
    import transformers

    lines = [
        f"- host: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), "
        f"Python {platform.python_version()}"
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
    lines.append(
        f"- torch {torch.__version__}, transformers {transformers.__version__}, "
        f"numpy {np.__version__}, tritonhf {__version__}"
    )
    return lines


def random_copy(model: Path, target: Path) -> Path:
    """``model``'s folder with its weights replaced by random ones (seed 0), in ``target``."""
    import torch
    from transformers import AutoConfig, AutoModel

    shutil.copytree(model, target, ignore=shutil.ignore_patterns(*WEIGHT_FILES))
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(model)  # nosec B615 - a local folder
    AutoModel.from_config(config).save_pretrained(  # type: ignore[no-untyped-call]
        target, safe_serialization=True
    )
    return target


def ceiling(model: str, texts: list[str], device: str, half: bool, version_dir: Path) -> list[str]:
    """In-process torch on the same device: batch 1 and batch 512.

    Batch 1 runs eager, as a CUDA graph, and through the served step's session (loaded from
    ``version_dir``: host arrays in and out).
    """
    import torch
    from transformers import AutoModel

    from tritonhf.backends.cuda_graphs import CudaGraphs
    from tritonhf.backends.torch_runtime import HF_FOLDER, SETTINGS_FILE, TorchSession
    from tritonhf.export.head import load_head
    from tritonhf.export.onnx_export import sentence_encoder
    from tritonhf.export.source import load_fast_tokenizer, resolve_model

    source = resolve_model(model)
    encoder = AutoModel.from_pretrained(source.path)  # nosec B615 - sdpa, as the step loads it
    encoder = sentence_encoder(encoder, source.head, load_head(source.head), token_types=True)
    encoder = encoder.to(device, dtype=torch.float16 if half else torch.float32).eval()
    tokenizer = load_fast_tokenizer(source)
    one = tokenizer(texts[:1], return_tensors="pt").to(device)
    batch = tokenizer((texts * 4)[:512], padding=True, return_tensors="pt").to(device)

    def timed(forward: Any, inputs: Any, repeats: int) -> float:
        with torch.inference_mode():
            for _ in range(3):
                forward(inputs["input_ids"], inputs["attention_mask"])
            if device != "cpu":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(repeats):
                forward(inputs["input_ids"], inputs["attention_mask"])
            if device != "cpu":
                torch.cuda.synchronize()
        return (time.perf_counter() - started) / repeats

    single = timed(encoder, one, 50)
    big = timed(encoder, batch, 5 if device != "cpu" else 1)
    started = time.perf_counter()
    tokenizer((texts * 4)[:512], padding=True)
    tokenize = time.perf_counter() - started
    lines = [f"- batch 1 ({one['input_ids'].shape[1]} tokens), eager: {single * 1e3:.2f} ms"]
    if device != "cpu":
        graphs = CudaGraphs(encoder, torch.device(device), max_rows=1)
        lines.append(f"- batch 1, CUDA graph: {timed(graphs, one, 200) * 1e3:.3f} ms")
    settings = json.loads((version_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
    session = TorchSession(version_dir / HF_FOLDER, settings, device, graph_rows=8)
    host = {name: one[name].cpu().numpy() for name in ("input_ids", "attention_mask")}
    lines.append(
        "- batch 1, the served step's session (host arrays in and out, graphs on CUDA): "
        f"{timed(lambda *_: session.run(['EMBEDDING'], host), one, 200) * 1e3:.3f} ms"
    )
    return [
        *lines,
        f"- batch 512 (padded to {batch['input_ids'].shape[1]}), eager: "
        f"{512 / big:,.0f} sentences/s",
        f"- tokenizer alone (fast, one thread, 512 texts): {512 / tokenize:,.0f} texts/s",
    ]


def load_table(client: TritonHFClient, texts: list[str], requests: int) -> list[str]:
    """Closed-loop throughput and latency: one text per request, then batched requests."""
    rows = [
        "| texts/request | concurrency | req/s | sentences/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    cases = [(1, c) for c in CONCURRENCIES] + list(BATCHED)
    for per_request, concurrency in cases:
        count = requests if per_request == 1 else max(20, requests // 8)
        for warm_up in (True, False):
            result: LoadResult = run_closed_loop(
                client,
                texts,
                requests=min(200, count) if warm_up else count,
                concurrency=concurrency,
                texts_per_request=per_request,
            )
        rows.append(
            f"| {per_request} | {concurrency} | {result.throughput:,.0f} | "
            f"{result.throughput * per_request:,.0f} | {result.percentile_ms(50):.2f} | "
            f"{result.percentile_ms(99):.2f} | {result.error_count} |"
        )
    return rows


STAT_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")


def triton_stats(http_url: str) -> dict[str, dict[str, int]]:
    """Triton's cumulative statistics per model: successes and nanoseconds per stage."""
    url = f"http://{http_url}/v2/models/stats"
    with urllib.request.urlopen(url, timeout=10) as response:  # nosec B310
        models = json.load(response)["model_stats"]
    totals: dict[str, dict[str, int]] = {}
    for model in models:
        stats, found = model["inference_stats"], totals.setdefault(model["name"], {})
        parts = {"count": stats["success"]["count"], "total": stats["success"]["ns"]}
        parts |= {part: stats[part]["ns"] for part in STAT_PARTS}
        for key, value in parts.items():
            found[key] = found.get(key, 0) + int(value)
    return totals


def breakdown(
    client: TritonHFClient, http_url: str, texts: list[str], requests: int, server_log: Path
) -> list[str]:
    """Where one request's time goes at concurrency 1: Triton's per-model means (us).

    Beside them, the steps' own ``execute`` time (their JSON logs' ``latency_ms``): what
    compute infer adds to it is the Python backend's passing of tensors to and from the stub.
    """
    before, logged = triton_stats(http_url), server_log.stat().st_size
    result = run_closed_loop(client, texts, requests=requests, concurrency=1)
    after = triton_stats(http_url)
    with server_log.open(encoding="utf-8", errors="replace") as log:
        log.seek(logged)
        executes = step_latencies(log)
    rows = [
        f"client p50 {result.percentile_ms(50):.2f} ms, "
        f"mean {np.mean(result.latencies_s) * 1e3:.2f} ms; Triton's means per request, in us:",
        "",
        "| model | requests | total | queue | compute input | compute infer | compute output |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(after):
        count = after[name]["count"] - before.get(name, {}).get("count", 0)
        if count <= 0:
            continue
        mean = {
            k: (v - before.get(name, {}).get(k, 0)) / count / 1e3 for k, v in after[name].items()
        }
        cells = " | ".join(f"{mean[part]:.0f}" for part in ("total", *STAT_PARTS))
        rows.append(f"| {name} | {count} | {cells} |")
    rows.append("")
    rows += [
        f"- {step} step's execute(), mean of {len(ms)} batches: {np.mean(ms) * 1e3:.0f} us"
        for step, ms in sorted(executes.items())
    ]
    return rows


def step_latencies(lines: Any) -> dict[str, list[float]]:
    """``latency_ms`` of each step's request log lines (JSON), by step."""
    found: dict[str, list[float]] = {}
    for line in lines:
        if '"latency_ms"' not in line:
            continue
        with contextlib.suppress(ValueError):
            event = json.loads(line[line.index("{") :])
            found.setdefault(str(event.get("step")), []).append(float(event["latency_ms"]))
    return found


def served_table(repo: Path, name: str, texts: list[str], requests: int, log: Path) -> list[str]:
    """Start a server on ``repo`` (its log in ``log``) and measure pipeline ``name``."""
    http, grpc, metrics = free_ports(3)
    config = ServerConfig(repo=repo, http_port=http, grpc_port=grpc, metrics_port=metrics)
    with (
        TritonServer(config, log_path=log),
        TritonHFClient(config.grpc_url, model=name, timeout_s=120) as client,
    ):
        return load_table(client, texts, requests)


def graphs_against_eager(client: TritonHFClient, texts: list[str]) -> str:
    """Largest difference between the graph-replayed and the eager served embeddings."""
    graphs = client.embed(texts, model=NAME)
    eager = client.embed(texts, model=EAGER)
    return (
        f"- CUDA graphs against eager, {len(texts)} texts: max |diff| "
        f"{float(np.abs(graphs - eager).max()):.2e}"
    )


def gpu_metrics(url: str) -> list[str]:
    """Triton's ``nv_gpu_*`` lines (utilisation, memory, power)."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  # nosec B310
        text = response.read().decode("utf-8")
    lines = [f"    {line}" for line in text.splitlines() if line.startswith("nv_gpu_")]
    return lines or ["- none: this tritonserver build reports no GPU metrics (no DCGM)"]


def export(
    model: str, repo: Path, name: str, precision: Precision, tokenizer_env: Path | None
) -> None:
    """Export ``model`` as pipeline ``name``.

    The eager one gets ``cuda_graphs: "0"``; the single one one model instance (the others
    two, as on the CPU).
    """
    cores = os.cpu_count() or 2
    # GPU tuning: one GPU call per batch (the CPU's per-call token budget splits batches for
    # cache sizes a GPU does not have), and tokenizer instances for the cores there are.
    tuning = replace(
        DEFAULT_TUNING,
        tokenizer_instances=max(1, min(4, cores // 4)),
        run_token_budget=0,
        model_instances=1 if name == SINGLE else DEFAULT_TUNING.model_instances,
    )
    export_model(
        ExportOptions(
            model=model,
            name=name,
            repo=repo,
            runtime=Runtime.PYTHON_TORCH,
            precision=precision,
            tuning=tuning,
            layout=Layout.MERGED if name == MERGED else Layout.SPLIT,
        )
    )
    if name == EAGER:
        add_parameter(repo / f"{name}_model" / "config.pbtxt", "cuda_graphs", "0")
    if tokenizer_env is not None:  # the merged layout's model step tokenizes
        step = "model" if name == MERGED else "tokenizer"
        config = repo / f"{name}_{step}" / "config.pbtxt"
        add_parameter(config, "EXECUTION_ENV_PATH", str(tokenizer_env.resolve()))


def add_parameter(config: Path, key: str, value: str) -> None:
    """Append one ``parameters`` entry to a ``config.pbtxt``."""
    entry = f'parameters {{\n  key: "{key}"\n  value {{\n    string_value: "{value}"\n  }}\n}}\n'
    config.write_text(config.read_text(encoding="utf-8") + entry, encoding="utf-8")


def main() -> int:
    """Run every step and print (and save) the report; exit 1 if the gate fails."""
    import torch

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", type=Path, default=Path("artifacts/gpu"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tokenizer-env", type=Path)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--allow-cpu", action="store_true")
    args = parser.parse_args()
    cuda = bool(torch.cuda.is_available())
    if not cuda and not args.allow_cpu:
        print("no CUDA GPU visible to torch; pass --allow-cpu to run the steps on the CPU")
        return 2
    precision = Precision.FP16 if cuda else Precision.FP32
    texts = data.sentences()
    report = Report(args.out / "gpu_check.md")
    report.add("# tritonhf GPU check", "", *machine(cuda))
    with tempfile.TemporaryDirectory(prefix="tritonhf-gpu-") as tmp:
        model = args.model
        if args.random_weights:
            from tritonhf.export.source import resolve_model

            model = str(random_copy(resolve_model(model).path, Path(tmp) / "random"))
            report.add(f"- model: {args.model}'s architecture, random weights (seed 0)")
        else:
            report.add(f"- model: {args.model}")
        repo = Path(tmp) / "repo"
        for name, _ in VARIANTS:
            export(model, repo, name, precision, args.tokenizer_env)
        http, grpc, metrics = free_ports(3)
        config = ServerConfig(
            repo=repo, http_port=http, grpc_port=grpc, metrics_port=metrics, gpu_metrics=cuda
        )
        server_log = args.out / "tritonserver.log"
        with TritonServer(config, log_path=server_log) as _server:
            report.add(
                "", f"## python-torch, {precision.value}, {'KIND_GPU' if cuda else 'KIND_CPU'}"
            )
            passed = served = False
            with TritonHFClient(config.grpc_url, model=NAME, timeout_s=120) as client:
                try:
                    client.embed(texts[:2])  # the numpy-2 trap shows here (docs/gpu.md)
                    gate = run_acceptance(
                        AcceptanceOptions(reference=model, model=NAME, url=config.grpc_url)
                    )
                except Exception as exc:  # noqa: BLE001 - reported; the ceiling is still measured
                    report.add(f"- serving failed: {type(exc).__name__}: {exc}")
                else:
                    passed, served = gate.passed, True
                    report.add("", "```", gate.table(), "```")
                    report.attempt(
                        "graphs against eager", lambda: [graphs_against_eager(client, texts)]
                    )
            for name, title in VARIANTS if served else ():
                with TritonHFClient(config.grpc_url, model=name, timeout_s=120) as one:
                    report.add("", f"### {title} ({name})", "")
                    report.attempt(title, lambda: load_table(one, texts, args.requests))
                    report.add("", f"One request at a time, step by step ({name}):", "")
                    report.attempt(
                        "breakdown",
                        lambda: breakdown(one, config.http_url, texts, args.requests, server_log),
                    )
            report.add("", "## Triton GPU metrics (after the runs above)")
            report.attempt("GPU metrics", lambda: gpu_metrics(config.metrics_url))
        if served:  # its own server: a step that fails to load stops Triton's start
            merged = Path(tmp) / "merged"
            export(model, merged, MERGED, precision, args.tokenizer_env)
            report.add("", f"### CUDA graphs, merged layout ({MERGED})", "")
            log = args.out / "merged.log"
            report.attempt(
                "merged", lambda: served_table(merged, MERGED, texts, args.requests, log)
            )
        report.add("", "## In-process ceiling (same device)")
        device = "cuda" if cuda else "cpu"
        step = repo / f"{NAME}_model" / "1"
        report.attempt("ceiling", lambda: ceiling(model, texts, device, cuda, step))
    return 0 if passed else 1


class Report:
    """The markdown report, printed and saved part by part: a run cut short keeps its parts."""

    def __init__(self, path: Path) -> None:
        self.path, self.lines = path, list[str]()
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, *lines: str) -> None:
        """Append ``lines``, print them and rewrite the file."""
        self.lines += lines
        print("\n".join(lines), flush=True)
        self.path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")

    def attempt(self, what: str, measure: Callable[[], list[str]]) -> None:
        """Add what ``measure`` returns, or why it failed: one failed part spoils no other."""
        try:
            lines = measure()
        except Exception as exc:  # noqa: BLE001 - any failure is reported, and the run goes on
            lines = [f"- {what} failed: {type(exc).__name__}: {exc}"]
        self.add(*lines)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
