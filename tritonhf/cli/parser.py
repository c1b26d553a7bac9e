"""The ``tritonhf`` command's argument parser (also read by the CLI reference's docs hook)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tritonhf import __version__
from tritonhf.spec import DEFAULT_MODEL_NAME, Layout, Precision, Runtime, Task


def path_argument(value: str) -> Path:
    """A path flag's value, refused when empty or spaces alone.

    ``Path("")`` is the current folder, and a folder named " " is a quoting slip, not a choice.
    """
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path" if not value else "a path of spaces alone")
    return Path(value)


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
    parser.add_argument("--version", action="version", version=f"tritonhf {__version__}")
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
        "--repo", type=path_argument, default=Path("model_repository"), help="repository folder"
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
        type=path_argument,
        metavar="FILE",
        help="texts whose token lengths, labels or embeddings drift is measured against (an "
        "embedder's needs >= 200 distinct texts): a CSV with a "
        "'text' column (e.g. the training data) or one text per line (default: the package's "
        "sentence corpus)",
    )
    export.add_argument(
        "--gate-data",
        type=path_argument,
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
        type=path_argument,
        help="training CSV (text,label); without it, the sentiment dataset the package ships "
        "(the demo classifier's), and its held-out split unless --eval names another",
    )
    train.add_argument("--eval", type=path_argument, help="held-out CSV (text,label)")
    train.add_argument("--out", type=path_argument, required=True, help="output model folder")
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
        "--repo", type=path_argument, default=Path("model_repository"), help="the model repository"
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 exposes it)")
    serve.add_argument(
        "--http-host",
        help="bind address of the HTTP endpoint, if not --host: 127.0.0.1 keeps it local while "
        "gRPC serves the network",
    )
    serve.add_argument("--http-port", type=int, default=8000, help="KServe v2 HTTP/REST")
    serve.add_argument("--grpc-port", type=int, default=8001, help="KServe v2 gRPC")
    serve.add_argument("--metrics-port", type=int, default=8002, help="Prometheus /metrics")
    serve.add_argument(
        "--log-file", type=path_argument, help="write the server log here instead of stdout"
    )
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
    _add_text_sources(embed)
    embed.add_argument("--json", action="store_true", help="print JSON with full vectors")
    _add_client_flags(embed, model=False)
    embed.add_argument(
        "--model",
        help=f"served embedding model (default: {DEFAULT_MODEL_NAME} if served, else the one "
        "the server serves, if only one)",
    )

    classify = commands.add_parser("classify", help="classify texts with a served classifier")
    _add_text_sources(classify)
    classify.add_argument("--top-k", type=int, help="also list the k most likely classes")
    classify.add_argument("--json", action="store_true", help="print JSON")
    _add_client_flags(classify, model=False)
    classify.add_argument(
        "--model", help="served classifier (default: the one the server serves, if only one)"
    )

    health = commands.add_parser("health", help="server liveness/readiness and model readiness")
    _add_client_flags(health, model=False)
    health.add_argument(
        "--model",
        help="the served model to check (default: every pipeline of the server's repository, or "
        f"{DEFAULT_MODEL_NAME} where it has none)",
    )

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
        "--data",
        type=path_argument,
        help="CSV with a 'text' column or one text per line (default: corpus)",
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
        type=path_argument,
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
    bench.add_argument(
        "--measurement-ms",
        type=int,
        default=3000,
        help="the size of perf_analyzer's (up to 3) windows per point, as requests: 30 per "
        "1000 ms, at least 4 per client (so a window lasts this long at 30 requests/s)",
    )
    bench.add_argument(
        "--out", type=path_argument, default=Path("artifacts/bench"), help="output folder"
    )
    _add_app_parsers(commands)
    for command in commands.choices.values():
        command.formatter_class = _HelpWithDefaults
    return parser


def _add_text_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts (or --input)")
    parser.add_argument(
        "--input",
        type=path_argument,
        metavar="FILE",
        help="read the texts from FILE, one per line (UTF-8; - reads standard input)",
    )


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
        type=path_argument,
        default=Path("artifacts/bench"),
        help="folder with benchmark reports (markdown, PNG plots)",
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


def threshold_overrides(args: argparse.Namespace) -> dict[str, float]:
    """The gate thresholds given on the command line, by `Thresholds` field."""
    values = {field: getattr(args, field) for _, field, _ in _THRESHOLD_FLAGS}
    return {field: value for field, value in values.items() if value is not None}
