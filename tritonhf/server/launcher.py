"""Start, watch and stop a local ``tritonserver`` process."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess  # nosec B404
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO

from tritonhf.backends.busy import board_dir, remove_stale_boards
from tritonhf.errors import ConfigError, ServerError
from tritonhf.repository.compat import available_backends, check_servable
from tritonhf.repository.staging import recover_killed_exports
from tritonhf.server.admin import (
    check_key,
    http_headers,
    is_loopback,
    open_api_warning,
    restricted_flags,
)
from tritonhf.server.drain import die_with_parent, drain, is_ready, terminate
from tritonhf.server.guard import build_guard, with_preload
from tritonhf.server.host import BACKEND_TMP, check_host, work_folder_parent
from tritonhf.server.ports import check_bindable
from tritonhf.server.process import (
    oldest_server_start,
    own_folder,
    pid_in_name,
    raise_open_files_limit,
    running,
    stop_orphaned_stubs,
    stubs_started_from,
)
from tritonhf.server.provision import find_distribution, prepare_backend_dir, server_environment
from tritonhf.server.shm import remove_orphaned_regions, remove_regions
from tritonhf.server.stub_watch import (
    HANG_S,
    STOP_WAIT_S,
    StubWatch,
    dated,
    dated_line,
    seconds,
    served_by,
)


class ModelControl(str, Enum):
    """Triton's ``--model-control-mode``."""

    NONE = "none"
    EXPLICIT = "explicit"
    POLL = "poll"


RESTART_WINDOW_S = 300.0
"""`RestartBudget`'s window: ``tritonhf serve --restarts N`` allows N restarts in it."""


def _client_host(bind: str) -> str:
    """Where a local client reaches an endpoint bound to ``bind`` (a wildcard: loopback)."""
    return "127.0.0.1" if bind in ("0.0.0.0", "") else bind  # noqa: S104  # nosec B104


@dataclass(frozen=True)
class ServerConfig:
    """How to run one Triton server."""

    repo: Path
    host: str = "127.0.0.1"
    http_host: str | None = None
    """Where the HTTP endpoint binds, if not ``host``: ``127.0.0.1`` keeps it local while
    gRPC serves the network."""
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_control: ModelControl = ModelControl.EXPLICIT
    startup_timeout_s: float = 180.0
    exit_timeout_s: int = 30
    log_verbose: int = 0
    gpu_metrics: bool = False
    """Triton's ``nv_gpu_*`` series (needs a GPU and DCGM); the CPU wheel has neither."""
    stub_hang_timeout_s: float = HANG_S
    """A Python-backend stub running one batch longer than this is stopped and its step
    reloaded (`tritonhf.server.stub_watch`); 0: never."""
    admin_key: str | None = field(default=None, repr=False)
    """Restricts the repository, shared-memory, trace and logging APIs to requests that carry
    it (`tritonhf.server.admin`); `tritonhf serve` passes ``$TRITONHF_ADMIN_KEY``."""

    def __post_init__(self) -> None:
        if self.admin_key is not None:
            check_key(self.admin_key)
        for flag, port in self.ports.items():
            if not 1 <= port <= 65535:
                raise ConfigError(f"{flag} must be in 1..65535, got {port}")
        try:
            seconds(str(self.stub_hang_timeout_s), source="--stub-hang-timeout")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if len(set(self.ports.values())) != 3:
            raise ConfigError(f"HTTP, gRPC and metrics ports must differ, got {self.ports}")

    @property
    def client_host(self) -> str:
        """Where a local client connects (a wildcard bind is reached through loopback)."""
        return _client_host(self.host)

    @property
    def http_bind(self) -> str:
        """The address the HTTP endpoint binds."""
        return self.http_host or self.host

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint."""
        return f"{_client_host(self.http_bind)}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"{self.client_host}:{self.grpc_port}"

    @property
    def ports(self) -> dict[str, int]:
        """Each port by the ``tritonhf serve`` flag that sets it."""
        return {
            "--http-port": self.http_port,
            "--grpc-port": self.grpc_port,
            "--metrics-port": self.metrics_port,
        }

    @property
    def exposure_warnings(self) -> list[str]:
        """One line for each way a client beyond this machine could take the server down."""
        warnings = []
        if self.admin_key is None and not is_loopback(self.host):
            warnings.append(open_api_warning(self.host))
        return warnings

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics endpoint."""
        return f"http://{self.client_host}:{self.metrics_port}/metrics"

    def command(
        self, binary: Path, backend_dir: Path, *, repository: Path | None = None
    ) -> list[str]:
        """The ``tritonserver`` command line; ``repository``: the path Triton gets for it."""
        return [
            str(binary),
            f"--model-repository={repository or self.repo.resolve()}",
            f"--backend-directory={backend_dir}",
            f"--model-control-mode={self.model_control.value}",
            f"--http-address={self.http_bind}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            f"--allow-gpu-metrics={str(self.gpu_metrics).lower()}",
            # Per-model latency quantiles (p50..p99.9) for the Prometheus rules and dashboards;
            # the default duration metrics are only cumulative counters.
            "--metrics-config=summary_latencies=true",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
            "--log-format=ISO8601",  # dated lines in --log-file, as in the containers
            # Ready once the startup loads are done (a failed one stops the server), and
            # still ready after a refused deploy, whose failed version Triton keeps listing
            # as UNAVAILABLE: strict readiness would report a serving server as not ready.
            "--strict-readiness=false",
            # Explicit mode loads nothing by itself: start with the whole repository loaded,
            # like "none", and keep the load/unload API for hot reloads and graceful drains.
            *(["--load-model=*"] if self.model_control is ModelControl.EXPLICIT else []),
            *(restricted_flags(self.admin_key) if self.admin_key is not None else []),
        ]


# Error lines (ISO8601, as `command` asks: "2026-11-26T08:40:49Z E 123 file.cc:7]"; glog's
# "E1126 08:40:49..."), failed rows of the model table, fatal lines.
_FAILURE_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\S+ E |E\d{4} )|UNAVAILABLE:|^error:|failed to", re.IGNORECASE
)
_STACK = re.compile(r"(\\n)+At:\\n")
"""Where a Python step's stack starts in a log line (Triton writes its newlines as ``\\n``)."""
_BENIGN_LINE = re.compile(r"CudaDriverHelper|NVML|DCGM|GPU metrics|pinned memory", re.IGNORECASE)
_FAILED_LOAD = re.compile(r"failed to load '([^']+)' version (\d+)")
EXPORT_RECOVERY_S = 5.0
"""How often a serving server looks for exports into its repository killed while moving in."""
_MISSING_MODULE = re.compile(r"No module named '([A-Za-z0-9_]+)")
"""A step's import error in Triton's log: the top-level package that is not installed."""


WORKDIR_PREFIX = "tritonhf-server-"
"""A server's work folder (its backends, the guard) in the temporary folder, with its pid."""


def remove_stale_workdirs(folder: Path) -> list[Path]:
    """Delete the work folders of servers that were killed (``kill -9``: ~3 MB each, for good).

    Those of this user whose process is gone and from which no stub runs any more.
    """
    removed = []
    for stale in folder.glob(f"{WORKDIR_PREFIX}*"):
        pid = pid_in_name(stale.name, WORKDIR_PREFIX)
        with suppress(OSError):
            gone = pid is not None and not running(pid)
            if own_folder(stale) and gone and not stubs_started_from(stale / "backends"):
                shutil.rmtree(stale, ignore_errors=True)
                removed.append(stale)
    return removed


ENV_FOLDER_GLOB = "python_env_*"


def remove_stale_env_folders(
    folder: Path = BACKEND_TMP, *, oldest_start: float | None = None
) -> list[Path]:
    """Delete the empty ``/tmp/python_env_*`` folders that killed servers left (for good).

    Triton's Python backend makes one at every start and removes it at a clean stop. One older
    than every running Triton (``oldest_start``, epoch seconds; default: read from ``/proc``)
    belongs to none of them.
    """
    if oldest_start is None:
        oldest_start = oldest_server_start()
    removed = []
    for path in folder.glob(ENV_FOLDER_GLOB):
        with suppress(OSError):  # not empty, another user's, or gone meanwhile
            if own_folder(path) and path.lstat().st_mtime < oldest_start:
                path.rmdir()
                removed.append(path)
    return removed


def _child_setup() -> None:
    """In Triton's process before it runs: stop with us, and take every descriptor allowed."""
    die_with_parent()
    raise_open_files_limit()


class TritonServer:
    """A ``tritonserver`` child process; use as a context manager to always stop it."""

    def __init__(self, config: ServerConfig, *, log_path: Path | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0
        self._watch: StubWatch | None = None
        self._recovery: threading.Event | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def exit_code(self) -> int | None:
        """How the server ended (negative: its killing signal); None while it runs or unstarted."""
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        """Start the server and block until it is ready (or raise `ServerError`)."""
        if self._process is not None:
            raise ServerError("this server is already started")
        repo = self.config.repo
        if not repo.is_dir():  # a bad --repo: a ConfigError (exit 2), like export's
            what = "is not a folder" if repo.exists() else "does not exist"
            raise ConfigError(f"model repository {repo} {what}; run `tritonhf export` first")
        if self.log_path is not None:  # else found only once the work folder is made
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with self.log_path.open("ab"):
                    pass
            except OSError as exc:
                raise ConfigError(
                    f"cannot write --log-file {self.log_path}: {exc.strerror or exc}"
                ) from None
        recover_killed_exports(repo)  # an export killed while moving in left it mixed
        dist = find_distribution()
        for warning in check_servable(
            self.config.repo,
            backends=available_backends(dist.root / "backends"),
            tensorrt_version=None,
            server="the Triton of the nvidia-pytriton wheel",
        ):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        if not any(repo.glob("*/config.pbtxt")):
            print(
                f"warning: {repo} holds no model: Triton starts serving nothing "
                "(`tritonhf export --repo ...` writes one; `tritonhf deploy` then loads it)",
                file=sys.stderr,
                flush=True,
            )
        # Before starting: Triton would fail on a busy port only after loading every model, and
        # the server that holds the port would answer the readiness poll meanwhile.
        for flag, port in self.config.ports.items():
            host = self.config.http_bind if flag == "--http-port" else self.config.host
            check_bindable(host, port, flag=flag)
        for warning in self.config.exposure_warnings:
            print(warning, file=sys.stderr, flush=True)
        if stopped := stop_orphaned_stubs():  # then their /dev/shm regions go too, next line
            print(
                f"stopped {len(stopped)} Python-backend stub(s) that a killed Triton left running",
                file=sys.stderr,
                flush=True,
            )
        work_parent = work_folder_parent()
        for warning in check_host(work_parent):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        remove_orphaned_regions()  # what servers that were killed left in /dev/shm
        remove_stale_workdirs(work_parent)
        remove_stale_env_folders()
        self._workdir = Path(
            tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=work_parent)
        )
        backend_dir = prepare_backend_dir(dist, self._workdir / "backends")
        env = server_environment(dist)
        try:
            env = with_preload(env, build_guard(self._workdir))
        except ServerError as exc:  # serve without it, and say what that exposes
            print(f"warning: {exc}", file=sys.stderr, flush=True)
        if self.log_path is not None:  # checked writable above
            self._log = self.log_path.open("ab")
            self._log_start = self._log.seek(0, io.SEEK_END)  # earlier runs' lines come before
        self._process = subprocess.Popen(  # noqa: S603  # nosec B603
            self.config.command(
                dist.binary, backend_dir, repository=plain_path_to(self.config.repo, self._workdir)
            ),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None,
            stdin=subprocess.DEVNULL,
            # Own session: Ctrl-C reaches us, and we stop the server in order.
            start_new_session=True,
            preexec_fn=_child_setup,
        )
        try:
            self.wait_ready(self.config.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self._watch = StubWatch(
            self._process.pid,
            self.config.http_url,
            explicit=self.config.model_control is ModelControl.EXPLICIT,
            headers=http_headers(self.config.admin_key),
            log=self._note,
            hang_s=self.config.stub_hang_timeout_s,
        ).start()
        if self.config.model_control is ModelControl.EXPLICIT:  # a deploy may read it any time
            self._recovery = threading.Event()
            threading.Thread(
                target=self._recover_killed_exports,
                args=(self._recovery,),
                name="tritonhf-export-recovery",
                daemon=True,
            ).start()

    def _note(self, line: str) -> None:
        """One of tritonhf's own lines (the stub watch's): on stderr, and in the log file.

        With ``--log-file`` Triton writes there and not to stderr: a log shipper reading the
        file saw Triton load a step again, and never why (the stub had died, or hung).
        """
        dated_line(line)
        if self._log is not None:
            with suppress(OSError, ValueError):  # one append: between Triton's lines
                os.write(self._log.fileno(), dated(line).encode())

    def _recover_killed_exports(self, stopped: threading.Event) -> None:
        """Every `EXPORT_RECOVERY_S`: undo exports into the repository killed while moving in.

        Serving goes on from what Triton loaded, but the next `tritonhf deploy` loads what is
        on disk: a killed move there mixes two exports (a probe deployed one: READY, wrong).
        """
        while not stopped.wait(EXPORT_RECOVERY_S):
            recover_killed_exports(self.config.repo)

    def is_ready(self) -> bool:
        """True when ``/v2/health/ready`` answers 200 (all models loaded)."""
        return is_ready(self.config.http_url)

    def wait_ready(self, timeout_s: float) -> None:
        """Poll readiness; raise `ServerError` with the log tail if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                if failed := self._failed_loads():
                    # Triton 2.51 then exits, and often crashes on its way out (SIGSEGV).
                    raise ServerError(
                        f"tritonserver stopped while starting (code {code}) because "
                        f"{', '.join(failed)} failed to load{self._tail()}"
                    )
                raise ServerError(
                    f"tritonserver exited with code {code} while starting{self._tail()}"
                )
            if self.is_ready():
                return
            time.sleep(0.25)
        raise ServerError(f"tritonserver was not ready after {timeout_s:.0f} s{self._tail()}")

    def drain(self, timeout_s: float, *, stuck: frozenset[str] = frozenset()) -> bool:
        """Unload the ensembles, then every other model; True once nothing is loaded.

        See `tritonhf.server.drain` (``stuck``: models whose dead stub was never replaced).
        Needs explicit model control (the default); a no-op (False) otherwise.
        """
        if self.config.model_control is not ModelControl.EXPLICIT:
            return False
        headers = http_headers(self.config.admin_key)
        return drain(self.config.http_url, timeout_s, headers=headers, stuck=stuck)

    @property
    def exit_patience_s(self) -> float:
        """How long Triton may take to exit after SIGTERM without a complete drain."""
        return self.config.exit_timeout_s + 5

    @property
    def stop_budget_s(self) -> float:
        """The longest a stop takes: the stub watch's look, the drain, then Triton's exit."""
        return STOP_WAIT_S + self.config.exit_timeout_s + self.exit_patience_s

    def stop(self, timeout_s: float | None = None) -> int | None:
        """Drain, then SIGTERM (Triton finishes in-flight requests), then force; return the code.

        After a complete drain Triton gets `IDLE_EXIT_GRACE_S` to exit and the stop counts as
        clean (0), see `tritonhf.server.drain.terminate`; otherwise ``timeout_s`` (default:
        `exit_patience_s`).
        """
        regions: set[str] = set()
        if self._recovery is not None:
            self._recovery.set()
            self._recovery = None
        stuck: frozenset[str] = frozenset()
        if self._watch is not None:  # first: the drain stops every stub
            self._watch.stop()
            stuck = frozenset(self._watch.unreplaced)
            regions, self._watch = self._watch.regions, None
        if self._workdir is not None:  # and those no watch saw: stopped while starting
            regions |= stub_regions(self._workdir)
        drained = False
        if self._process is not None and self._process.poll() is None:
            drained = self.drain(float(self.config.exit_timeout_s), stuck=stuck)
        process, self._process = self._process, None
        code = None
        if process is not None:
            patience = timeout_s or self.exit_patience_s
            code = terminate(process, drained=drained, timeout_s=patience)
        if self._log is not None:
            self._log.close()
            self._log = None
        if process is not None:  # its steps' busy boards and clocks (and dead servers')
            remove_stale_boards(board_dir())
        if self._workdir is not None:
            free_shared_memory(self._workdir, code, regions)
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def wait(self) -> int:
        """Block until the server exits on its own; return its exit code."""
        if self._process is None:
            raise ServerError("this server is not running")
        return self._process.wait()

    def _failed_loads(self) -> list[str]:
        """The model versions the log says failed to load (``minilm_model version 3``)."""
        text = self._run_log()
        return sorted({f"{name} version {v}" for name, v in _FAILED_LOAD.findall(text or "")})

    def _run_log(self) -> str | None:
        """What this run wrote to ``log_path`` (None without one)."""
        if self.log_path is None or not self.log_path.is_file():
            return None
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode("utf-8", errors="replace")

    def _tail(self, lines: int = 12) -> str:
        """The log lines that explain a failure: errors first, not the options table.

        Then, when a step could not import a package, the extra that brings it.
        """
        if (log := self._run_log()) is None:
            return " (see the server output above)"
        text = log.splitlines()
        relevant: dict[str, None] = {}  # each error once, without the step's Python stack
        for line in text:
            if _FAILURE_LINE.search(line) and not _BENIGN_LINE.search(line):
                relevant[_STACK.split(line, maxsplit=1)[0][:400]] = None
        tail = "\n".join(list(relevant)[-lines:] or text[-lines:])
        return f"; from {self.log_path}:\n{tail}{missing_package_hint(text)}"

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+=:@,-]+")


def plain_path_to(repo: Path, workdir: Path) -> Path:
    """``repo``'s path, or a link to it in ``workdir`` when that path is not plain ASCII.

    Triton 2.51's Python backend cannot start a stub under a path with a space (it splits the
    stub's command line, `stol` fails and the server never gets ready) or a character outside
    ASCII (the stub's imports fail with `UnicodeEncodeError`).
    """
    resolved = repo.resolve()
    if _PLAIN_PATH.fullmatch(str(resolved)):
        return resolved
    link = workdir / "repository"
    link.symlink_to(resolved, target_is_directory=True)
    return link


def stub_regions(workdir: Path) -> set[str]:
    """The ``/dev/shm`` regions of the live stubs of the Triton started from ``workdir``.

    Triton killed by a signal while it loads the models (its handler is not installed yet)
    leaves them behind, and no stub watch has seen them then.
    """
    return {
        served[2]
        for pid in stubs_started_from(workdir)
        if (served := served_by(pid)) is not None and served[2]
    }


def free_shared_memory(workdir: Path, code: int | None, regions: set[str]) -> None:
    """Delete the ``/dev/shm`` ``regions`` of a Triton started from ``workdir`` that crashed.

    Triton unlinks its regions only when it unloads the models itself. Its stubs, which map
    them, are ended with its process group (`terminate`); they are waited for (2 s at most).
    """
    if code in (0, None):
        return
    deadline = time.monotonic() + 2.0
    while stubs_started_from(workdir) and time.monotonic() < deadline:
        time.sleep(0.02)
    remove_regions(regions)


def missing_package_hint(log_lines: list[str]) -> str:
    """A line naming the extra to install; "" unless the log says a step lacks a package.

    Triton logs a step's import error as ``No module named 'tokenizers'``.
    """
    found = {m.group(1) for line in log_lines if (m := _MISSING_MODULE.search(line))}
    missing = sorted(found - {"tritonhf"})
    if not missing:
        return ""
    extra = "export" if "torch" in missing else "serve"
    return (
        f"\nthe Python steps could not import {', '.join(missing)}: install the {extra!r} "
        f"extra in this environment: pip install 'tritonhf[{extra}]'"
    )


class RestartBudget:
    """At most ``limit`` restarts of a crashed server in ``window_s``.

    A server that crashes at every start is given up on, not restarted in a loop.
    """

    def __init__(self, limit: int, window_s: float = RESTART_WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: list[float] = []

    def take(self) -> bool:
        """Use one restart; False when ``limit`` were used in the last ``window_s``."""
        now = time.monotonic()
        self._times = [t for t in self._times if now - t < self.window_s]
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


def exit_description(code: int) -> str:
    """``code -11 (SIGSEGV)`` for a signal, ``code 1`` otherwise."""
    if code < 0:
        with suppress(ValueError):
            return f"code {code} ({signal.Signals(-code).name})"
    return f"code {code}"
