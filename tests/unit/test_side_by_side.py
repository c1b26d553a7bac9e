"""The side-by-side harness's table: each ratio against the ceiling its targets use."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("side_by_side", BENCHMARKS / "side_by_side.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("side_by_side", module)
    spec.loader.exec_module(module)
    return module


def test_the_ratio_column_uses_the_best_ceiling_of_the_rows_corpus() -> None:
    sbs = harness()

    def run(system: str, concurrency: int, per_second: float) -> object:
        return sbs.Measured(system, concurrency, int(per_second * 10), 0, 10.0, 5.0, 9.0)

    results = [
        run("ort short batch 1", 1, 100.0),
        run("ort long batch 1", 1, 20.0),
        run("tritonhf grpc", 8, 90.0),
        run("tritonhf grpc long", 8, 22.0),
        run("ort short batch 1" + sbs.AT_END, 1, 120.0),  # quieter at the end: the targets' one
        run("ort long batch 1" + sbs.AT_END, 1, 10.0),
    ]

    table = sbs.render(results, {}, {}, ["short", "long"])

    rows = {line.split("|")[1].strip(): line.split("|")[8].strip() for line in table.splitlines()
            if line.startswith("| ") and "---" not in line and "system" not in line}  # fmt: skip
    assert rows["tritonhf grpc"] == "0.75"  # 90 / 120, as target 1a
    assert rows["tritonhf grpc long"] == "1.10"  # 22 / 20: the long corpus's own ceiling
    assert rows["ort long batch 1"] == "1.00"
    assert "## Targets (issue 4)" in table
