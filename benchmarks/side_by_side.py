"""Side by side, in one run: the ancestor, the in-process ceiling, the peers, and tritonhf.

    .venv/bin/python benchmarks/side_by_side.py            # ~8-10 min on 2 cores
    .venv/bin/python benchmarks/side_by_side.py --quick    # ~3 min: shorter windows, fewer points

Systems, all serving all-MiniLM-L6-v2 on the same corpus through the same closed-loop load
generator (benchmarks/closed_loop.py), one at a time:

- ``fastapi-torch``: the ancestor's design, FastAPI + PyTorch eager in one process;
- ``ort batch 1`` / ``ort sorted 32`` / ``ort arrival 32``: ONNX Runtime in this process, no
  server: one text per call, length-sorted batches of 32, and batches of 32 in corpus order;
- ``pytriton``, ``litserve``, ``bentoml``: the peers, each serving the same ONNX graph and
  tokenizer with its own batching, from its own venv under build/bench-venvs/;
- ``tritonhf grpc`` / ``tritonhf http``: ``tritonhf serve`` on a fresh export, via the client;
- with an exporter that has ``--layout``: ``tritonhf merged`` (the model step tokenizes);
- with one that has ``--precision`` / ``--optimize``: ``tritonhf fused`` and ``tritonhf int8``
  (and their in-process ceilings), served in the merged layout when there is one.

The ceilings the targets compare with are measured at the start and again at the end of the
run (rows ending "(end)"), and each target takes the higher of the two.

Prints the tables with ratios and the issue's targets, and saves results.json and table.md
under --out (default artifacts/bench/side-by-side).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess  # nosec B404
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from closed_loop import Measured, in_process, run_for  # noqa: E402
from peers import (  # noqa: E402
    Served,
    start_bentoml,
    start_fastapi,
    start_litserve,
    start_pytriton,
    start_tritonhf,
)
from servers.onnx_embedder import OnnxEmbedder  # noqa: E402

WORK = HERE.parent / "build" / "bench-work"
PEERS = ("pytriton", "litserve", "bentoml")
PEER_SESSIONS = {"default": "", "nospin": " nospin"}
"""A peer's ONNX Runtime session: ORT's defaults, or tritonhf's (no spinning); the row suffix."""
PEER_SESSION_NOTES = {
    "default": "ORT's defaults (threads spin)",
    "nospin": "rows ending 'nospin': spinning off, as tritonhf serves",
}
NAME = "minilm"
CEILING_KINDS = ("batch 1", "sorted 32", "arrival 32")
TARGET_KINDS = CEILING_KINDS[:2]
"""The ceilings the targets compare with."""
AT_END = " (end)"
"""Suffix of the in-process ceilings measured again after the served systems."""
SYSTEMS = ("ceiling", "fastapi", "pytriton", "litserve", "bentoml", "tritonhf", "variants")
"""What ``--systems`` picks from: the in-process ceilings, the peers, tritonhf, its variants."""


def log(message: str) -> None:
    """Progress on stderr with a timestamp, so the table on stdout stays clean."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def export_variants() -> dict[str, list[str]]:
    """Repository variants to serve: the default, plus fused/int8 when the exporter has them."""
    variants = {"default": []}
    help_text = subprocess.run(  # noqa: S603
        [str(Path(sys.executable).parent / "tritonhf"), "export", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # The merged layout (the model step tokenizes); the graph variants are served merged too,
    # so they compare with "merged" (same layout, default graph).
    layout = ["--layout", "merged"] if "--layout" in help_text else []
    if layout:
        variants["merged"] = layout
    if "--precision" in help_text:
        optimize = ["--optimize"] if "--optimize" in help_text else []
        variants["fused"] = ["--precision", "fp32", *optimize, *layout]
        # The gated int8: dynamic per-channel quantisation of the fused graph.
        variants["int8"] = ["--precision", "int8", *optimize, *layout]
    return variants


def export(variant: str, flags: list[str], *, reuse: bool, allow: bool = True) -> Path:
    """Export the default model into build/bench-work/<variant> (reused with --reuse)."""
    repo = WORK / variant
    stamp = repo / ".sources"
    if reuse and stamp.is_file() and stamp.read_text() == _sources_digest(flags):
        return repo
    if not allow:
        raise RuntimeError(f"no current export of {variant} (--quick does not export variants)")
    log(f"exporting {variant} {' '.join(flags)}")
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603
        [
            str(Path(sys.executable).parent / "tritonhf"),
            "export",
            "--name",
            NAME,
            "--repo",
            str(repo),
            *flags,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"export {variant} failed:\n{result.stdout[-800:]}{result.stderr[-800:]}"
        )
    log(f"exported {variant} in {time.perf_counter() - started:.0f} s")
    stamp.write_text(_sources_digest(flags))
    return repo


def _sources_digest(flags: list[str]) -> str:
    """What an export depends on: the exporter, the config writer and the step sources."""
    import hashlib

    digest = hashlib.sha256(" ".join(flags).encode())
    package = HERE.parent / "tritonhf"
    for folder in ("export", "repository", "backends"):
        for path in sorted((package / folder).glob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions of everything measured (the peers' from their venvs' metadata)."""
    from importlib import metadata

    found = {}
    for package in (
        "torch",
        "transformers",
        "onnxruntime",
        "tokenizers",
        "tritonclient",
        "fastapi",
        "uvicorn",
        "numpy",
    ):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "-"
    for venv, package in (
        ("pytriton", "nvidia-pytriton"),
        ("litserve", "litserve"),
        ("bentoml", "bentoml"),
    ):
        site = sorted((WORK.parent / "bench-venvs" / venv / "lib").glob("python*/site-packages"))
        dists = metadata.distributions(path=[str(s) for s in site])
        found[package] = next(
            (d.version for d in dists if d.metadata["Name"].lower() == package), "-"
        )
    found["triton server"] = "2.51.0 (nvidia-pytriton 0.7.0 wheel, both Triton systems)"
    return found


def ceilings(
    label: str,
    embedder: OnnxEmbedder,
    texts: Sequence[str],
    seconds: float,
    kinds: Sequence[str] = CEILING_KINDS,
) -> list[Measured]:
    """In-process ONNX Runtime: batch 1, length-sorted batches of 32, arrival-order batches."""
    # A corpus smaller than two batches (the long one) is cycled so that batches of 32 exist.
    texts = list(texts) * max(1, -(-64 // len(texts)))
    lengths = [len(e.ids) for e in embedder.tokenizer.encode_batch(texts)]
    ordered = [t for _, t in sorted(zip(lengths, texts, strict=True), key=lambda p: p[0])]
    sorted32 = [ordered[i : i + 32] for i in range(0, len(ordered) - 31, 32)]
    arrival32 = [list(texts[i : i + 32]) for i in range(0, len(texts) - 31, 32)]
    single = [[t] for t in texts]
    batches = {"batch 1": single, "sorted 32": sorted32, "arrival 32": arrival32}
    return [
        in_process(f"{label} {kind}", embedder.embed, batches[kind], seconds=seconds)
        for kind in kinds
    ]


def start_peer(
    peer: str, onnx: Path, tokenizer: Path, logs: Path, *, spinning: bool
) -> contextlib.AbstractContextManager[Served]:
    """Start one peer on free ports; its ONNX Runtime threads spin (ORT's default) or not."""
    from tritonhf.server.ports import free_ports

    if peer == "pytriton":
        return start_pytriton(onnx, tokenizer, free_ports(3), logs, log, spinning=spinning)
    start = {"litserve": start_litserve, "bentoml": start_bentoml}[peer]
    return start(onnx, tokenizer, free_ports(1)[0], logs, log, spinning=spinning)


def rss_mb(pid: int | None) -> float:
    """Resident memory of a server and its children, MiB."""
    from tritonhf.server.process import tree_rss_bytes

    return tree_rss_bytes(pid) / 2**20 if pid else float("nan")


def main() -> int:  # one linear script: the order of the runs is the point
    """Run everything, print the tables, save the results."""
    from tritonhf.bench.corpus import LengthStats, load_corpus
    from tritonhf.bench.runner import machine_info
    from tritonhf.export.source import DEFAULT_MODEL, resolve_model
    from tritonhf.server.ports import free_ports
    from tritonhf.telemetry import telemetry_off

    telemetry_off(os.environ)  # ONNX Runtime in this process and in every server it starts

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~3 min: 3 s windows, fewer points")
    parser.add_argument("--seconds", type=float, help="measured seconds per point (default 8)")
    parser.add_argument("--concurrency", default=None, help="default 1,8,32 (quick: 1,8)")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset to run",
    )
    parser.add_argument(
        "--peer-sessions",
        default=",".join(PEER_SESSIONS),
        help="the peers' ONNX Runtime sessions: 'default' (ORT's, threads spin) and/or "
        "'nospin' (tritonhf's option); default both, and target 5 takes the best",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse exports in build/bench-work")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/side-by-side"))
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    concurrencies = [
        int(c) for c in (args.concurrency or ("1,8" if args.quick else "1,8,32")).split(",")
    ]
    tritonhf_concurrencies = sorted({*concurrencies, 32})
    systems = set(args.systems.split(","))
    if unknown := systems - set(SYSTEMS):
        parser.error(
            f"--systems: unknown {', '.join(sorted(unknown))} (known: {','.join(SYSTEMS)})"
        )
    peer_sessions = args.peer_sessions.split(",")
    if unknown := set(peer_sessions) - set(PEER_SESSIONS):
        parser.error(f"--peer-sessions: unknown {', '.join(sorted(unknown))}")
    corpora = ["short", "long"] if args.quick else ["short", "long", "mixed"]
    logs = args.out / "logs"
    reuse = args.reuse or args.quick

    meta = machine_info()
    source = resolve_model(DEFAULT_MODEL)
    variants = export_variants() if "variants" in systems else {"default": []}
    repos: dict[str, Path] = {}
    for variant, flags in variants.items():
        try:
            # --quick keeps to its time budget: a variant is measured only if already exported.
            allow = variant == "default" or not args.quick
            repos[variant] = export(variant, flags, reuse=reuse, allow=allow)
        except RuntimeError as exc:
            if variant == "default":
                raise
            # A variant the acceptance gate refuses is a result too, not a reason to stop.
            log(f"skipping {variant}: {str(exc)[-400:]}")
            meta[f"variant {variant}"] = "refused by the export: " + str(exc)[-200:]
    variants = {v: f for v, f in variants.items() if v in repos}
    onnx = repos["default"] / f"{NAME}_model" / "1" / "model.onnx"
    tokenizer = repos["default"] / f"{NAME}_tokenizer" / "1" / "tokenizer.json"
    spec = json.loads((repos["default"] / NAME / "tritonhf.json").read_text())
    texts = {c: load_corpus(c) for c in corpora}
    embedder = OnnxEmbedder(onnx, tokenizer)
    stats = {
        c: LengthStats.of([len(e.ids) for e in embedder.tokenizer.encode_batch(t)])
        for c, t in texts.items()
    }
    meta["model"] = (
        f"sentence-transformers/all-MiniLM-L6-v2 (offline package, {source.path}), "
        f"ONNX opset {spec.get('onnx', {}).get('opset')}"
    )
    meta["batching"] = "peers: max batch 32; tritonhf: its export defaults (see config.pbtxt)"
    meta["peer sessions"] = "; ".join(PEER_SESSION_NOTES[s] for s in peer_sessions)
    for corpus, stat in stats.items():
        meta[f"corpus {corpus}"] = stat.line()
    meta["window"] = f"{seconds:.0f} s measured after 1 s warm-up per point"
    results: list[Measured] = []
    rss: dict[str, float] = {}

    def record(measured: Measured) -> None:
        results.append(measured)
        log(
            f"{measured.system:<28} c{measured.concurrency:<3} {measured.throughput:8.1f}/s "
            f"p50 {measured.p50_ms:6.1f} ms p99 {measured.p99_ms:7.1f} ms err {measured.errors}"
        )

    def sweep(
        system: str,
        make_call: Callable[[], Callable[[str], object]],
        corpus: str,
        levels: Sequence[int],
    ) -> None:
        for concurrency in levels:
            record(
                run_for(system, make_call, texts[corpus], concurrency=concurrency, seconds=seconds)
            )

    if "ceiling" in systems:
        for corpus in corpora:
            for m in ceilings(f"ort {corpus}", embedder, texts[corpus], seconds):
                record(m)
        # The same graph with the session options tritonhf serves it with (no spinning): the
        # targets take the better of the two ceilings.
        tuned = OnnxEmbedder(onnx, tokenizer, spinning=False)
        for m in ceilings("ort-nospin short", tuned, texts["short"], seconds, TARGET_KINDS):
            record(m)
        for variant in variants:
            if variant not in ("default", "merged"):  # merged serves the default graph
                graph = OnnxEmbedder(
                    repos[variant] / f"{NAME}_model" / "1" / "model.onnx", tokenizer
                )
                for m in ceilings(
                    f"ort {variant} short", graph, texts["short"], seconds, TARGET_KINDS
                ):
                    record(m)
    if "fastapi" in systems:
        with start_fastapi(source.path, free_ports(1)[0], logs) as served:
            sweep("fastapi-torch", served.make_call, "short", concurrencies)
            rss["fastapi-torch"] = rss_mb(served.pid)
    for peer in (p for p in PEERS if p in systems):
        for session in peer_sessions:  # a peer's two sessions back to back: same machine state
            name = peer + PEER_SESSIONS[session]
            with start_peer(
                peer, onnx, tokenizer, logs / session, spinning=session == "default"
            ) as served:
                sweep(name, served.make_call, "short", concurrencies)
                rss[name] = rss_mb(served.pid)
    for variant in variants if ("tritonhf" in systems or "variants" in systems) else []:
        if variant == "default" and "tritonhf" not in systems:
            continue
        with start_tritonhf(repos[variant], logs, f"tritonhf-{variant}") as (grpc, http):
            label = "tritonhf" if variant == "default" else f"tritonhf {variant}"
            sweep(f"{label} grpc", grpc.make_call, "short", tritonhf_concurrencies)
            if variant == "default":
                sweep(f"{label} http", http.make_call, "short", concurrencies)
            if variant in ("default", "merged"):
                for corpus in corpora[1:]:
                    sweep(f"{label} grpc {corpus}", grpc.make_call, corpus, [1, 8])
            rss[label] = rss_mb(grpc.pid)
    if "ceiling" in systems:
        # The ceilings the targets use, measured again: the targets take the higher of the two,
        # so a quiet or busy moment at the start of the pass does not decide them alone.
        for corpus in corpora:
            kinds = TARGET_KINDS if corpus == "short" else ("batch 1",)
            for m in ceilings(f"ort {corpus}", embedder, texts[corpus], seconds, kinds):
                record(replace(m, system=m.system + AT_END))
        for m in ceilings("ort-nospin short", tuned, texts["short"], seconds, TARGET_KINDS):
            record(replace(m, system=m.system + AT_END))

    meta["load average after"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    meta.update(versions())  # after the runs: a peer's venv may be created by its first run
    report = render(results, rss, meta, corpora)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(report + "\n", encoding="utf-8")
    if any(not m.system.startswith("ort") for m in results):  # a served system to plot
        plot(results, args.out / "side-by-side.png")
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "rss_mb": rss,
                "results": [{**asdict(m), "throughput": m.throughput} for m in results],
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    log(f"saved {args.out / 'table.md'} and {args.out / 'results.json'}")
    return 0


def plot(results: Sequence[Measured], path: Path) -> Path:
    """Throughput vs p99 per served system on the short corpus (the in-process rows are not)."""
    from tritonhf.bench.report import BenchPoint, plot_points

    points = [
        BenchPoint(
            config=m.system,
            protocol="closed loop",
            concurrency=m.concurrency,
            throughput=m.throughput,
            p50_ms=m.p50_ms,
            p90_ms=m.p99_ms,
            p99_ms=m.p99_ms,
            avg_ms=m.p50_ms,
        )
        for m in results
        if not m.system.startswith("ort")
        and m.requests
        and m.system.split()[-1] not in ("long", "mixed")
    ]
    return plot_points(points, path, title="side by side: short corpus, one text per request")


def _find(
    results: Sequence[Measured], system: str, concurrency: int | None = None
) -> Measured | None:
    for m in results:
        if m.system == system and (concurrency is None or m.concurrency == concurrency):
            return m
    return None


def render(
    results: Sequence[Measured], rss: dict[str, float], meta: dict[str, str], corpora: list[str]
) -> str:
    """Markdown: the meta, one table with ratios, and the issue's targets with numbers."""
    ancestor = {m.concurrency: m for m in results if m.system == "fastapi-torch"}
    lines = ["## Side by side", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += [
        "",
        "| system | concurrency / batch | texts/s | p50 ms | p99 ms | errors | x ancestor "
        "| x best ort batch 1 | RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        base = ancestor.get(m.concurrency)
        x_anc = f"{m.throughput / base.throughput:.2f}" if base and base.throughput else "-"
        # The targets' ceiling for the row's corpus: the best batch-1 run, start or end.
        corpus = next((c for c in corpora[1:] if c in m.system.split()), corpora[0])
        reference = _best_ceiling(results, "batch 1", corpus=corpus)
        x_ort = f"{m.throughput / reference.throughput:.2f}" if reference else "-"
        # The longest system name the row starts with ("tritonhf int8", not "tritonhf").
        owners = sorted((k for k in rss if m.system.startswith(k)), key=len, reverse=True)
        memory = f"{rss[owners[0]]:.0f}" if owners else ""
        lines.append(
            f"| {m.system} | {m.concurrency} | {m.throughput:.1f} | {m.p50_ms:.1f} | "
            f"{m.p99_ms:.1f} | {m.errors} | {x_anc} | {x_ort} | {memory} |"
        )
    lines += ["", "## Targets (issue 4)", "", *targets(results, rss)]
    return "\n".join(lines)


def _ratio(a: Measured | None, b: Measured | None, field: str = "throughput") -> float:
    if a is None or b is None or not float(getattr(b, field)):
        return float("nan")
    return float(getattr(a, field)) / float(getattr(b, field))


def _best_ceiling(
    results: Sequence[Measured], kind: str, *, corpus: str = "short", latency: bool = False
) -> Measured | None:
    """The best in-process ceiling: ORT's defaults or tritonhf's options, start or end of pass."""
    names = {f"{ort} {corpus} {kind}{end}" for ort in ("ort", "ort-nospin") for end in ("", AT_END)}
    found = [m for m in results if m.system in names]
    if latency:
        return min(found, key=lambda m: m.p50_ms, default=None)
    return max(found, key=lambda m: m.throughput, default=None)


def targets(results: Sequence[Measured], rss: dict[str, float]) -> list[str]:
    """Each target of the issue: measured ratio, bound, met / not met."""

    def line(number: str, text: str, value: float, bound: float, *, lower: bool = False) -> str:
        if value != value:  # nan: not measured in this run
            return f"- {number}. {text}: not measured in this run"
        met = value <= bound if lower else value >= bound
        sign = "<=" if lower else ">="
        verdict = "met" if met else "NOT met"
        return f"- {number}. {text}: **{value:.2f}** (target {sign} {bound}) -> {verdict}"

    f = lambda s, c=None: _find(results, s, c)  # noqa: E731
    # The graph variants are served in the merged layout: compare them with its default graph.
    graph_baseline = "tritonhf merged" if f("tritonhf merged grpc", 8) else "tritonhf"
    out = []
    for system in ("tritonhf", "tritonhf merged"):
        if f(f"{system} grpc", 1) is None:
            continue
        out += [
            line(
                "1a",
                f"{system} gRPC c8 / in-process ORT batch 1 throughput (better of the two)",
                _ratio(f(f"{system} grpc", 8), _best_ceiling(results, "batch 1")),
                0.95,
            ),
            line(
                "1b",
                f"{system} gRPC c1 p50 / in-process batch-1 p50",
                _ratio(
                    f(f"{system} grpc", 1),
                    _best_ceiling(results, "batch 1", latency=True),
                    "p50_ms",
                ),
                1.3,
                lower=True,
            ),
            line(
                "2",
                f"{system} gRPC c32 / in-process length-sorted batches of 32",
                _ratio(f(f"{system} grpc", 32), _best_ceiling(results, "sorted 32")),
                0.8,
            ),
        ]
    out += [
        line(
            "3a",
            f"tritonhf int8 gRPC c8 / {graph_baseline} (fp32) gRPC c8",
            _ratio(f("tritonhf int8 grpc", 8), f(f"{graph_baseline} grpc", 8)),
            2.0,
        ),
        line(
            "3b",
            f"tritonhf fused fp32 gRPC c8 / {graph_baseline} (default graph) gRPC c8",
            _ratio(f("tritonhf fused grpc", 8), f(f"{graph_baseline} grpc", 8)),
            1.3,
        ),
    ]
    best = max(
        (
            m
            for m in results
            if m.concurrency == 8
            and m.system.startswith("tritonhf")
            and "grpc" in m.system
            and m.system.split()[-1] == "grpc"
        ),
        key=lambda m: m.throughput,
        default=None,
    )
    out += [
        line(
            "4a",
            f"best tritonhf ({best.system if best else '-'}) c8 / fastapi-torch c8 req/s",
            _ratio(best, f("fastapi-torch", 8)),
            6.0,
        ),
        line(
            "4b",
            "its p99 / fastapi-torch p99 at c8",
            _ratio(best, f("fastapi-torch", 8), "p99_ms"),
            0.2,
            lower=True,
        ),
    ]
    # Every peer counts, errors or not: a peer that fails requests is still a user's choice.
    # ... and with either session: the best of ORT's defaults and tritonhf's option.
    peer_rows = [p + suffix for p in PEERS for suffix in PEER_SESSIONS.values()]
    peers8 = [m for m in (f(p, 8) for p in peer_rows) if m]
    peers1 = [m for m in (f(p, 1) for p in peer_rows) if m]
    best_peer8 = max(peers8, key=lambda m: m.throughput, default=None)
    best_peer1 = min(peers1, key=lambda m: m.p50_ms, default=None)
    out += [
        line(
            "5a",
            f"tritonhf gRPC c8 / best peer c8 ({best_peer8.system if best_peer8 else '-'})",
            _ratio(f("tritonhf grpc", 8), best_peer8),
            2.0,
        ),
        line(
            "5b",
            f"tritonhf gRPC c1 p50 / best peer p50 ({best_peer1.system if best_peer1 else '-'})",
            _ratio(f("tritonhf grpc", 1), best_peer1, "p50_ms"),
            0.5,
            lower=True,
        ),
    ]
    for system in ("tritonhf", "tritonhf merged"):
        for number, corpus in (("6a", "long"), ("6b", "mixed")):
            if f(f"{system} grpc {corpus}", 8) is not None:
                out.append(
                    line(
                        number,
                        f"{corpus} texts: {system} gRPC c8 / in-process batch 1 ({corpus})",
                        _ratio(
                            f(f"{system} grpc {corpus}", 8),
                            _best_ceiling(results, "batch 1", corpus=corpus),
                        ),
                        0.95,
                    )
                )
    memory = rss.get("tritonhf", float("nan"))
    out.append(
        line(
            "7",
            "tritonhf server RSS, GiB (Triton + stubs, after the runs)",
            memory / 1024,
            1.5,
            lower=True,
        )
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
