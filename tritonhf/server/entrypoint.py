"""The Triton image's entrypoint: run ``tritonserver`` and drain it before it stops.

    python3 -m tritonhf.server.entrypoint [tritonserver flags...]

Starts ``tritonserver`` (from PATH) with the flags as a child and waits. On SIGTERM or SIGINT
(``docker stop``, a Kubernetes pod deletion, Ctrl-C) it drains the server as `tritonhf serve`
does (`tritonhf.server.drain`: ensembles first, so no request fails between two steps), then
sends the signal on and exits with Triton's code: 0 after a complete drain. Without explicit
model control or an HTTP endpoint there is nothing to drain through, and the signal is only
forwarded. As a container's PID 1 it also reaps the orphans re-parented to it.

Standard library only (the image installs the package without its dependencies, Python 3.10).
"""

from __future__ import annotations

import os
import signal
import subprocess  # nosec B404
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from tritonhf.server.drain import die_with_parent, drain, terminate

BINARY = "tritonserver"
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
_WAITED = STOP_SIGNALS | {signal.SIGCHLD}
_EXTRA_PATIENCE_S = 5.0
"""Without a drain: how long past ``--exit-timeout-secs`` Triton may take before it is killed."""


def _log(message: str) -> None:
    print(f"tritonhf-entrypoint: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class TritonFlags:
    """What the entrypoint needs from Triton's command line (Triton's defaults otherwise)."""

    http_url: str | None
    """``host:port`` a local client reaches Triton's HTTP endpoint at; None when HTTP is off."""
    explicit: bool
    """``--model-control-mode=explicit``: models can be unloaded, so the server can drain."""
    exit_timeout_s: float

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
            exit_timeout_s=_seconds(values.get("--exit-timeout-secs", "30")),
        )


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"--exit-timeout-secs must be a number of seconds >= 0, got {value!r}")
    return seconds


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
    while True:
        received = signal.sigwaitinfo(_WAITED)
        if received.si_signo in STOP_SIGNALS:
            return _shut_down(process, flags, received.si_signo)
        reap_orphans(keep=process.pid)
        if process.poll() is not None:
            return exit_status(process.returncode)


def _child_setup() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAITED)
    die_with_parent()


def _shut_down(process: subprocess.Popen[bytes], flags: TritonFlags, signum: int) -> int:
    name = signal.Signals(signum).name
    drained = False
    if flags.explicit and flags.http_url is not None and process.poll() is None:
        _log(f"{name}: draining (ensembles first) before stopping Triton")
        drained = drain(flags.http_url, flags.exit_timeout_s)
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
    try:
        flags = TritonFlags.parse(args)
    except ValueError as exc:  # a flag the drain reads, with a value Triton would refuse too
        _log(f"error: {exc}")
        return 2
    return supervise([BINARY, *args], flags)


if __name__ == "__main__":
    sys.exit(main())
