"""Benchmark results: parse perf_analyzer's CSV, save ours, plot, and summarise in markdown."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tritonhf.bench.perf_analyzer import BenchError

# perf_analyzer's CSV columns (latencies in microseconds) and our names for them.
_PA_COLUMNS = {
    "Concurrency": "concurrency",
    "Inferences/Second": "throughput",
    "p50 latency": "p50_us",
    "p90 latency": "p90_us",
    "p99 latency": "p99_us",
    "Server Queue": "queue_us",
    "Server Compute Infer": "compute_us",
    "Network+Server Send/Recv": "send_recv_us",
}
# The average latency is not a column of its own: it is the sum of these components.
_PA_COMPONENTS = (
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
)


@dataclass(frozen=True)
class BenchPoint:
    """One measured point: a configuration at one concurrency."""

    config: str
    protocol: str
    concurrency: int
    throughput: float  # requests (one text each) per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    avg_ms: float
    queue_ms: float = math.nan  # server-side queueing, where the tool reports it
    compute_ms: float = math.nan  # server-side compute, where the tool reports it
    send_recv_ms: float = math.nan
    """perf_analyzer's "Network+Server Send/Recv": the rest of the server's time, the network
    and its frontend, and for an ensemble its steps' queueing (which Triton's statistics of an
    ensemble leave out of its queue and compute: its compute is its steps' compute)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise BenchError(f"concurrency must be >= 1, got {self.concurrency}")
        for name in ("throughput", "p50_ms", "p90_ms", "p99_ms", "avg_ms"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise BenchError(f"{name} must be a finite number >= 0, got {value}")


def parse_perf_csv(path: Path, *, config: str, protocol: str) -> list[BenchPoint]:
    """Read the points perf_analyzer wrote with ``-f`` (one row per concurrency)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise BenchError(f"cannot read perf_analyzer output {path}: {exc}") from None
    points = []
    for number, row in enumerate(rows, start=2):
        missing = [column for column in (*_PA_COLUMNS, *_PA_COMPONENTS) if column not in row]
        if missing:
            raise BenchError(f"{path} has no column(s) {missing}; is it perf_analyzer's -f CSV?")
        try:
            values = {ours: float(row[theirs]) for theirs, ours in _PA_COLUMNS.items()}
            values["avg_us"] = sum(float(row[column]) for column in _PA_COMPONENTS)
        except (TypeError, ValueError):
            raise BenchError(f"{path} line {number} has a non-numeric value: {row}") from None
        points.append(
            BenchPoint(
                config=config,
                protocol=protocol,
                concurrency=int(values["concurrency"]),
                throughput=values["throughput"],
                p50_ms=values["p50_us"] / 1e3,
                p90_ms=values["p90_us"] / 1e3,
                p99_ms=values["p99_us"] / 1e3,
                avg_ms=values["avg_us"] / 1e3,
                queue_ms=values["queue_us"] / 1e3,
                compute_ms=values["compute_us"] / 1e3,
                send_recv_ms=values["send_recv_us"] / 1e3,
            )
        )
    if not points:
        raise BenchError(f"{path} holds no measurement rows")
    return points


def write_points_csv(points: Sequence[BenchPoint], path: Path) -> Path:
    """Save points as a CSV with a header (the ops console reads these)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in fields(BenchPoint)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for point in points:
            writer.writerow(asdict(point))
    return path


def read_points_csv(path: Path) -> list[BenchPoint]:
    """Read a CSV written by `write_points_csv`."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    points = []
    for row in rows:
        try:
            points.append(
                BenchPoint(
                    config=row["config"],
                    protocol=row["protocol"],
                    concurrency=int(row["concurrency"]),
                    **{
                        # .get: a column newer than the file is unknown (NaN), not an error.
                        f.name: float(row.get(f.name, "nan"))
                        for f in fields(BenchPoint)
                        if f.name not in ("config", "protocol", "concurrency")
                    },
                )
            )
        except (KeyError, ValueError) as exc:
            raise BenchError(f"{path}: unusable row {row} ({exc})") from None
    return points


def plot_points(points: Sequence[BenchPoint], path: Path, *, title: str = "") -> Path:
    """Throughput against p99 latency, one line per configuration (points by concurrency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if not points:
        raise BenchError("no points to plot")
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=100)
    series: dict[str, list[BenchPoint]] = {}
    for point in points:
        series.setdefault(f"{point.config} ({point.protocol})", []).append(point)
    for label, rows in series.items():
        rows = sorted(rows, key=lambda p: p.concurrency)
        axes.plot([p.p99_ms for p in rows], [p.throughput for p in rows], marker="o", label=label)
        for p in rows:
            axes.annotate(
                f"c{p.concurrency}",
                (p.p99_ms, p.throughput),
                fontsize=7,
                alpha=0.7,
                textcoords="offset points",
                xytext=(3, 3),
            )
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (requests/s, one text each)")
    axes.set_xscale("log")
    # Plain millisecond labels (the defaults read "4.2x10^1"); within one decade the minor
    # ticks carry the labels, over several only the powers of ten do.
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    latencies = [p.p99_ms for p in points if p.p99_ms > 0]
    narrow = bool(latencies) and max(latencies) < 10 * min(latencies)
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(plain if narrow else matplotlib.ticker.NullFormatter())
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title or "throughput vs p99 latency", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def markdown_table(points: Sequence[BenchPoint], *, baseline: str | None = None) -> str:
    """A markdown table of the points; with ``baseline``, throughput ratios against it."""
    base = {(p.protocol, p.concurrency): p.throughput for p in points if p.config == baseline}
    header = "| configuration | protocol | concurrency | req/s | p50 ms | p90 ms | p99 ms |"
    rule = "|---|---|---:|---:|---:|---:|---:|"
    if baseline:
        header += f" x {baseline} |"
        rule += "---:|"
    lines = [header, rule]
    for p in points:
        line = (
            f"| {p.config} | {p.protocol} | {p.concurrency} | {p.throughput:.1f} | "
            f"{p.p50_ms:.1f} | {p.p90_ms:.1f} | {p.p99_ms:.1f} |"
        )
        if baseline:
            reference = base.get((p.protocol, p.concurrency))
            line += f" {p.throughput / reference:.2f} |" if reference else " - |"
        lines.append(line)
    return "\n".join(lines)
