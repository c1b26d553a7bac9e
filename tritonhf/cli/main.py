"""``tritonhf``: export, serve, and query HuggingFace models on Triton.

Each subcommand parses its flags and calls one package function; all logic lives there.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from tritonhf.errors import TritonHFError
from tritonhf.spec import (
    DEFAULT_MODEL_NAME,
    Layout,
    Precision,
    Runtime,
    Task,
    left_aligned,
    shown_label,
)

if TYPE_CHECKING:
    from tritonhf.client import ModelState, TritonHFClient

log = logging.getLogger("tritonhf")


def _add_client_flags(parser: argparse.ArgumentParser, *, model: bool = True) -> None:
    parser.add_argument(
        "--url", help="host:port of Triton (default: 127.0.0.1:8001 gRPC, :8000 HTTP)"
    )
    parser.add_argument(
        "--protocol", choices=["grpc", "http"], default="grpc", help="how to reach Triton"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    if model:
        parser.add_argument("--model", default=DEFAULT_MODEL_NAME, help="served ensemble name")


class _HelpWithDefaults(argparse.HelpFormatter):
    """``--help`` lines end with the option's default, unless the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        hidden = action.default is None or action.default is False
        if not text or "default" in text or hidden or action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to generate the CLI reference)."""
    parser = argparse.ArgumentParser(
        prog="tritonhf", description="Put a HuggingFace transformer into production on Triton."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    export = commands.add_parser(
        "export", help="export a model to ONNX and write a Triton repository"
    )
    export.add_argument(
        "model",
        nargs="?",
        default="default",
        metavar="MODEL",
        help="hub id or local folder (default: the offline all-MiniLM-L6-v2 package)",
    )
    export.add_argument(
        "--task",
        choices=[t.value for t in Task],
        help="default: from the model's config (*ForSequenceClassification -> classification)",
    )
    export.add_argument(
        "--name", default=DEFAULT_MODEL_NAME, help="ensemble name in the repository"
    )
    export.add_argument(
        "--repo", type=Path, default=Path("model_repository"), help="repository folder"
    )
    export.add_argument("--max-length", type=int, help="token limit (default: the model's own)")
    export.add_argument(
        "--max-batch-size", type=int, default=64, help="most texts per batch in every step"
    )
    export.add_argument(
        "--runtime",
        choices=[r.value for r in Runtime],
        default=Runtime.PYTHON_ONNX.value,
        help="what runs the model step: ONNX Runtime in the Python backend, Triton's onnxruntime "
        "or TensorRT backend (GPU image), or PyTorch in the Python backend",
    )
    export.add_argument(
        "--precision",
        choices=[p.value for p in Precision],
        default=Precision.FP32.value,
        help="fp16: GPUs; int8: dynamic quantization for CPUs. A variant that fails the "
        "acceptance gate against PyTorch is refused with the measured figures",
    )
    export.add_argument(
        "--layout",
        choices=[layout.value for layout in Layout],
        default=Layout.SPLIT.value,
        help="split: a tokenizer step feeds the model step; merged: the model step tokenizes "
        "too, one Python-backend hop fewer (python-onnx, python-torch)",
    )
    export.add_argument(
        "--optimize",
        action="store_true",
        help="fuse attention/LayerNorm/GELU with ONNX Runtime's transformer optimizer",
    )
    export.add_argument(
        "--opset",
        type=int,
        default=17,
        help="ONNX opset, 10-20 (torch's exporter writes <= 20, Triton 2.51 loads <= 21)",
    )
    export.add_argument("--atol", type=float, default=1e-4, help="max |ONNX - PyTorch| accepted")
    export.add_argument("--revision", help="hub commit/tag/branch to pin (default: main)")
    export.add_argument("--version", type=int, default=1, help="model version (hot reload)")
    export.add_argument(
        "--drift-reference",
        type=Path,
        metavar="FILE",
        help="texts whose token lengths and labels drift is measured against: a CSV with a "
        "'text' column (e.g. the training data) or one text per line (default: the package's "
        "sentence corpus)",
    )
    export.add_argument(
        "--gate-data",
        type=Path,
        metavar="FILE",
        help="texts the acceptance gate compares an --optimize/fp16/int8 variant on: a CSV with "
        "a 'text' column or one text per line, ideally of the model's domain (default: the "
        "package's sentence corpus)",
    )
    export.add_argument(
        "--max-queue-size",
        type=int,
        default=256,
        help="queued requests per step before rejecting (0: no limit)",
    )
    export.add_argument(
        "--queue-timeout-ms",
        type=int,
        default=5000,
        help="reject after queueing this long (0: off)",
    )
    export.add_argument(
        "--max-text-bytes", type=int, default=1 << 20, help="reject longer texts before tokenizing"
    )
    export.add_argument(
        "--allow-pickle-weights",
        action="store_true",
        help="load pytorch_model.bin (pickle runs code: only for sources you trust)",
    )
    _add_threshold_flags(export)

    train = commands.add_parser(
        "train",
        help="fine-tune a text classifier from a text,label CSV",
        description="Trains a sequence classifier (by default the head and the top 2 layers of "
        "the offline MiniLM) and saves a HuggingFace folder that `tritonhf export` accepts.",
    )
    train.add_argument(
        "--base",
        default="default",
        help="base model: hub id or local folder (default: the offline all-MiniLM-L6-v2 package)",
    )
    train.add_argument(
        "--data",
        type=Path,
        help="training CSV (text,label); without it, the sentiment dataset the package ships "
        "(the demo classifier's), and its held-out split unless --eval names another",
    )
    train.add_argument("--eval", type=Path, help="held-out CSV (text,label)")
    train.add_argument("--out", type=Path, required=True, help="output model folder")
    train.add_argument("--epochs", type=int, default=3, help="passes over the training data")
    train.add_argument("--batch-size", type=int, default=16, help="texts per training step")
    train.add_argument("--learning-rate", type=float, help="default: 2e-4 (head), 5e-5 (full)")
    train.add_argument("--seed", type=int, default=0, help="same seed, same data: same model")
    train.add_argument("--full-finetune", action="store_true", help="train every layer")
    train.add_argument(
        "--top-layers", type=int, default=2, help="encoder layers trained with the head (0: head)"
    )
    train.add_argument(
        "--max-length", type=int, default=128, help="tokens per training text (longer: cut)"
    )
    train.add_argument(
        "--class-weight",
        choices=["none", "balanced"],  # the values of tritonhf.train.ClassWeight
        default="none",
        help="balanced: each class counts as much in the loss however few rows it has (for "
        "imbalanced data)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an earlier training run")

    serve = commands.add_parser("serve", help="run Triton on a model repository until Ctrl-C")
    serve.add_argument(
        "--repo", type=Path, default=Path("model_repository"), help="the model repository"
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 exposes it)")
    serve.add_argument(
        "--http-host",
        help="bind address of the HTTP endpoint, if not --host: 127.0.0.1 keeps it local while "
        "gRPC serves the network (one deeply nested JSON request crashes Triton 2.51's HTTP)",
    )
    serve.add_argument("--http-port", type=int, default=8000, help="KServe v2 HTTP/REST")
    serve.add_argument("--grpc-port", type=int, default=8001, help="KServe v2 gRPC")
    serve.add_argument("--metrics-port", type=int, default=8002, help="Prometheus /metrics")
    serve.add_argument("--log-file", type=Path, help="write the server log here instead of stdout")
    serve.add_argument(
        "--log-text",
        choices=["off", "hash", "raw"],
        help="what the steps' JSON request logs say about input text (default: off, or "
        "$TRITONHF_LOG_TEXT); hash logs a SHA-256 prefix, raw its first 1,000 characters",
    )
    serve.add_argument(
        "--model-control",
        choices=["none", "explicit", "poll"],
        default="explicit",
        help="explicit (default): every model loads at start, and the load/unload API allows "
        "`tritonhf deploy` and draining in-flight requests on shutdown",
    )
    serve.add_argument(
        "--restarts",
        type=int,
        default=5,
        metavar="N",
        help="start Triton again when it exits on its own (a crash), at most N times in 5 "
        "minutes; 0: never",
    )
    serve.add_argument(
        "--stub-hang-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="stop a Python-backend step that has run one batch this long (a deadlock Triton "
        "does not see) and reload it; 0: never",
    )

    embed = commands.add_parser("embed", help="embed texts with a served model")
    embed.add_argument("texts", nargs="+", metavar="TEXT")
    embed.add_argument("--json", action="store_true", help="print JSON with full vectors")
    _add_client_flags(embed, model=False)
    embed.add_argument(
        "--model",
        help=f"served embedding model (default: {DEFAULT_MODEL_NAME} if served, else the one "
        "the server serves, if only one)",
    )

    classify = commands.add_parser("classify", help="classify texts with a served classifier")
    classify.add_argument("texts", nargs="+", metavar="TEXT")
    classify.add_argument("--top-k", type=int, help="also list the k most likely classes")
    classify.add_argument("--json", action="store_true", help="print JSON")
    _add_client_flags(classify, model=False)
    classify.add_argument(
        "--model", help="served classifier (default: the one the server serves, if only one)"
    )

    health = commands.add_parser("health", help="server liveness/readiness and model readiness")
    _add_client_flags(health)

    deploy = commands.add_parser(
        "deploy",
        help="hot-reload a pipeline's steps (server in --model-control explicit)",
        description="Load the newest (or --version N) tokenizer and model steps of MODEL while "
        "traffic flows; a version that fails to load is refused and the old one keeps serving. "
        "Sends $TRITONHF_ADMIN_KEY, which a server started with it requires.",
    )
    deploy.add_argument("--version", type=int, help="pin this version (default: the newest)")
    _add_client_flags(deploy)

    validate = commands.add_parser(
        "validate",
        help="acceptance gate: a served ensemble against its PyTorch model",
        description="Sends an evaluation set through the served ensemble and compares it with "
        "PyTorch on the same texts: label agreement and max probability difference for "
        "classifiers; min/mean cosine and top-5 neighbour agreement for embeddings. Prints a "
        "table; exits 1 below the thresholds of the served precision.",
    )
    _add_client_flags(validate)
    validate.add_argument(
        "--reference", required=True, help="the PyTorch model (hub id, folder or 'default')"
    )
    validate.add_argument(
        "--data", type=Path, help="CSV with a 'text' column or one text per line (default: corpus)"
    )
    validate.add_argument(
        "--precision",
        choices=[p.value for p in Precision],
        help="thresholds to apply (default: the precision the ensemble declares)",
    )
    validate.add_argument("--limit", type=int, help="use only the first N texts (N >= 2)")
    _add_threshold_flags(validate)
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.add_argument(
        "--allow-pickle-weights",
        action="store_true",
        help="load the reference's pytorch_model.bin (pickle runs code: only sources you trust)",
    )

    models = commands.add_parser(
        "models",
        help="the server's repository index",
        description="The server's repository index (sends $TRITONHF_ADMIN_KEY, which a server "
        "started with it requires).",
    )
    _add_client_flags(models, model=False)

    bench = commands.add_parser(
        "bench", help="perf_analyzer concurrency sweep: CSV, plot and summary under --out"
    )
    bench.add_argument(
        "--model", action="append", help="served ensemble(s) to measure (default: minilm)"
    )
    bench.add_argument("--url-grpc", help="host:port of a running server's gRPC endpoint")
    bench.add_argument("--url-http", help="host:port of a running server's HTTP endpoint")
    bench.add_argument(
        "--repo",
        type=Path,
        help="without --url-*: start a server on this repository for the run (default: "
        "model_repository); with them, the served export, whose tokenizer counts the corpus's "
        "token lengths",
    )
    bench.add_argument(
        "--protocol",
        action="append",
        choices=["grpc", "http"],
        help="repeat for both (default: both, or the one whose --url-* is given)",
    )
    bench.add_argument(
        "--concurrency", default="1,8,32", help="comma-separated concurrencies (default 1,8,32)"
    )
    bench.add_argument(
        "--corpus", default="short", help="short, long, mixed, or a text file (one text a line)"
    )
    bench.add_argument("--measurement-ms", type=int, default=3000, help="perf_analyzer window")
    bench.add_argument("--out", type=Path, default=Path("artifacts/bench"), help="output folder")
    _add_app_parsers(commands)
    for command in commands.choices.values():
        command.formatter_class = _HelpWithDefaults
    return parser


def _add_app_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``ui`` (the Gradio demo) and ``console`` (the Streamlit ops console)."""
    ui = commands.add_parser(
        "ui",
        help="the Gradio demo: embeddings, search, classification, feedback, server status",
        description="Serves the demo on 127.0.0.1 (never public unless --share); the "
        "client-side Prometheus metrics are at /metrics on the same port.",
    )
    console = commands.add_parser(
        "console",
        help="the Streamlit ops console: model states, load/unload, live metrics, benchmarks",
    )
    for app in (ui, console):
        app.add_argument("--grpc-url", default="127.0.0.1:8001", help="Triton's gRPC host:port")
        app.add_argument("--http-url", default="127.0.0.1:8000", help="Triton's HTTP host:port")
        app.add_argument(
            "--protocol", choices=["grpc", "http"], default="grpc", help="how to reach Triton"
        )
        app.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
        app.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 exposes it)")
    ui.add_argument("--port", type=int, default=7860, help="the demo's port")
    ui.add_argument("--model", default=DEFAULT_MODEL_NAME, help="embedding model to start with")
    ui.add_argument("--classifier", help="classifier to start with (default: first one served)")
    ui.add_argument("--share", action="store_true", help="also open a public Gradio link")
    console.add_argument("--port", type=int, default=8501, help="the console's port")
    console.add_argument(
        "--metrics-url",
        default="http://127.0.0.1:8002/metrics",
        help="Triton's Prometheus metrics endpoint",
    )
    console.add_argument(
        "--bench-dir",
        type=Path,
        default=Path("artifacts/bench"),
        help="folder with benchmark reports (markdown, PNG plots)",
    )


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from tritonhf.client import TritonHFClient

    return TritonHFClient(
        args.url,
        protocol=args.protocol,
        model=getattr(args, "model", None) or DEFAULT_MODEL_NAME,
        timeout_s=args.timeout,
    )


_THRESHOLD_FLAGS = (
    ("--min-label-agreement", "label_agreement", "classifiers: fraction of top labels that match"),
    ("--max-probability-diff", "max_probability_diff", "classifiers: largest probability diff"),
    ("--min-cosine", "min_cosine", "embeddings: worst cosine similarity"),
    ("--min-mean-cosine", "mean_cosine", "embeddings: mean cosine similarity"),
    ("--min-top5-agreement", "top5_agreement", "embeddings: nearest-neighbour overlap"),
)
"""The acceptance gate's thresholds (`tritonhf.gate.agreement.Thresholds` fields)."""


def _add_threshold_flags(parser: argparse.ArgumentParser) -> None:
    for flag, field, what in _THRESHOLD_FLAGS:
        parser.add_argument(flag, type=float, dest=field, help=f"acceptance gate override: {what}")


def _threshold_overrides(args: argparse.Namespace) -> dict[str, float]:
    values = {field: getattr(args, field) for _, field, _ in _THRESHOLD_FLAGS}
    return {field: value for field, value in values.items() if value is not None}


def _said(line: str) -> None:
    """A progress line, flushed: read as it comes when stdout is a pipe (`| tee`, a CI log)."""
    print(line, flush=True)


def run_export(args: argparse.Namespace) -> int:
    """``tritonhf export``."""
    from tritonhf.export.options import ExportOptions
    from tritonhf.export.pipeline import export_model
    from tritonhf.gate.agreement import Thresholds
    from tritonhf.repository.configs import BatchingPolicy, StepTuning

    precision = Precision(args.precision)
    overrides = _threshold_overrides(args)
    stop_on_signals()  # SIGTERM (timeout, CI, a Job's deadline) rolls a move back as Ctrl-C does
    result = export_model(
        ExportOptions(
            model=args.model,
            name=args.name,
            repo=args.repo,
            task=Task(args.task) if args.task else None,
            runtime=Runtime(args.runtime),
            max_length=args.max_length,
            max_batch_size=args.max_batch_size,
            opset=args.opset,
            atol=args.atol,
            allow_pickle_weights=args.allow_pickle_weights,
            precision=precision,
            thresholds=(
                Thresholds.for_precision(precision).with_overrides(**overrides)
                if overrides
                else None
            ),
            layout=Layout(args.layout),
            optimize=args.optimize,
            revision=args.revision,
            version=args.version,
            drift_reference=args.drift_reference,
            gate_data=args.gate_data,
            tuning=StepTuning(
                max_text_bytes=args.max_text_bytes,
                batching=BatchingPolicy(
                    max_queue_size=args.max_queue_size, queue_timeout_ms=args.queue_timeout_ms
                ),
            ),
        ),
        progress=_said,
    )
    spec, folders = result.spec, ", ".join(f.name for f in result.folders)
    graph = f"opset {result.onnx.opset}" if result.onnx else "no ONNX"
    print(
        f"wrote version {args.version} of {folders} to {args.repo} in {result.seconds:.1f} s "
        f"(runtime {spec.runtime.value}, {graph}, max length {spec.max_length}, "
        f"max batch {spec.max_batch_size})"
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    """``tritonhf train``."""
    from tritonhf.train import ClassWeight, TrainingOptions, train_classifier

    data, eval_data = args.data, args.eval
    if data is None:  # the demo classifier's data, wherever the package is installed
        from tritonhf.data import sentiment

        data, eval_data = sentiment.train_path(), eval_data or sentiment.eval_path()
        print(f"training on the package's sentiment dataset ({data.parent})")
    report = train_classifier(
        TrainingOptions(
            data=data,
            out=args.out,
            base=args.base,
            eval_data=eval_data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=args.seed,
            full_finetune=args.full_finetune,
            top_layers=args.top_layers,
            max_length=args.max_length,
            class_weight=ClassWeight(args.class_weight),
            overwrite=args.overwrite,
        ),
        progress=_said,
    )
    print(report.table())
    return 0


class _Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM, as the interrupt Ctrl-C raises; it keeps the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM raise `KeyboardInterrupt`, so a long-running command stops cleanly.

    Both explicitly: a process started in the background by a non-interactive shell (``make
    run &``, a script) inherits SIGINT as ignored, and Python would keep ignoring it.
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def run_serve(args: argparse.Namespace) -> int:
    """``tritonhf serve``: start, print the endpoints, wait for Ctrl-C or SIGTERM."""
    from tritonhf.errors import ConfigError
    from tritonhf.observability.logs import LOG_TEXT_ENV, TextLogging
    from tritonhf.server.admin import admin_key
    from tritonhf.server.launcher import (
        ModelControl,
        RestartBudget,
        ServerConfig,
        TritonServer,
        exit_description,
    )

    if args.restarts < 0:
        raise ConfigError(f"--restarts must be 0 or more, got {args.restarts}")
    if not args.log_text:
        # Refused now, in one line, as a bad --log-text is: in Triton every step would fail
        # to load with it, and serve would exit seconds later with their tracebacks.
        TextLogging.from_env()

    # From the environment only: a flag would leak the key into shell history and `ps`.
    config = ServerConfig(
        repo=args.repo,
        host=args.host,
        http_host=args.http_host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        model_control=ModelControl(args.model_control),
        stub_hang_timeout_s=args.stub_hang_timeout,
        admin_key=admin_key(),
    )
    if args.log_text:
        # The server's Python steps inherit this environment and read it when they load.
        os.environ[LOG_TEXT_ENV] = args.log_text
    server = TritonServer(config, log_path=args.log_file)
    stop_on_signals()
    try:
        server.start()
        restricted = " (admin APIs need $TRITONHF_ADMIN_KEY)" if config.admin_key else ""
        print(
            f"Triton is ready: gRPC {config.grpc_url}, HTTP http://{config.http_url}, "
            f"metrics {config.metrics_url}{restricted} (Ctrl-C stops)",
            flush=True,
        )
        budget = RestartBudget(args.restarts)
        while True:
            how = exit_description(server.wait())
            if not budget.take():
                n, minutes = args.restarts, budget.window_s / 60
                spent = f" (restarted {n} time(s) in {minutes:g} minutes)" if n else ""
                print(f"tritonserver exited with {how}{spent}", file=sys.stderr, flush=True)
                return 1
            print(f"tritonserver exited with {how}: starting it again", file=sys.stderr, flush=True)
            server.stop()  # its watch, stubs, log and work folder
            server = TritonServer(config, log_path=args.log_file)
            server.start()
            print(f"Triton is ready again: gRPC {config.grpc_url}", flush=True)
    except KeyboardInterrupt:
        patience = config.exit_timeout_s + 5

        def _already_stopping(signum: int, frame: FrameType | None) -> None:
            print(f"already stopping: in-flight requests finish (up to {patience} s)", flush=True)

        # A second Ctrl-C must not cut the drain short and leave Triton running.
        signal.signal(signal.SIGINT, _already_stopping)
        signal.signal(signal.SIGTERM, _already_stopping)
        print("stopping Triton ...", flush=True)
        code = server.stop()
        if code in (0, None):
            return 0
        print(f"tritonserver exited with {exit_description(code)} while stopping", file=sys.stderr)
        return 1
    finally:
        server.stop()


_TRUNCATED = " (truncated)"
"""Marks a text longer than the model's token limit: only its first tokens were read."""


def run_embed(args: argparse.Namespace) -> int:
    """``tritonhf embed``."""
    from tritonhf.client.texts import encode_texts

    encode_texts(args.texts)  # bad text is refused before any request, discovery included
    with _client(args) as client:
        model = args.model or _served_model(client, classifier=False)
        result = client.encode(args.texts, model=model)
    if args.json:
        rows = [
            {
                "text": text,
                "num_tokens": int(tokens),
                "truncated": bool(cut),
                "embedding": vector.tolist(),
            }
            for text, tokens, cut, vector in zip(
                args.texts, result.num_tokens, result.truncated, result.embeddings, strict=True
            )
        ]
        print(json.dumps({"model": model, "results": rows}))
        return 0
    rows_out = zip(args.texts, result.num_tokens, result.truncated, result.embeddings, strict=True)
    for text, tokens, cut, vector in rows_out:
        head = " ".join(f"{v:+.4f}" for v in vector[:4])
        print(
            f"{tokens:>4} tokens{_TRUNCATED if cut else ''}  dim {vector.shape[0]}  "
            f"[{head} ...]  {text[:60]!r}"
        )
    return 0


def run_classify(args: argparse.Namespace) -> int:
    """``tritonhf classify``."""
    from tritonhf.client.texts import encode_texts

    encode_texts(args.texts)  # bad text is refused before any request, discovery included
    with _client(args) as client:
        model = args.model or _served_model(client, classifier=True)
        results = client.classify(args.texts, model=model, top_k=args.top_k)
    if args.json:
        rows = [
            {
                "text": text,
                "label": r.label,
                "score": r.score,
                "top": [{"label": label, "probability": p} for label, p in r.top],
                "num_tokens": r.num_tokens,
                "truncated": r.truncated,
            }
            for text, r in zip(args.texts, results, strict=True)
        ]
        print(json.dumps({"model": model, "results": rows}))
        return 0
    for text, result in zip(args.texts, results, strict=True):
        top = ""
        if args.top_k:
            top = (
                "  [" + ", ".join(f"{shown_label(label)} {p:.3f}" for label, p in result.top) + "]"
            )
        cut = _TRUNCATED if result.truncated else ""
        label = left_aligned(shown_label(result.label), 16)
        print(f"{label} {result.score:.3f}{top}{cut}  {text[:60]!r}")
    return 0


def _served_model(client: TritonHFClient, *, classifier: bool) -> str:
    """The served model a command without ``--model`` means: the one of its kind served.

    For embeddings, the default model wins when it is served. None, or several, is an error
    that says what to do.
    """
    from tritonhf.errors import ConfigError, ModelNotFoundError

    served = client.served()
    found = served.classifiers if classifier else served.embedders
    kind = "classifier" if classifier else "embedding model"
    if not classifier and DEFAULT_MODEL_NAME in found:
        return DEFAULT_MODEL_NAME
    if len(found) == 1:
        return found[0]
    if found:
        raise ConfigError(
            f"the server serves {len(found)} {kind}s ({', '.join(found)}): name one with --model"
        )
    how = (
        "`tritonhf export MODEL --task classification` (`make run` serves the demo `sentiment`)"
        if classifier
        else "`tritonhf export` (the default model) or `tritonhf export MODEL`"
    )
    raise ModelNotFoundError(
        f"the server serves no ready {kind}: name one with --model, or export one with {how}"
    )


def run_health(args: argparse.Namespace) -> int:
    """``tritonhf health``: exit 0 only if the server and the model are ready."""
    with _client(args) as client:
        health = client.health()
        why = (
            _why_not_ready(client, health.model) if health.ready and not health.model_ready else ""
        )
    problem = f" ({health.problem})" if health.problem and not health.live else ""
    print(f"server {health.url}: live={health.live} ready={health.ready}{problem}")
    print(f"model {health.model}: ready={health.model_ready}{why}")
    return 0 if health.ready and health.model_ready else 1


def _why_not_ready(client: TritonHFClient, model: str) -> str:
    """Why a ready server's ``model`` is not: absent from its repository, or its state."""
    from tritonhf.errors import ClientError

    try:
        states = [state for state in client.models() if state.name == model]
    except ClientError:  # the repository index needs the admin key: say nothing more
        return ""
    if not states:
        return " (the server's repository has no such model; `tritonhf models` lists them)"
    state = states[-1]
    return f" ({state.state}{': ' + state.reason if state.reason else ''})"


def run_deploy(args: argparse.Namespace) -> int:
    """``tritonhf deploy``."""
    from tritonhf.client.deploy import deploy_pipeline

    with _client(args) as client:
        states = deploy_pipeline(client, model=args.model, version=args.version)
    _print_states(states)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """``tritonhf validate``: exit 0 only if the served model passes the gate."""
    from tritonhf.gate.acceptance import AcceptanceOptions, run_acceptance

    precision = Precision(args.precision) if args.precision else None
    report = run_acceptance(
        AcceptanceOptions(
            reference=args.reference,
            model=args.model,
            url=args.url,
            protocol=args.protocol,
            data=args.data,
            precision=precision,
            overrides=_threshold_overrides(args),
            limit=args.limit,
            timeout_s=args.timeout,
            allow_pickle_weights=args.allow_pickle_weights,
        ),
        progress=lambda line: print(line, file=sys.stderr),
    )
    print(json.dumps(report.as_dict()) if args.json else report.table())
    return 0 if report.passed else 1


def run_models(args: argparse.Namespace) -> int:
    """``tritonhf models``: one line per model version (the server log has the full reasons)."""
    with _client(args) as client:
        _print_states(client.models())
    return 0


def _print_states(states: list[ModelState]) -> None:
    """One line per model version, under a header (the server log has the full reasons)."""
    from tritonhf.client.errors import one_line

    print(f"{'model':<32} {'version':<8} {'state':<12} reason")
    for state in states:
        print(f"{state.name:<32} {state.version:<8} {state.state:<12} {one_line(state.reason)}")


def run_bench(args: argparse.Namespace) -> int:
    """``tritonhf bench``."""
    from tritonhf.bench import BenchOptionError, BenchOptions, run_bench

    try:
        concurrencies = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
    except ValueError:
        raise BenchOptionError(
            f"--concurrency must be comma-separated integers, got {args.concurrency!r}"
        ) from None
    report = run_bench(
        BenchOptions(
            models=tuple(args.model or [DEFAULT_MODEL_NAME]),
            url_grpc=args.url_grpc,
            url_http=args.url_http,
            repo=args.repo,
            # Without --protocol: both, or the one whose URL a running server was given by.
            protocols=tuple(
                args.protocol
                or [p for p in ("grpc", "http") if getattr(args, f"url_{p}")]
                or ["grpc", "http"]
            ),
            concurrencies=concurrencies,
            corpus=args.corpus,
            measurement_ms=args.measurement_ms,
            out=args.out,
        ),
        progress=_said,
    )
    for failure in report.failures:
        print(f"failed: {failure}", file=sys.stderr)
    if report.server_rss_mb is not None:
        print(f"peak server RSS: {report.server_rss_mb:.0f} MiB")
    print(f"wrote {report.csv_path}, {report.plot_path}, {report.summary_path}")
    if report.failures:  # the files hold the points that ran; the run is still incomplete
        print(f"error: {len(report.failures)} point(s) of the sweep failed", file=sys.stderr)
        return 1
    return 0


def run_ui(args: argparse.Namespace) -> int:
    """``tritonhf ui``: the Gradio demo until Ctrl-C or SIGTERM."""
    from tritonhf.client import Protocol
    from tritonhf.server.ports import check_bindable
    from tritonhf.ui import DemoConfig, serve_demo

    config = DemoConfig(
        grpc_url=args.grpc_url,
        http_url=args.http_url,
        protocol=Protocol(args.protocol),
        model=args.model,
        classifier=args.classifier,
        timeout_s=args.timeout,
        host=args.host,
        port=args.port,
        share=args.share,
    )
    check_bindable(config.host, config.port)
    stop_on_signals()
    serve_demo(config)
    return 0


def run_console(args: argparse.Namespace) -> int:
    """``tritonhf console``: the Streamlit ops console until Ctrl-C or SIGTERM."""
    from tritonhf.client import Protocol
    from tritonhf.console import ConsoleConfig, serve_console
    from tritonhf.server.admin import admin_key
    from tritonhf.server.ports import check_bindable

    admin_key()  # a malformed key fails here, in one line, not on the page

    config = ConsoleConfig(
        grpc_url=args.grpc_url,
        http_url=args.http_url,
        protocol=Protocol(args.protocol),
        metrics_url=args.metrics_url,
        bench_dir=args.bench_dir,
        timeout_s=args.timeout,
        host=args.host,
        port=args.port,
    )
    check_bindable(config.host, config.port)
    serve_console(config)
    return 0


COMMANDS = {
    "export": run_export,
    "train": run_train,
    "serve": run_serve,
    "embed": run_embed,
    "classify": run_classify,
    "health": run_health,
    "deploy": run_deploy,
    "models": run_models,
    "validate": run_validate,
    "ui": run_ui,
    "console": run_console,
    "bench": run_bench,
}


COMMAND_EXTRAS = {
    "export": "export",
    "train": "export",
    "validate": "export",
    "ui": "ui",
    "console": "ui",
    "bench": "bench",
}
"""The extra of ``pip install 'tritonhf[EXTRA]'`` that brings what a command imports."""
EXTRA_PACKAGES = {"export": ("torch", "transformers")}
"""Packages checked before a command of that extra starts: found missing before any work (a
default model to resolve, texts sent to a server), not halfway through it."""


def check_extra_installed(command: str) -> None:
    """Raise `ModuleNotFoundError` for the first package of ``command``'s extra not installed."""
    import importlib.util

    for package in EXTRA_PACKAGES.get(COMMAND_EXTRAS.get(command, ""), ()):
        if importlib.util.find_spec(package) is None:
            raise ModuleNotFoundError(f"No module named {package!r}", name=package)


def missing_package(command: str, module: str) -> str:
    """What to say when ``command`` could not import ``module``: the extra that brings it."""
    package = module.split(".")[0]
    extra = COMMAND_EXTRAS.get(command)
    if extra is None:
        return f"tritonhf {command} needs {package}, which is not installed"
    return (
        f"tritonhf {command} needs {package}, which is not installed: install the "
        f"{extra!r} extra with `pip install 'tritonhf[{extra}]'`"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, configure logging, run; typed errors become one clear line."""
    for stream in (sys.stdout, sys.stderr):  # echoed texts on a console that is not UTF-8
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(levelname)s %(message)s",
        )
        try:
            check_extra_installed(args.command)
            return COMMANDS[args.command](args)
        except TritonHFError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, ValueError) else 1
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.split(".")[0] == "tritonhf":
                raise  # a broken install of tritonhf itself: the traceback is the report
            print(f"error: {missing_package(args.command, exc.name)}", file=sys.stderr)
            return 1
    except KeyboardInterrupt as exc:  # what it stopped cleans up after itself, no traceback
        print("interrupted", file=sys.stderr)
        # What a shell reports for a command killed by the signal: 130 SIGINT, 143 SIGTERM.
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except BrokenPipeError:  # `tritonhf models | head -1`: the reader has what it wanted
        # Python flushes stdout again at exit; point it at /dev/null so that is silent too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a command killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
