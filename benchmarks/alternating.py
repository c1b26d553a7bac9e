"""Timing shared by the placement benchmarks: alternate rounds, report the best rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def alternate(
    functions: dict[str, Callable[[Any], Any]], feeds: Sequence[Any], rounds: int
) -> dict[str, list[float]]:
    """Items/s of each function over ``feeds``, run in turn for ``rounds`` rounds."""
    runs: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.perf_counter()
            for feed in feeds:
                function(feed)
            runs[name].append(len(feeds) / (time.perf_counter() - started))
    return runs


def print_rates(runs: dict[str, list[float]], *, base: str, label: str = "placement") -> None:
    """One line per function: its best rate and the ratio to ``base``'s best."""
    reference = max(runs[base])
    width = max(len(label), *(len(name) for name in runs))
    print(f"{label:<{width}} {'best sentences/s':>17} {'ratio':>6}")
    for name, rates in runs.items():
        print(f"{name:<{width}} {max(rates):>17.1f} {max(rates) / reference:>6.2f}")
