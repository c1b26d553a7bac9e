"""The benchmark suite: perf_analyzer sweeps over a served model (``tritonhf bench``)."""

from tritonhf.bench.corpus import LengthStats, load_corpus, token_lengths, write_input_data
from tritonhf.bench.perf_analyzer import (
    BenchError,
    BenchOptionError,
    PerfRun,
    find_perf_analyzer,
)
from tritonhf.bench.report import BenchPoint, parse_perf_csv, plot_points, write_points_csv
from tritonhf.bench.runner import BenchOptions, BenchReport, run_bench

__all__ = [
    "BenchError",
    "BenchOptionError",
    "BenchOptions",
    "BenchPoint",
    "BenchReport",
    "LengthStats",
    "PerfRun",
    "find_perf_analyzer",
    "load_corpus",
    "parse_perf_csv",
    "plot_points",
    "run_bench",
    "token_lengths",
    "write_input_data",
    "write_points_csv",
]
