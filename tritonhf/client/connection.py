"""Connections to Triton: the protocol, the address, and closing what tritonclient opens."""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.parse
import weakref
from enum import Enum
from typing import Any

from tritonhf.errors import ConfigError


class Protocol(str, Enum):
    """Wire protocol to Triton."""

    GRPC = "grpc"
    HTTP = "http"

    @property
    def default_url(self) -> str:
        """Triton's usual local endpoint for this protocol."""
        return "127.0.0.1:8001" if self is Protocol.GRPC else "127.0.0.1:8000"


# tritonclient's own defaults (no gRPC message size limit), plus a short reconnect backoff so a
# restarted server is found again within a second instead of gRPC's default of up to 2 minutes.
# Not "grpc.min_reconnect_backoff_ms": gRPC takes it as the time a connection attempt is given
# (20 s by default), and at 100 ms a server that took longer to answer (stopped for a second,
# busy) failed every call at once, whatever the call's timeout.
GRPC_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def _strip_scheme(url: str) -> str:
    for scheme in ("http://", "https://", "grpc://"):
        if url.startswith(scheme):
            return url.removeprefix(scheme).rstrip("/")
    return url


def server_address(url: str, protocol: Protocol) -> str:
    """``url`` as tritonclient takes it: ``host:port`` (HTTP: an optional base path after).

    A scheme is dropped. Anything else, a missing or out-of-range port above all (which
    tritonclient would wrap around or replace with 443), is a `ConfigError`.
    """
    address = _strip_scheme(url.strip())
    try:
        parts = urllib.parse.urlsplit(f"//{address}")
        port = parts.port
    except ValueError:  # a port that is not a number in 0-65535, a broken IPv6 literal
        parts, port = None, None
    usable = (
        parts is not None
        and bool(parts.hostname)
        and port is not None
        and port >= 1
        and not (parts.query or parts.fragment or " " in address)
        and (protocol is Protocol.HTTP or not parts.path)
    )
    if not usable:
        example = protocol.default_url
        raise ConfigError(
            f"server URL {url!r} is not host:port with a port in 1-65535 (e.g. {example})"
        )
    return address


class Opened:
    """A connection, the thread that opened it, and (HTTP) that thread's gevent hub."""

    def __init__(self, thread: threading.Thread, connection: Any, hub: Any = None) -> None:
        self.thread = thread
        self.connection = connection
        self.hub = hub
        self._closed = threading.Event()

    def close(self) -> None:
        """Close the connection (once)."""
        if not self._closed.is_set():
            self._closed.set()
            self.connection.close()


class ConnectionEnd:
    """Closes one client's HTTP connection of one thread when either goes away.

    Held only by the client's `threading.local`, whose slot for a thread is cleared when the
    client is collected (in whatever thread runs the collection) or when the thread ends (in
    that thread). The thread's gevent hub is not this client's to destroy: other clients and
    any other gevent user in the thread share it (`HubEnd` destroys it as the thread ends).
    """

    def __init__(self, opened: Opened) -> None:
        self.opened = opened

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at thread teardown: nothing may escape
            hub = self.opened.hub
            in_its_thread = threading.get_ident() == self.opened.thread.ident
            if hub is not None and hub.loop is not None and in_its_thread:
                from gevent.hub import set_hub

                # As the thread ends gevent may have forgotten its hub: closing the sockets
                # would make a new one (two more descriptors).
                set_hub(hub)
            self.opened.close()


class HubEnd:
    """Destroys a thread's gevent hub in that thread as the thread ends.

    Kept in `_THREAD_HUB`, a module-level `threading.local`, whose slot for a thread is
    cleared only when that thread ends. The hub's event loop holds two file descriptors that
    nothing else frees (a thread per request would run out of them), and destroying it from
    another thread, even once its thread had ended, crashed libev ("epoll_wait: Bad file
    descriptor", then an abort) while other threads ran their own loops. Destroyed while its
    thread lives, it broke every other HTTP client of that thread.
    """

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.connections: weakref.WeakSet[Opened] = weakref.WeakSet()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at thread teardown: nothing may escape
            if self.hub.loop is None:  # destroyed already
                return
            from gevent.hub import set_hub

            set_hub(self.hub)  # gevent may have forgotten it: see `ConnectionEnd`
            for opened in list(self.connections):  # before the loop they run on goes
                opened.close()
            self.hub.destroy(destroy_loop=True)


_THREAD_HUB = threading.local()
_REINIT_REGISTERED = threading.Event()


def reinit_gevent_in_forked_children() -> None:
    """Have every process forked from this one start gevent afresh (registered once).

    A forked child inherits its thread's gevent hub and event loop in the parent's state: an
    HTTP client it opened hung for good, whatever its timeout, once the parent had used HTTP.
    """
    if not _REINIT_REGISTERED.is_set():
        _REINIT_REGISTERED.set()
        os.register_at_fork(after_in_child=_reinit_gevent)


def _reinit_gevent() -> None:
    import gevent

    gevent.reinit()


def hub_end(hub: Any) -> HubEnd:
    """The `HubEnd` of the calling thread's gevent hub ``hub``."""
    end: HubEnd | None = getattr(_THREAD_HUB, "end", None)
    if end is None or end.hub is not hub:
        end = _THREAD_HUB.end = HubEnd(hub)
    return end
