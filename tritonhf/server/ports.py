"""Free local ports for servers started by tests, benchmarks and scripts; a port check."""

from __future__ import annotations

import socket
from contextlib import ExitStack

from tritonhf.errors import ConfigError


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports that were free on ``host`` a moment ago (held together, so they all differ)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def check_bindable(host: str, port: int, *, flag: str = "--port") -> None:
    """Raise `ConfigError` unless a server could listen on ``host:port`` now.

    ``flag`` is the option that chose the port, named in the message.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another {flag} "
                "or --host"
            ) from None
