"""The Triton image's entrypoint: run ``tritonserver`` and drain it before it stops.

    python3 -m tritonhf.server.entrypoint [tritonserver flags...]

Starts ``tritonserver`` (from PATH) with the flags as a child and waits. On SIGTERM or SIGINT
(``docker stop``, a Kubernetes pod deletion, Ctrl-C) it drains the server as `tritonhf serve`
does (`tritonhf.server.drain`: ensembles first, so no request fails between two steps), then
sends the signal on and exits with Triton's code: 0 after a complete drain. Without explicit
model control or an HTTP endpoint there is nothing to drain through, and the signal is only
forwarded. As a container's PID 1 it also reaps the orphans re-parented to it. While Triton
runs it reloads a step whose Python-backend stub died (`tritonhf.server.stub_watch`).

With ``TRITONHF_ADMIN_KEY`` set it adds the flags that restrict Triton's repository, shared-memory,
trace and logging APIs to requests carrying the key (`tritonhf.server.admin`), unless the flags
already restrict an API (the user's setting wins), and drains with the header. Unset, it warns:
anyone who reaches the ports can then unload models and load code.

Standard library only (the image installs the package without its dependencies, Python 3.10).
"""

from __future__ import annotations

import os
import signal
import subprocess  # nosec B404
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from tritonhf.errors import ServerError
from tritonhf.server.admin import (
    ENV_VAR,
    RESTRICTED_APIS,
    admin_key,
    has_restricted_flags,
    restricted_flags,
)
from tritonhf.server.drain import die_with_parent, drain, terminate
from tritonhf.server.host import check_host
from tritonhf.server.process import raise_open_files_limit
from tritonhf.server.stub_watch import (
    HANG_ENV,
    HANG_S,
    StubWatch,
    dated_line,
    hang_seconds,
    seconds,
)
from tritonhf.telemetry import telemetry_off

BINARY = "tritonserver"
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
_WAITED = STOP_SIGNALS | {signal.SIGCHLD}
_EXTRA_PATIENCE_S = 5.0
"""Without a drain: how long past ``--exit-timeout-secs`` Triton may take before it is killed."""


def _log(message: str) -> None:
    dated_line(message, source="tritonhf-entrypoint")  # beside Triton's lines, in one write


@dataclass(frozen=True)
class TritonFlags:
    """What the entrypoint needs from Triton's command line (Triton's defaults otherwise)."""

    http_url: str | None
    """``host:port`` a local client reaches Triton's HTTP endpoint at; None when HTTP is off."""
    explicit: bool
    """``--model-control-mode=explicit``: models can be unloaded, so the server can drain."""
    exit_timeout_s: float
    drain_headers: dict[str, str] = field(default_factory=dict, repr=False)
    """What the drain's requests carry: the header of an ``--http-restricted-api`` that
    restricts the repository API (it holds the key, hence no repr)."""
    stub_hang_s: float = HANG_S
    """From ``$TRITONHF_STUB_HANG_TIMEOUT_S``: how long one batch may run before the stub watch
    stops its stub (0: never)."""

    @classmethod
    def parse(cls, args: Sequence[str]) -> TritonFlags:
        """Read ``--key=value`` and ``--key value`` flags; the last of a repeated key wins."""
        values = _flag_values(args)
        address = values.get("--http-address", "0.0.0.0")  # noqa: S104  # nosec B104
        host = "127.0.0.1" if address in ("0.0.0.0", "") else address  # noqa: S104  # nosec B104
        if ":" in host:  # an IPv6 address
            host = "::1" if host == "::" else host
            host = f"[{host}]"
        http_on = values.get("--allow-http", "true").lower() not in ("false", "0", "no")
        return cls(
            http_url=f"{host}:{values.get('--http-port', '8000')}" if http_on else None,
            explicit=values.get("--model-control-mode", "none") == "explicit",
            exit_timeout_s=seconds(
                values.get("--exit-timeout-secs", "30"), source="--exit-timeout-secs"
            ),
            drain_headers=_repository_header(args),
        )


def _repository_header(args: Sequence[str]) -> dict[str, str]:
    """The header an ``--http-restricted-api=<apis>:<header>=<value>`` asks of the repository API.

    Triton may take the flag several times, one group of APIs each.
    """
    for i, arg in enumerate(args):
        key, equals, setting = arg.partition("=")
        if key != "--http-restricted-api":
            continue
        if not equals and i + 1 < len(args):
            setting = args[i + 1]
        apis, _, header = setting.partition(":")
        name, _, value = header.partition("=")
        if "model-repository" in apis.split(",") and name:
            return {name: value}
    return {}


def with_admin_key(args: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """``args`` plus the flags that restrict the admin APIs to ``$TRITONHF_ADMIN_KEY``.

    Unchanged when the key is unset (with a warning) or ``args`` restrict an API already.
    """
    key = admin_key(os.environ if environ is None else environ)
    if has_restricted_flags(args):
        _log("the flags restrict Triton's APIs already; not adding the admin key's")
        if not _repository_header(args):
            _log(
                "WARNING: they leave the model-repository API open over HTTP: anyone who "
                "reaches the ports can unload every model and load new ones that run their code"
            )
        return list(args)
    if key is None:
        _log(
            f"WARNING: {ENV_VAR} is not set, so Triton's model-repository API is open: anyone "
            "who reaches its HTTP/gRPC ports can unload every model and load new ones that "
            "run their own code. Set it (a Kubernetes Secret, or the environment of docker "
            f"compose) to restrict {', '.join(RESTRICTED_APIS)} to requests carrying it."
        )
        return list(args)
    _log(f"{', '.join(RESTRICTED_APIS)} need the header of {ENV_VAR}")
    return [*args, *restricted_flags(key)]


def _flag_values(args: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        key, equals, value = arg.partition("=")
        if not equals and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
        values[key] = value
    return values


def reap_orphans(keep: int) -> None:
    """Reap every exited child but ``keep`` (Triton, whose status `subprocess` collects).

    PID 1 adopts the processes orphaned anywhere in the container; unreaped they stay zombies.
    """
    while True:
        try:
            # WNOWAIT: look without reaping, so Triton's own status is left for Popen.
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in (0, keep):
            return
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            return


def exit_status(code: int) -> int:
    """A child's return code as a shell reports it: 128 + N when signal N ended it."""
    return 128 - code if code < 0 else code


def supervise(command: Sequence[str], flags: TritonFlags) -> int:
    """Run ``command`` until it exits or a stop signal comes; return the exit status."""
    # Signals are taken synchronously (sigwaitinfo), so no handler interrupts the drain or
    # the start; the child unblocks them before it runs Triton.
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    try:
        process = subprocess.Popen(  # noqa: S603  # nosec B603
            list(command),
            stdin=subprocess.DEVNULL,
            # Own session: a terminal's Ctrl-C reaches only the entrypoint, which drains first.
            start_new_session=True,
            preexec_fn=_child_setup,
        )
    except OSError as exc:
        _log(f"cannot start {command[0]}: {exc}")
        return 127
    watch = None
    if flags.http_url is not None:  # started now: it finds the stubs as Triton starts them
        watch = StubWatch(
            process.pid, flags.http_url, explicit=flags.explicit, headers=flags.drain_headers,
            log=_log, hang_s=flags.stub_hang_s,
        ).start()  # fmt: skip
    while True:
        received = signal.sigwaitinfo(_WAITED)
        if received.si_signo in STOP_SIGNALS:
            stuck: frozenset[str] = frozenset()
            if watch is not None:  # first: the drain stops every stub
                watch.stop()
                stuck = frozenset(watch.unreplaced)
            return _shut_down(process, flags, received.si_signo, stuck=stuck)
        reap_orphans(keep=process.pid)
        if process.poll() is not None:
            return exit_status(process.returncode)


def _child_setup() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAITED)
    die_with_parent()
    raise_open_files_limit()


def _shut_down(
    process: subprocess.Popen[bytes],
    flags: TritonFlags,
    signum: int,
    *,
    stuck: frozenset[str] = frozenset(),
) -> int:
    name = signal.Signals(signum).name
    drained = False
    if flags.explicit and flags.http_url is not None and process.poll() is None:
        _log(f"{name}: draining (ensembles first) before stopping Triton")
        drained = drain(
            flags.http_url, flags.exit_timeout_s, headers=flags.drain_headers, stuck=stuck
        )
        _log("drained: no model loaded" if drained else "drain incomplete; Triton decides the rest")
    else:
        _log(f"{name}: forwarding it to Triton (draining needs explicit model control and HTTP)")
    code = terminate(
        process,
        drained=drained,
        timeout_s=flags.exit_timeout_s + _EXTRA_PATIENCE_S,
        signum=signal.SIGTERM if drained else signum,
    )
    return exit_status(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tritonserver`` with ``argv`` (default: this process's arguments)."""
    args = list(sys.argv[1:] if argv is None else argv)
    telemetry_off(os.environ)  # Triton's Python steps inherit it
    try:
        flags = replace(  # bad flags first, before the key's warning
            TritonFlags.parse(args),
            stub_hang_s=hang_seconds(os.environ.get(HANG_ENV), source=f"${HANG_ENV}"),
        )
        args = with_admin_key(args)
        flags = replace(flags, drain_headers=_repository_header(args))
    except ValueError as exc:
        # A flag the drain reads, with a value Triton would refuse too, or an unusable
        # $TRITONHF_ADMIN_KEY (a ConfigError): serving open when a key was meant is worse.
        _log(f"error: {exc}")
        return 2
    try:
        for warning in check_host(None):
            _log(f"warning: {warning}")
    except ServerError as exc:  # Triton would abort (SIGABRT) while loading the models
        _log(f"error: {exc}")
        return 1
    return supervise([BINARY, *args], flags)


if __name__ == "__main__":
    sys.exit(main())
