"""Where the CPU goes: per-process CPU time of a served pipeline under closed-loop load (Linux).

    .venv/bin/python benchmarks/cpu_breakdown.py [--repo build/bench-work/default]
        [--concurrency 1,8,32] [--seconds 15] [--corpus short]

Serves ``--repo`` with ``tritonhf``'s own server, drives it with the harness's closed loop
(benchmarks/closed_loop.py, gRPC, this process) and reads each process's CPU time from /proc
before and after every window: Triton, each Python-backend stub (one per model instance), and
this client. The steps' recording threads (the only threads at nice 19) are also summed on
their own. Prints one markdown table per concurrency: cores used, and CPU ms per request.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from closed_loop import Call, run_for  # noqa: E402
from peers import start_tritonhf  # noqa: E402

from tritonhf.observability.background import RECORDING_NICE  # noqa: E402
from tritonhf.server.process import PROC, process_tree  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
INSTANCE = re.compile(rb"_\d+_\d+$")


def _stat_fields(path: Path) -> list[str]:
    # The command name (field 2) may hold spaces; everything after its ")" splits cleanly.
    return path.read_text().rsplit(")", 1)[1].split()


def _cpu(fields: list[str]) -> float:
    # utime + stime, in clock ticks (fields 14 and 15 of proc(5), counted from 1).
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, all its threads."""
    return _cpu(_stat_fields(PROC / str(pid) / "stat"))


def niced_seconds(pid: int, nice: int = RECORDING_NICE) -> float:
    """CPU time of the process's threads that run at ``nice`` (the recording threads)."""
    total = 0.0
    for task in (PROC / str(pid) / "task").iterdir():
        try:
            fields = _stat_fields(task / "stat")
        except OSError:  # the thread ended
            continue
        if int(fields[16]) == nice:
            total += _cpu(fields)
    return total


def process_label(pid: int) -> str:
    """``tritonserver``, or ``stub <model instance>`` for a Python-backend stub."""
    argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    if argv[0].endswith(b"triton_python_backend_stub"):
        instance = next((a for a in argv if INSTANCE.search(a)), b"?")
        return f"stub {instance.decode()}"
    return Path(argv[0].decode()).name


def breakdown(
    pids: list[int],
    make_call: Callable[[], Call],
    texts: Sequence[str],
    concurrency: int,
    seconds: float,
) -> list[str]:
    """One window at ``concurrency``: the markdown table of where its CPU went."""
    before = {pid: cpu_seconds(pid) for pid in pids}
    niced_before = sum(niced_seconds(pid) for pid in pids)
    client_before = sum(os.times()[:2])
    started = time.perf_counter()
    measured = run_for(
        "cpu", make_call, texts, concurrency=concurrency, seconds=seconds, warmup_s=0.0
    )
    wall = time.perf_counter() - started
    rows = [(cpu_seconds(pid) - before[pid], process_label(pid)) for pid in pids]
    rows.sort(reverse=True)
    rows.append((sum(os.times()[:2]) - client_before, "client (this process, gRPC)"))
    recording = sum(niced_seconds(pid) for pid in pids) - niced_before
    requests = max(measured.requests, 1)
    total = sum(seconds for seconds, _ in rows)
    lines = [
        f"### c{concurrency}: {measured.throughput:.1f} req/s, {total / wall:.2f} of "
        f"{len(os.sched_getaffinity(0))} cores busy",
        "",
        "| process | cores | CPU ms per request |",
        "|---|---:|---:|",
    ]
    recording_row = f"of which the steps' recording threads (nice {RECORDING_NICE})"
    for used, name in [*rows, (recording, recording_row)]:
        if used >= 0.01:
            lines.append(f"| {name} | {used / wall:.2f} | {used / requests * 1e3:.2f} |")
    return [*lines, ""]


def main() -> int:
    """Serve, sweep, print."""
    from tritonhf.bench.corpus import load_corpus

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repo", type=Path, default=HERE.parent / "build/bench-work/default")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--corpus", default="short")
    args = parser.parse_args()
    if not PROC.is_dir():
        parser.error("reads /proc: Linux only")
    if not args.repo.is_dir():
        parser.error(f"no repository at {args.repo}: `tritonhf export --repo {args.repo}` first")
    texts = load_corpus(args.corpus)
    logs = HERE.parent / "build" / "bench-cpu-logs"
    with start_tritonhf(args.repo, logs, "cpu-breakdown") as (grpc, _):
        if grpc.pid is None:
            raise RuntimeError("the server has no process id")
        run_for("warm-up", grpc.make_call, texts, concurrency=8, seconds=3)
        pids = process_tree(grpc.pid)
        print(f"## Where the CPU goes: {args.repo}, corpus {args.corpus}, {args.seconds:.0f} s\n")
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            print("\n".join(breakdown(pids, grpc.make_call, texts, concurrency, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
