"""``tritonhf``: export, serve, and query HuggingFace models on Triton.

Each subcommand parses its flags and calls one package function; all logic lives there.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import signal
import stat
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from tritonhf.cli.output import guard_standard_streams
from tritonhf.cli.parser import build_parser, threshold_overrides
from tritonhf.errors import (
    EXPORT_MEMORY_ADVICE,
    MEMORY_ADVICE,
    OutputError,
    TritonHFError,
    first_line,
    out_of_memory,
)
from tritonhf.spec import (
    DEFAULT_MODEL_NAME,
    Layout,
    Precision,
    Runtime,
    Task,
    left_aligned,
    shown_label,
)
from tritonhf.telemetry import telemetry_off

if TYPE_CHECKING:
    from tritonhf.client import ModelState, TritonHFClient

log = logging.getLogger("tritonhf")


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[TritonHFClient]:
    """The command's client, closed after.

    A long --input run stops with "interrupted" on SIGTERM, or on a script's SIGINT.
    """
    from tritonhf.client import Protocol, TritonHFClient

    stop_on_signals()
    with TritonHFClient(
        args.url,
        protocol=args.protocol,
        model=getattr(args, "model", None) or DEFAULT_MODEL_NAME,
        timeout_s=args.timeout,
    ) as client:
        if client.protocol is not Protocol.HTTP:
            yield client
            return
        import gevent

        # Its hub printed a Ctrl-C during a request ("KeyboardInterrupt" and a time) before
        # "interrupted"; every error it meets reaches the command as an exception anyway.
        hub = gevent.get_hub()
        own = vars(hub).get("exception_stream", _UNSET)
        hub.exception_stream = None
        try:
            yield client
        finally:
            if own is _UNSET:
                del hub.exception_stream
            else:
                hub.exception_stream = own


_UNSET = object()


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
    overrides = threshold_overrides(args)
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
    if result.folders and not (mode := result.folders[0].stat().st_mode) & stat.S_IROTH:
        print(
            f"warning: {args.repo} is readable by its owner alone ({stat.filemode(mode)}, from "
            "the umask): a server that runs as another user (the image's uid 1000) cannot "
            f"read it; `chmod -R a+rX {args.repo}` if one will",
            file=sys.stderr,
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
    """A stop signal (`STOP_SIGNALS`), as the interrupt Ctrl-C raises; it keeps its number."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ctrl-C, a stop (kill, a supervisor, a Job's deadline) and a closed terminal or ssh session."""


def stop_on_signals() -> None:
    """`STOP_SIGNALS` raise `KeyboardInterrupt`, so a long-running command stops cleanly.

    Each explicitly: a process started in the background by a non-interactive shell (``make
    run &``, a script) inherits SIGINT as ignored, and Python would keep ignoring it; SIGHUP's
    default ended `tritonhf serve` at once, leaving Triton to stop on its own without a drain.
    One started with ``nohup`` keeps ignoring SIGHUP.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # `main` called in-process by a thread: signals are the program's to handle
    for signum in STOP_SIGNALS:
        if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        signal.signal(signum, _interrupt)


def run_serve(args: argparse.Namespace) -> int:
    """``tritonhf serve``: start, print the endpoints, wait for Ctrl-C, SIGTERM or SIGHUP."""
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
        patience = round(server.stop_budget_s)

        def _already_stopping(signum: int, frame: FrameType | None) -> None:
            # Straight to the descriptor: the signal may arrive inside a print to stdout,
            # and printing again from here raised "reentrant call" and ended serve mid-drain.
            line = f"already stopping: in-flight requests finish (up to {patience} s)\n"
            with suppress(OSError, ValueError):
                os.write(sys.stdout.fileno(), line.encode())

        # A second Ctrl-C must not cut the drain short and leave Triton running.
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) == _interrupt:
                signal.signal(signum, _already_stopping)
        with suppress(OSError):  # a terminal that hung up (SIGHUP) takes no more output
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


def _texts(args: argparse.Namespace) -> list[str]:
    """The texts of ``embed`` and ``classify``: the arguments, or the lines of ``--input``."""
    from tritonhf.client.texts import encode_texts
    from tritonhf.errors import ConfigError, InvalidInputError

    if (args.input is None) == (not args.texts):
        raise ConfigError("give the texts as arguments or with --input FILE, not both or neither")
    texts = argument_texts(args.texts) if args.input is None else read_lines(args.input)
    encode_texts(texts)  # bad text is refused before any request, discovery included
    if not texts:
        raise InvalidInputError(f"{args.input} holds no text")
    return texts


def argument_texts(arguments: list[str]) -> list[str]:
    """The text arguments as the user typed them, in UTF-8.

    Python decodes arguments in the locale's encoding, and bytes it cannot decode become lone
    surrogates: UTF-8 text under a C locale without UTF-8 mode, or a Latin-1 terminal's bytes.
    The first is decoded again as UTF-8; the second is refused, naming the argument.
    """
    from tritonhf.errors import InvalidInputError

    texts = []
    for number, argument in enumerate(arguments, start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(argument)
            try:
                argument = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInputError(
                    f"text argument {number} is not UTF-8 (byte {raw[exc.start]:#04x} at "
                    f"{exc.start + 1}): the terminal sends another encoding; set it to UTF-8, "
                    "or pass the texts in a UTF-8 file with --input"
                ) from None
        texts.append(argument)
    return texts


MAX_INPUT_BYTES = 256 << 20
"""The most ``--input`` reads: ~2 million sentences, hours of embedding on a CPU."""


def read_lines(path: Path) -> list[str]:
    """The lines of ``path`` (``-``: standard input) as texts; a blank one is refused by number."""
    from tritonhf.errors import ConfigError, InvalidInputError

    try:
        if str(path) == "-":
            if sys.stdin is None:  # `<&-`: Python has no stream for a closed descriptor
                raise ConfigError("cannot read --input -: standard input is closed")
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with path.open("rb") as file:
                data = file.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read --input {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:  # /dev/zero, a stream without end: the memory, else
        raise InvalidInputError(
            f"--input {path} holds more than {MAX_INPUT_BYTES / 2**20:g} MiB: its texts are "
            "held in memory and answered at the end; split it into smaller files"
        )
    # A BOM (Windows editors) is no text; a line ends at \n, \r\n or a bare \r (old Mac files).
    lines = data.removeprefix(b"\xef\xbb\xbf").splitlines()
    texts = []
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"line {number} of {path} is not UTF-8 (byte {exc.start + 1}): save it as UTF-8"
            ) from None
        if not text.strip():
            raise InvalidInputError(f"line {number} of {path} is blank: one text per line")
        texts.append(text)
    return texts


def _print_results_json(model: str, rows: Iterable[dict[str, Any]]) -> None:
    """Print ``{"model": model, "results": [rows]}`` as ``json.dumps`` would, a row at a time.

    Built whole, the document for 20,000 lines of ``--input`` took 739 MB.
    """
    out = sys.stdout
    out.write(f'{{"model": {json.dumps(model)}, "results": [')
    for number, row in enumerate(rows):
        out.write((", " if number else "") + json.dumps(row))
    out.write("]}\n")


@contextmanager
def _lines_named(path: Path | None) -> Iterator[None]:
    """Texts refused by their index (``TEXT[149]``, ``texts[3]``) named as ``path``'s lines too.

    Every line of ``--input`` is a text (`read_lines` refuses blank ones), in order.
    """
    from tritonhf.errors import InvalidInputError

    try:
        yield
    except InvalidInputError as exc:
        if path is None:
            raise
        named = re.sub(
            r"\b(?:TEXT|texts)\[(\d+)\]",
            lambda found: f"{found.group(0)} (line {int(found.group(1)) + 1} of {path})",
            str(exc),
        )
        raise type(exc)(named) from exc


def run_embed(args: argparse.Namespace) -> int:
    """``tritonhf embed``."""
    with _lines_named(args.input):
        args.texts = _texts(args)
        with _client(args) as client:
            model = args.model or _served_model(client, classifier=False)
            result = client.encode(args.texts, model=model)
    if args.json:
        rows = (
            {
                "text": text,
                "num_tokens": int(tokens),
                "truncated": bool(cut),
                "embedding": vector.tolist(),
            }
            for text, tokens, cut, vector in zip(
                args.texts, result.num_tokens, result.truncated, result.embeddings, strict=True
            )
        )
        _print_results_json(model, rows)
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
    with _lines_named(args.input):
        args.texts = _texts(args)
        with _client(args) as client:
            model = args.model or _served_model(client, classifier=True)
            results = client.classify(args.texts, model=model, top_k=args.top_k)
    if args.json:
        rows = (
            {
                "text": text,
                "label": r.label,
                "score": r.score,
                "top": [{"label": label, "probability": p} for label, p in r.top],
                "num_tokens": r.num_tokens,
                "truncated": r.truncated,
            }
            for text, r in zip(args.texts, results, strict=True)
        )
        _print_results_json(model, rows)
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
    """``tritonhf health``: exit 0 only if the server and the model(s) are ready.

    Without ``--model``, every pipeline of the server's repository is checked (one that does
    not serve is a failed check, as a named one is), or the default model where it has none.
    """
    from tritonhf.server.admin import ENV_VAR as ADMIN_KEY_ENV

    with _client(args) as client:
        health = client.health()
        names, partial = [health.model], False
        if args.model is None and health.ready:
            found, partial = _pipelines(client)
            names = found or names
        rows = []
        for name in names:
            ready = health.model_ready if name == health.model else client.is_model_ready(name)
            why = _why_not_ready(client, name) if health.ready and not ready else ""
            rows.append((name, ready, why))
    problem = f" ({health.problem})" if health.problem and not health.live else ""
    print(f"server {health.url}: live={health.live} ready={health.ready}{problem}")
    if partial:
        print(
            f"(the server's repository index needs its admin key, ${ADMIN_KEY_ENV}: these are "
            "the pipelines that serve; one that was unloaded or failed to load is not seen)"
        )
    for name, ready, why in rows:
        print(f"model {name}: ready={ready}{why}")
    return 0 if health.ready and all(ready for _, ready, _ in rows) else 1


def _pipelines(client: TritonHFClient) -> tuple[list[str], bool]:
    """The tritonhf pipelines of the server's repository, and whether only the ready ones.

    Without the admin key the repository index is refused: the pipelines that serve, then.
    A key that the server refuses is an error, not that.
    """
    from tritonhf.errors import ClientError, PermissionDeniedError
    from tritonhf.server.admin import ENV_VAR as ADMIN_KEY_ENV

    try:
        names = {state.name for state in client.models()}
    except PermissionDeniedError:
        if os.environ.get(ADMIN_KEY_ENV):
            raise
        served = client.served()
        return sorted({*served.embedders, *served.classifiers}), True
    except ClientError:
        return [], False
    return sorted(name for name in names if f"{name}_model" in names), False


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
            overrides=threshold_overrides(args),
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
    stop_on_signals()  # SIGTERM ends perf_analyzer too, as Ctrl-C does
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
EXTRA_PACKAGES = {
    "export": ("torch", "transformers"),
    "bench": ("matplotlib", "nvidia.cuda_runtime"),
}
"""Modules checked before a command of that extra starts: found missing before any work (a
default model to resolve, texts sent to a server, perf_analyzer downloaded), not halfway."""
DISTRIBUTIONS = {"nvidia.cuda_runtime": "nvidia-cuda-runtime-cu12"}
"""The package to name for a module whose name is not its package's."""


def check_extra_installed(command: str) -> None:
    """Raise `ModuleNotFoundError` for the first package of ``command``'s extra not installed."""
    import importlib.util

    for module in EXTRA_PACKAGES.get(COMMAND_EXTRAS.get(command, ""), ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a dotted module whose parent package is missing
            found = False
        if not found:
            package = DISTRIBUTIONS.get(module, module)
            raise ModuleNotFoundError(f"No module named {module!r}", name=package)


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
    telemetry_off(os.environ)  # before ONNX Runtime loads, here or in the server it starts
    # What a command changes for the whole process goes back: `main` is called in-process too.
    standard = sys.stdout, sys.stderr
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS if main_thread}
    guard_standard_streams()
    try:
        return _run(argv)
    finally:
        sys.stdout, sys.stderr = standard
        for signum, handler in handlers.items():
            if handler is not None:  # None: set outside Python, which cannot be put back
                signal.signal(signum, handler)


def _discard_output() -> None:
    """Point standard output at /dev/null: Python flushes it again at exit, silently now."""
    with suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(levelname)s %(message)s",
        )
        try:
            check_extra_installed(args.command)
            code = COMMANDS[args.command](args)
            sys.stdout.flush()  # here, where a full disk is one line, not at exit
            return code
        except TritonHFError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if isinstance(exc, OutputError):
                _discard_output()
            return 2 if isinstance(exc, ValueError) else 1
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.split(".")[0] == "tritonhf":
                raise  # a broken install of tritonhf itself: the traceback is the report
            print(f"error: {missing_package(args.command, exc.name)}", file=sys.stderr)
            return 1
        except (MemoryError, ImportError) as exc:
            if not out_of_memory(exc):
                raise  # a package that cannot load for another reason: the traceback says why
            heavy = args.command in ("export", "train", "validate")  # they run PyTorch
            advice = EXPORT_MEMORY_ADVICE if heavy else MEMORY_ADVICE
            print(f"error: {first_line(exc)}; {advice}", file=sys.stderr)
            return 1
    except KeyboardInterrupt as exc:  # what it stopped cleans up after itself, no traceback
        with suppress(OSError):  # a terminal that hung up (SIGHUP) takes no more output
            print("interrupted", file=sys.stderr)
        # What a shell reports for a command killed by the signal: 130 SIGINT, 143 SIGTERM.
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except BrokenPipeError:  # `tritonhf models | head -1`: the reader has what it wanted
        _discard_output()
        return 141  # what a shell reports for a command killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
