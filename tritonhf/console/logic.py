"""What the ops console shows, as plain functions (no Streamlit, no server)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonhf.client import Protocol
from tritonhf.client.client import check_timeout, ensemble_steps
from tritonhf.client.connection import server_address
from tritonhf.console.metrics import NO_VALUE, ModelRates
from tritonhf.errors import ConfigError

STEP_SUFFIXES = ("_tokenizer", "_model", "_feedback")  # PipelineSpec's step names
HISTORY_POINTS = 120  # samples kept per chart (10 minutes at the default 5 s refresh)


@dataclass(frozen=True)
class ConsoleConfig:
    """Where the console finds Triton, its metrics and the benchmark reports."""

    grpc_url: str = "127.0.0.1:8001"
    http_url: str = "127.0.0.1:8000"
    protocol: Protocol = Protocol.GRPC
    metrics_url: str = "http://127.0.0.1:8002/metrics"
    bench_dir: Path = Path("artifacts/bench")
    timeout_s: float = 10.0
    host: str = "127.0.0.1"
    port: int = 8501

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be in 1..65535, got {self.port}")
        check_timeout(self.timeout_s)  # nan, inf and 2e6 started a page that then failed
        server_address(self.grpc_url, Protocol.GRPC)  # ConfigError now, not at first use
        server_address(self.http_url, Protocol.HTTP)
        if not self.metrics_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"metrics_url must start with http:// or https://, got {self.metrics_url!r}"
            )

    @property
    def url(self) -> str:
        """The server address for the configured protocol."""
        return self.grpc_url if self.protocol is Protocol.GRPC else self.http_url

    def args(self) -> list[str]:
        """The app script's command line (Streamlit passes it through after ``--``)."""
        return [
            f"--grpc-url={self.grpc_url}",
            f"--http-url={self.http_url}",
            f"--protocol={self.protocol.value}",
            f"--metrics-url={self.metrics_url}",
            f"--bench-dir={self.bench_dir}",
            f"--timeout={self.timeout_s}",
        ]


def pipeline_of(name: str) -> str:
    """The ensemble a step belongs to (``minilm_tokenizer`` -> ``minilm``)."""
    for suffix in STEP_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def ensembles_using(step: str, configs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The ensembles among ``configs`` (name -> model config) that run ``step``.

    Triton unloads them with it: tritonhf's and a team's own ones over the same steps alike.
    """
    return sorted(name for name, config in configs.items() if step in ensemble_steps(config))


def state_rows(states: Sequence[Any]) -> list[dict[str, str]]:
    """The repository index as table rows, grouped by pipeline (ensemble before its steps)."""

    def order(state: Any) -> tuple[str, int, str, str]:
        step = 0 if pipeline_of(state.name) == state.name else 1
        return (pipeline_of(state.name), step, state.name, state.version)

    return [
        {
            "pipeline": pipeline_of(s.name),
            "model": s.name,
            "version": s.version or NO_VALUE,
            "state": s.state,
            "ready": "✓" if s.ready else "✗",
            "reason": s.reason or "",
        }
        for s in sorted(states, key=order)
    ]


def summary_line(states: Sequence[Any]) -> str:
    """``3/4 models ready (UNAVAILABLE: x)``."""
    ready = sum(1 for s in states if s.ready)
    line = f"{ready}/{len(states)} models ready"
    down = sorted({s.name for s in states if not s.ready})
    return line + (f"; not ready: {', '.join(down)}" if down else "")


def append_history(
    history: list[dict[str, Any]],
    rates: Sequence[ModelRates],
    *,
    at: float,
    limit: int = HISTORY_POINTS,
) -> list[dict[str, Any]]:
    """``history`` plus one row per model at ``at`` (seconds), the oldest dropped past ``limit``.

    Rows hold ``t``, ``model``, ``requests/s``, ``latency ms`` and ``queue ms``; a model with
    no requests in the interval shows 0 ms so the lines stay continuous.
    """
    rows = [
        {
            "t": at,
            "model": r.model,
            "requests/s": r.requests_per_s,
            "latency ms": r.latency_ms or 0.0,
            "queue ms": r.queue_ms or 0.0,
        }
        for r in rates
    ]
    times = sorted({row["t"] for row in history} | {at})[-limit:]
    keep = set(times)
    return [row for row in [*history, *rows] if row["t"] in keep]


def chart_table(history: Sequence[dict[str, Any]], column: str) -> dict[str, dict[float, float]]:
    """One series per model for a line chart: ``{model: {t: value}}``."""
    series: dict[str, dict[float, float]] = {}
    for row in history:
        series.setdefault(row["model"], {})[row["t"]] = float(row[column])
    return series
