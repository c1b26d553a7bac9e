"""Tuning by measurement: serve several configurations of one export side by side and sweep.

    .venv/bin/python benchmarks/tune.py --variants base,nospin,nospin_group [--corpus short]

Each variant is a renamed copy of the exported pipeline (``<variant>``, ``<variant>_tokenizer``,
``<variant>_model``) with its config.pbtxt edited as listed in VARIANTS, and the current
Python-backend sources; all are loaded in ONE server and `tritonhf bench` alternates between
them at every concurrency, so each comparison sees the same machine state. ``base`` is the
export's own config: the defaults of the tree that exported it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

NAME = "minilm"
# Edits per variant: "<step>.<what>" -> value. step: model | tokenizer.
# what: instances, delay_us, preferred (comma list), or any string parameter of the step.
VARIANTS: dict[str, dict[str, str]] = {
    "base": {},
    # The pre-tuning defaults, whatever the export's are: spinning ORT threads, no grouping.
    "old": {"model.intra_op_spinning": "1", "model.length_group_slack": "0"},
    "spin": {"model.intra_op_spinning": "1"},
    "nospin": {"model.intra_op_spinning": "0", "model.length_group_slack": "0"},
    "t1": {"model.intra_op_threads": "1", "model.intra_op_spinning": "0"},
    "group": {"model.length_group_slack": "1.5", "model.intra_op_spinning": "0"},
    "group13": {"model.length_group_slack": "1.3", "model.intra_op_spinning": "0"},
    "group2": {"model.length_group_slack": "2.0", "model.intra_op_spinning": "0"},
    "nogroup": {"model.length_group_slack": "0"},
    # Neither rule: one ORT call per dynamic batch, every request padded to the longest.
    "padmax": {"model.length_group_slack": "0", "model.run_token_budget": "0"},
    "delay500": {"model.delay_us": "500"},
    "delay2000": {"model.delay_us": "2000"},
    "tokdelay500": {"tokenizer.delay_us": "500"},
    "model2x1": {"model.instances": "2", "model.intra_op_threads": "1"},
    "tok2": {"tokenizer.instances": "2"},
    "both": {"model.instances": "2", "model.intra_op_threads": "1", "tokenizer.instances": "2"},
    "t2x2": {"model.instances": "2", "model.intra_op_threads": "2"},
    # One thread per instance while the other is busy, every core while it is idle.
    "wide": {"model.widen_when_idle": "1"},
    "narrow": {"model.widen_when_idle": "0"},
    # Padded tokens per ONNX Runtime call (0: one call per length group, however large).
    "budget0": {"model.run_token_budget": "0"},
    "budget128": {"model.run_token_budget": "128"},
    "budget256": {"model.run_token_budget": "256"},
    "budget512": {"model.run_token_budget": "512"},
    # The --layout merged export (build/bench-work/merged, written by side_by_side.py).
    "merged": {"export.merged": "1"},
    "one": {"model.instances": "1", "model.intra_op_threads": "0", "tokenizer.instances": "1"},
    "preferred": {"model.preferred": "8,16,32"},
    # Triton's response cache on the ensemble (the server gets a 64 MiB local cache).
    "cache": {"ensemble.cache": "1"},
}


def edit_config(config: Any, edits: dict[str, str], step: str) -> None:
    """Apply one step's edits to its ModelConfig."""
    for key, value in edits.items():
        where, what = key.split(".", 1)
        if where != step:
            continue
        if what == "cache":
            config.response_cache.enable = value == "1"
        elif what == "instances":
            config.instance_group[0].count = int(value)
        elif what == "delay_us":
            config.dynamic_batching.max_queue_delay_microseconds = int(value)
        elif what == "preferred":
            del config.dynamic_batching.preferred_batch_size[:]
            config.dynamic_batching.preferred_batch_size.extend(int(v) for v in value.split(","))
        else:
            config.parameters[what].string_value = value


def build_repo(source: Path, target: Path, variants: list[str]) -> Path:
    """Write ``target`` with one renamed, edited copy of the pipeline per variant."""
    from tritonhf.repository.configs import parse_pbtxt, to_pbtxt

    shutil.rmtree(target, ignore_errors=True)
    for variant in variants:
        edits = VARIANTS[variant]
        # "export.<folder>": another export beside ``source`` (build/bench-work/<folder>).
        exports = [key.split(".", 1)[1] for key in edits if key.startswith("export.")]
        origin = source.parent / exports[0] if exports else source
        merged = not (origin / f"{NAME}_tokenizer").is_dir()
        # A step's model.py imports its class from the installed package: the copies run the
        # current code.
        for suffix, step in (("", "ensemble"), ("_tokenizer", "tokenizer"), ("_model", "model")):
            if merged and step == "tokenizer":
                continue
            shutil.copytree(origin / f"{NAME}{suffix}", target / f"{variant}{suffix}")
            path = target / f"{variant}{suffix}" / "config.pbtxt"
            config = parse_pbtxt(path.read_text())
            config.name = f"{variant}{suffix}"
            if step == "ensemble":
                for entry in config.ensemble_scheduling.step:
                    entry.model_name = entry.model_name.replace(NAME, variant, 1)
                edit_config(config, edits, step)
            else:
                if "pipeline" in config.parameters:
                    config.parameters["pipeline"].string_value = variant
                edit_config(config, edits, step)
            path.write_text(to_pbtxt(config))
    return target


@contextmanager
def cached_server(repo: Path) -> Iterator[tuple[str, str]]:
    """A server on ``repo`` with a local response cache (used only by models that enable it)."""
    from tritonhf.server.launcher import ServerConfig, TritonServer
    from tritonhf.server.ports import free_ports

    class CachedConfig(ServerConfig):
        def command(self, binary: Path, backend_dir: Path) -> list[str]:
            caches = binary.parent.parent / "caches"  # beside bin/ in the pytriton wheel
            return [
                *super().command(binary, backend_dir),
                f"--cache-directory={caches}",
                "--cache-config=local,size=67108864",
            ]

    http, grpc, metrics = free_ports(3)
    config = CachedConfig(repo=repo, http_port=http, grpc_port=grpc, metrics_port=metrics)
    with TritonServer(config, log_path=repo.parent / "bench-tune-server.log"):
        yield config.grpc_url, config.http_url


def main() -> int:
    """Build the variant repository, serve it, sweep, print the table."""
    from tritonhf.bench import BenchOptions, run_bench
    from tritonhf.bench.report import markdown_table

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--source", type=Path, default=HERE.parent / "build/bench-work/default")
    parser.add_argument("--variants", default="base,nospin,group")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--corpus", default="short")
    parser.add_argument("--protocol", default="grpc")
    parser.add_argument("--measurement-ms", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/tune"))
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    repo = build_repo(args.source, HERE.parent / "build" / "bench-tune-repo", variants)
    started = time.perf_counter()
    with cached_server(repo) as (url_grpc, url_http):
        report = run_bench(
            BenchOptions(
                models=tuple(variants),
                repo=repo,
                url_grpc=url_grpc,
                url_http=url_http,
                protocols=tuple(args.protocol.split(",")),
                concurrencies=tuple(int(c) for c in args.concurrency.split(",")),
                corpus=args.corpus,
                measurement_ms=args.measurement_ms,
                out=args.out,
            ),
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    print("variants: " + "; ".join(f"{v} = {VARIANTS[v] or 'export defaults'}" for v in variants))
    print(f"corpus {args.corpus}: {report.lengths.line() if report.lengths else '-'}")
    print(markdown_table(report.points, baseline=variants[0]))
    print(
        f"load average: {report.meta['load average (1/5/15 min)']} -> "
        f"{report.meta['load average after']}; {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
