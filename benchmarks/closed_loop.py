"""A closed-loop load generator by duration, for any system: each worker sends, awaits, repeats.

Every system in the harness is driven by this same loop on the same corpus, from the same
process, so client-side costs are alike; per-worker clients come from a factory because some
clients (HTTP sessions) must not be shared between threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

Call = Callable[[str], object]


@dataclass(frozen=True)
class Measured:
    """One system at one concurrency."""

    system: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def throughput(self) -> float:
        """Successful requests (one text each) per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def run_for(
    system: str,
    make_call: Callable[[], Call],
    texts: Sequence[str],
    *,
    concurrency: int,
    seconds: float,
    warmup_s: float = 1.0,
) -> Measured:
    """Run ``concurrency`` workers for ``warmup_s`` (discarded) then ``seconds`` (measured).

    Throughput counts the requests completed inside the measured window; workers stop sending
    at its end, and replies after it are not counted.
    """
    calls = [make_call() for _ in range(concurrency)]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start_at = time.perf_counter() + warmup_s
    stop_at = start_at + seconds

    def worker(index: int) -> None:
        call, position = calls[index], index * 37
        own: list[float] = []
        failed = 0
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                break
            try:
                call(texts[position % len(texts)])
                ok = True
            except Exception:  # noqa: BLE001  # every failure counts, whatever its type
                ok = False
            done = time.perf_counter()
            position += 1
            # Count what completes inside the window, whenever it was sent: dropping requests
            # that straddle the window start would undercount slow points.
            if start_at <= done <= stop_at:
                if ok:
                    own.append(done - sent)
                else:
                    failed += 1
        with lock:
            latencies.extend(own)
            errors[0] += failed

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker, i) for i in range(concurrency)]:
            future.result()
    array = np.asarray(latencies) * 1e3
    return Measured(
        system=system,
        concurrency=concurrency,
        requests=len(latencies),
        errors=errors[0],
        seconds=seconds,
        p50_ms=float(np.percentile(array, 50)) if len(array) else float("nan"),
        p99_ms=float(np.percentile(array, 99)) if len(array) else float("nan"),
    )


def in_process(
    system: str,
    run_batch: Callable[[Sequence[str]], object],
    batches: Sequence[Sequence[str]],
    *,
    seconds: float,
    warmup_s: float = 0.5,
) -> Measured:
    """Run batches back to back in this thread; throughput counts texts, latency is per call."""
    stop_warmup = time.perf_counter() + warmup_s
    index = 0
    while time.perf_counter() < stop_warmup:
        run_batch(batches[index % len(batches)])
        index += 1
    latencies: list[float] = []
    texts = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = batches[index % len(batches)]
        sent = time.perf_counter()
        run_batch(batch)
        latencies.append(time.perf_counter() - sent)
        texts += len(batch)
        index += 1
    elapsed = time.perf_counter() - started
    array = np.asarray(latencies) * 1e3
    return Measured(
        system=system,
        concurrency=len(batches[0]),
        requests=texts,
        errors=0,
        seconds=elapsed,
        p50_ms=float(np.percentile(array, 50)),
        p99_ms=float(np.percentile(array, 99)),
    )
