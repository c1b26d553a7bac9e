"""Benchmark: Triton 2.51's dynamic batcher stalls a single-instance step for 500 ms.

A step with one instance and a queue policy (`dynamic_batching.default_queue_policy`, which
every tritonhf step that batches has) sometimes leaves a request in its queue until the
batcher's idle wait of 500 ms runs out: the request came while the instance was still being
released after answering the previous one, so nothing woke the batcher. Fast steps called by
fast clients hit it most: the tokenizer step called directly, one request at a time, stalled
on ~1 % of requests. With two instances a free one takes the request at once.

Copies the tokenizer step of an exported pipeline twice, with one and with two instances,
serves both, sends the same single-text gRPC requests to each in turn, and prints a table.

    .venv/bin/python benchmarks/batcher_stall.py [--repo model_repository] [--name minilm]
        [--requests 1500] [--concurrency 1,4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

STALL_MS = 400.0
"""A request slower than this waited for the batcher's 500 ms idle wait."""


def build_repo(source: Path, name: str, target: Path) -> list[str]:
    """``target`` with ``name``'s tokenizer step as ``tok1`` and ``tok2`` (1 and 2 instances)."""
    from tritonhf.repository.configs import to_pbtxt
    from tritonhf.repository.writer import read_config

    variants = []
    for count in (1, 2):
        variant = f"tok{count}"
        shutil.copytree(source / f"{name}_tokenizer", target / variant)
        config = read_config(target / variant)
        config.name = variant
        config.instance_group[0].count = count
        (target / variant / "config.pbtxt").write_text(to_pbtxt(config))
        variants.append(variant)
    return variants


def drive(url: str, model: str, texts: list[str], requests: int, concurrency: int) -> np.ndarray:
    """Latencies (ms) of ``requests`` single-text calls from ``concurrency`` closed loops."""
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []

    def loop(count: int, seed: int) -> None:
        client = grpcclient.InferenceServerClient(url)
        pick = random.Random(seed)  # noqa: S311  # nosec B311 - picks benchmark texts
        for _ in range(count):
            text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            text.set_data_from_numpy(np.array([[pick.choice(texts).encode()]], dtype=object))
            started = time.perf_counter()
            client.infer(model, [text])
            latencies.append((time.perf_counter() - started) * 1000.0)
        client.close()

    threads = [
        threading.Thread(target=loop, args=(requests // concurrency, seed))
        for seed in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return np.array(latencies)


def main() -> None:
    """Serve both copies, drive them in turn, print the table."""
    from tritonhf import data
    from tritonhf.server.launcher import ServerConfig, TritonServer
    from tritonhf.server.ports import free_ports

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repository"))
    parser.add_argument("--name", default="minilm")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    texts = data.sentences()
    with tempfile.TemporaryDirectory(prefix="batcher-stall-") as scratch:
        repo = Path(scratch) / "repo"
        variants = build_repo(args.repo, args.name, repo)
        http, grpc, metrics = free_ports(3)
        config = ServerConfig(repo=repo, http_port=http, grpc_port=grpc, metrics_port=metrics)
        print(f"{'step':<6} {'conc':>4} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} {'>=' + str(int(STALL_MS)) + ' ms':>9}")  # fmt: skip
        with TritonServer(config, log_path=Path(scratch) / "server.log"):
            for _ in range(args.rounds):
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    for variant in variants:
                        started = time.perf_counter()
                        found = drive(config.grpc_url, variant, texts, args.requests, concurrency)
                        rate = found.size / (time.perf_counter() - started)
                        print(
                            f"{variant:<6} {concurrency:>4} {rate:>7.0f} "
                            f"{np.percentile(found, 50):>7.2f} {np.percentile(found, 99):>7.1f} "
                            f"{found.max():>7.1f} {int((found >= STALL_MS).sum()):>9}",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
