"""``tritonhf bench``: sweep concurrency with perf_analyzer and save CSV, plot and summary."""

from __future__ import annotations

import itertools
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tritonhf.bench.corpus import LengthStats, load_corpus, token_lengths, write_input_data
from tritonhf.bench.perf_analyzer import (
    PERF_ANALYZER_VERSION,
    BenchError,
    BenchOptionError,
    PerfRun,
    find_perf_analyzer,
    run_perf_analyzer,
    window_requests,
)
from tritonhf.bench.report import (
    BenchPoint,
    markdown_table,
    parse_perf_csv,
    plot_points,
    write_points_csv,
)
from tritonhf.client.connection import Protocol, server_address

if TYPE_CHECKING:
    from tritonhf.server.launcher import TritonServer

DEFAULT_OUT = Path("artifacts/bench")
DEFAULT_REPO = Path("model_repository")


MAX_CONCURRENCY = 1024


@dataclass(frozen=True)
class BenchOptions:
    """Everything ``tritonhf bench`` accepts."""

    models: tuple[str, ...] = ("minilm",)
    url_grpc: str | None = None  # None: start a server on ``repo``
    url_http: str | None = None
    repo: Path | None = None
    """Without URLs, the repository a server is started on (default: `DEFAULT_REPO`). Its
    tokenizer counts the corpus's tokens; with URLs only when given (the served one may be
    another)."""
    protocols: tuple[str, ...] = ("grpc", "http")
    concurrencies: tuple[int, ...] = (1, 8, 32)
    corpus: str = "short"
    measurement_ms: int = 3000
    out: Path = DEFAULT_OUT

    def __post_init__(self) -> None:
        if not self.models:
            raise BenchOptionError("name at least one model to benchmark")
        if not self.concurrencies or min(self.concurrencies) < 1:
            raise BenchOptionError(
                "--concurrency needs values >= 1 (comma-separated), got "
                f"{','.join(map(str, self.concurrencies)) or 'none'}"
            )
        if max(self.concurrencies) > MAX_CONCURRENCY:  # 100,000 failed after 54 s
            raise BenchOptionError(
                f"--concurrency must be at most {MAX_CONCURRENCY} (perf_analyzer fails to create "
                f"the threads of larger ones), got {max(self.concurrencies)}"
            )
        for url, protocol in ((self.url_grpc, Protocol.GRPC), (self.url_http, Protocol.HTTP)):
            if url is not None:
                server_address(url, protocol)  # ConfigError now, not perf_analyzer's later
        bad = [p for p in self.protocols if p not in ("grpc", "http")]
        if bad or not self.protocols:
            raise BenchOptionError(f"--protocol must be grpc and/or http, got {self.protocols}")
        if (self.url_grpc is None) != (self.url_http is None) and len(self.protocols) > 1:
            raise BenchOptionError(
                "give both --url-grpc and --url-http, or neither (start a server)"
            )
        urls = {"grpc": self.url_grpc, "http": self.url_http}
        if (self.url_grpc or self.url_http) and (
            lost := [p for p in self.protocols if not urls[p]]
        ):
            raise BenchOptionError(
                f"--protocol {lost[0]} needs --url-{lost[0]} with a running server"
            )
        existing = next(p for p in (self.out, *self.out.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise BenchOptionError(f"--out {self.out}: {existing} is a file; name a folder")

    @property
    def started(self) -> bool:
        """Whether the run starts its own server (no URLs given)."""
        return self.url_grpc is None and self.url_http is None

    @property
    def tokenizer_repo(self) -> Path | None:
        """Where the served tokenizer is read from for the corpus's token lengths."""
        return DEFAULT_REPO if self.repo is None and self.started else self.repo

    def check_out(self) -> None:
        """Create the output folders; refuse, before measuring, outputs that cannot be written."""
        try:
            (self.out / "raw").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BenchOptionError(f"--out {self.out}: cannot create it ({exc})") from None
        for name in ("bench.csv", "bench.png", "summary.md"):
            if (self.out / name).is_dir():
                raise BenchOptionError(f"--out {self.out}: {name} there is a folder")
        if not os.access(self.out, os.W_OK) or not os.access(self.out / "raw", os.W_OK):
            raise BenchOptionError(f"--out {self.out}: not writable")


@dataclass(frozen=True)
class BenchReport:
    """What a sweep measured and where it saved it."""

    points: tuple[BenchPoint, ...]
    lengths: LengthStats | None
    server_rss_mb: float | None
    failures: tuple[str, ...]
    csv_path: Path
    plot_path: Path
    summary_path: Path
    meta: dict[str, str] = field(default_factory=dict)


def machine_info() -> dict[str, str]:
    """Machine, load and versions, recorded with every run."""
    import numpy as np

    import tritonhf

    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "load average (1/5/15 min)": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
        "python": platform.python_version(),
        "tritonhf": tritonhf.__version__,
        "numpy": np.__version__,
        "perf_analyzer": PERF_ANALYZER_VERSION,
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


@contextmanager
def _endpoints(options: BenchOptions) -> Iterator[tuple[str, str, TritonServer | None]]:
    """The URLs to measure: the given ones, or a server started on the repository."""
    if not options.started:
        yield options.url_grpc or "", options.url_http or "", None
        return
    from tritonhf.server.launcher import ServerConfig, TritonServer
    from tritonhf.server.ports import free_ports

    http, grpc, metrics = free_ports(3)
    config = ServerConfig(
        repo=options.repo or DEFAULT_REPO, http_port=http, grpc_port=grpc, metrics_port=metrics
    )
    log = options.out / "tritonserver.log"
    with TritonServer(config, log_path=log) as server:
        yield config.grpc_url, config.http_url, server


def check_reachable(options: BenchOptions, *, grpc_url: str, http_url: str) -> None:
    """Raise `BenchError` unless a live Triton answers each URL to use, in its protocol.

    Before the sweep, in the client's words: perf_analyzer says only ``Socket closed`` or
    ``Unsupported protocol`` at another protocol's port, at every point. A model the server
    lacks fails its own points only.
    """
    from tritonhf.client import TritonHFClient
    from tritonhf.errors import ClientError, ServerUnavailableError, WrongProtocolError

    for protocol in options.protocols:
        url = grpc_url if protocol == "grpc" else http_url
        with TritonHFClient(url, protocol=protocol) as client:
            try:
                client.is_model_ready(options.models[0])
            except WrongProtocolError:  # the client's advice is --protocol; bench's the flags
                other = "http" if protocol == "grpc" else "grpc"
                port = Protocol(protocol).default_url.rpartition(":")[2]
                raise BenchError(
                    f"cannot measure over {protocol} at {url}: it is Triton's {other} port: "
                    f"--url-{protocol} takes the {protocol} port (default {port}), "
                    f"--url-{other} the {other} one"
                ) from None
            except ServerUnavailableError as exc:
                raise BenchError(f"cannot measure over {protocol} at {url}: {exc}") from None
            except ClientError:
                pass  # about the model, not the server: its points say so


def _served_tokenizer(repo: Path, model: str) -> tuple[Path, int] | None:
    """The tokenizing step's ``tokenizer.json`` and token limit, if ``repo`` holds ``model``.

    That step is the tokenizer, or the model step in the merged layout; the limit is the
    ``max_length`` parameter it truncates at, so the corpus stats count what the model sees.
    """
    from tritonhf.repository.writer import read_config

    for step in ("_tokenizer", "_model"):
        folder = repo / f"{model}{step}"
        tokenizer_json, config = folder / "1" / "tokenizer.json", read_config(folder)
        if tokenizer_json.is_file() and config is not None and "max_length" in config.parameters:
            return tokenizer_json, int(config.parameters["max_length"].string_value)
    return None


def run_bench(
    options: BenchOptions, *, progress: Callable[[str], None] = lambda _: None
) -> BenchReport:
    """Sweep every model x protocol x concurrency; save CSV, PNG and markdown under ``out``."""
    from tritonhf.server.process import tree_rss_bytes

    binary = find_perf_analyzer()
    options.check_out()
    texts = load_corpus(options.corpus)
    raw = options.out / "raw"
    input_data = write_input_data(texts, raw / f"input-{Path(options.corpus).stem}.json")
    lengths = None
    repo = options.tokenizer_repo
    if repo is not None and (served := _served_tokenizer(repo, options.models[0])):
        lengths = LengthStats.of(token_lengths(texts, *served))
        progress(f"corpus {options.corpus}: {lengths.line()}")
    elif repo is None:
        progress("token lengths not counted: give --repo with the served export to count them")
    meta = machine_info()
    points: list[BenchPoint] = []
    failures: list[str] = []
    rss_peak = 0
    with _endpoints(options) as (grpc_url, http_url, server):
        pid = server.pid if server is not None else None
        if not options.started:
            check_reachable(options, grpc_url=grpc_url, http_url=http_url)
        # Models innermost: configurations compared side by side see the same machine state.
        sweep = itertools.product(options.concurrencies, options.protocols, options.models)
        for concurrency, protocol, model in sweep:
            csv_path = raw / f"{model}-{protocol}-c{concurrency}.csv"
            run = PerfRun(
                model=model,
                url=grpc_url if protocol == "grpc" else http_url,
                protocol=protocol,
                concurrency=concurrency,
                input_data=input_data,
                csv_path=csv_path,
                measurement_ms=options.measurement_ms,
            )
            try:
                run_perf_analyzer(run, binary=binary)
                measured = parse_perf_csv(csv_path, config=model, protocol=protocol)
            except BenchError as exc:
                # One failed point (say, requests timing out in the queue at high
                # concurrency) is a result too: record it and measure the rest.
                reason = str(exc).splitlines()[-1].strip()
                failures.append(f"{model} {protocol} c{concurrency}: {reason}")
                progress(f"{model:<20} {protocol:<4} c{concurrency:<3} FAILED: {reason}")
                if server is not None and server.exit_code is not None:
                    # Every later point would fail the same way, saying only "refused".
                    died = (
                        f"the server bench started exited (code {server.exit_code}) during "
                        f"the sweep; its log: {options.out / 'tritonserver.log'}"
                    )
                    failures[-1] += f" ({died}: the sweep stopped there)"
                    progress(f"stopping: {died}")
                    break
                continue
            points.extend(measured)
            for p in measured:
                progress(
                    f"{model:<20} {protocol:<4} c{p.concurrency:<3} "
                    f"{p.throughput:8.1f} req/s  p50 {p.p50_ms:6.1f} ms  "
                    f"p99 {p.p99_ms:6.1f} ms"
                )
            if pid is not None:
                rss_peak = max(rss_peak, tree_rss_bytes(pid))
    order = {model: index for index, model in enumerate(options.models)}
    points.sort(key=lambda p: (order[p.config], p.protocol, p.concurrency))
    meta["load average after"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    rss_mb = rss_peak / 2**20 if pid is not None else None
    if not points:
        more = f" (and {len(failures) - 1} more like it)" if len(failures) > 1 else ""
        raise BenchError(f"no point of the sweep succeeded: {failures[0]}{more}")
    csv_out = write_points_csv(points, options.out / "bench.csv")
    title = f"tritonhf bench: {', '.join(options.models)} on corpus {options.corpus}"
    plot = plot_points(points, options.out / "bench.png", title=title)
    summary = options.out / "summary.md"
    summary.write_text(
        summary_markdown(
            points,
            options=options,
            lengths=lengths,
            rss_mb=rss_mb,
            meta=meta,
            failures=failures,
        ),
        encoding="utf-8",
    )
    return BenchReport(
        points=tuple(points),
        lengths=lengths,
        server_rss_mb=rss_mb,
        failures=tuple(failures),
        csv_path=csv_out,
        plot_path=plot,
        summary_path=summary,
        meta=meta,
    )


def summary_markdown(
    points: Sequence[BenchPoint],
    *,
    options: BenchOptions,
    lengths: LengthStats | None,
    rss_mb: float | None,
    meta: dict[str, str],
    failures: Sequence[str] = (),
) -> str:
    """The markdown summary saved beside the CSV and the plot."""
    lines = [
        f"# tritonhf bench: {', '.join(options.models)}",
        "",
        f"perf_analyzer {PERF_ANALYZER_VERSION}, closed loop, one text per request, "
        f"windows of {window_requests(options.measurement_ms, 1)} requests, or 4 per client "
        f"where more (--measurement-ms {options.measurement_ms}); corpus `{options.corpus}`"
        + (f" ({lengths.line()})" if lengths else "")
        + ".",
        "",
        markdown_table(points, baseline=options.models[0] if len(options.models) > 1 else None),
        "",
        "![throughput vs p99](bench.png)",
        "",
    ]
    if failures:
        lines += ["Points that failed:", "", *(f"- {f}" for f in failures), ""]
    if rss_mb is not None:
        lines += [f"Peak server RSS (Triton + Python-backend stubs): {rss_mb:.0f} MiB.", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    return "\n".join(lines) + "\n"
