"""A closed-loop load generator over the client: soak runs and benchmarks share it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tritonhf.client import TritonHFClient
from tritonhf.errors import ClientError


@dataclass(frozen=True)
class LoadResult:
    """What a run did: one latency per successful request, errors counted by type."""

    requests: int
    seconds: float
    latencies_s: tuple[float, ...]
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        """Requests that failed, of any type."""
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_s) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """Latency percentile ``q`` (0-100) of successful requests, in milliseconds."""
        return float(np.percentile(self.latencies_s, q) * 1e3) if self.latencies_s else float("nan")


def run_closed_loop(
    client: TritonHFClient,
    texts: Sequence[str],
    *,
    requests: int,
    concurrency: int,
    texts_per_request: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send ``requests`` requests of ``texts_per_request`` texts from ``concurrency`` workers.

    Each worker awaits its reply before sending its next request (a closed loop).
    """
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            started = time.perf_counter()
            try:
                start = index * texts_per_request
                client.embed(
                    [texts[i % len(texts)] for i in range(start, start + texts_per_request)]
                )
            except ClientError as exc:
                with lock:
                    errors[type(exc).__name__] += 1
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                done = len(latencies) + sum(errors.values())
            if on_progress is not None:
                on_progress(done)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return LoadResult(
        requests=requests,
        seconds=time.perf_counter() - started,
        latencies_s=tuple(latencies),
        errors=dict(errors),
    )


@dataclass(frozen=True)
class SoakReport:
    """A bounded soak: the load result and the server's memory across the run."""

    load: LoadResult
    rss_samples: tuple[int, ...]  # bytes, in completion order

    def _quarter_mean(self, which: int) -> float:
        size = max(len(self.rss_samples) // 4, 1)
        part = self.rss_samples[:size] if which == 0 else self.rss_samples[-size:]
        return float(np.mean(part)) if part else 0.0

    @property
    def rss_first_quarter_mb(self) -> float:
        """Mean server RSS over the first quarter of the run, MiB."""
        return self._quarter_mean(0) / 2**20

    @property
    def rss_last_quarter_mb(self) -> float:
        """Mean server RSS over the last quarter of the run, MiB."""
        return self._quarter_mean(3) / 2**20

    @property
    def rss_growth(self) -> float:
        """Relative growth from the first to the last quarter (0.05 = 5 %)."""
        first = self.rss_first_quarter_mb
        return self.rss_last_quarter_mb / first - 1 if first else 0.0

    def table(self) -> str:
        """A printable summary."""
        load = self.load
        rows = [
            ("requests", f"{load.requests:,}"),
            ("errors", f"{load.error_count} {load.errors or ''}".strip()),
            ("seconds", f"{load.seconds:.1f}"),
            ("throughput (req/s)", f"{load.throughput:.1f}"),
            (
                "p50 / p99 latency (ms)",
                f"{load.percentile_ms(50):.1f} / {load.percentile_ms(99):.1f}",
            ),
            ("server RSS first quarter (MiB)", f"{self.rss_first_quarter_mb:.0f}"),
            ("server RSS last quarter (MiB)", f"{self.rss_last_quarter_mb:.0f}"),
            ("RSS growth", f"{self.rss_growth:+.1%}"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def soak(
    client: TritonHFClient,
    texts: Sequence[str],
    *,
    requests: int,
    concurrency: int,
    server_pid: int,
    samples: int = 40,
    warmup: int = 0,
) -> SoakReport:
    """Run a closed loop while sampling the server's RSS (Triton plus its stubs).

    ``warmup`` requests run first, unmeasured: allocators and caches grow to their working
    size then, and that growth is not a leak.
    """
    from tritonhf.server.process import tree_rss_bytes

    if warmup:
        run_closed_loop(client, texts, requests=warmup, concurrency=concurrency)
    every = max(requests // samples, 1)
    rss: list[int] = []
    lock = threading.Lock()

    def sample(done: int) -> None:
        if done % every == 0:
            value = tree_rss_bytes(server_pid)
            with lock:
                rss.append(value)

    load = run_closed_loop(
        client, texts, requests=requests, concurrency=concurrency, on_progress=sample
    )
    return SoakReport(load=load, rss_samples=tuple(rss))
