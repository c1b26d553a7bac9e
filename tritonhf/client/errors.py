"""Map whatever tritonclient or the network raised to one typed `ClientError`."""

from __future__ import annotations

import errno
import http.client
import re
import socket

from tritonhf.errors import (
    ClientError,
    DeployError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    PermissionDeniedError,
    ServerUnavailableError,
    WrongProtocolError,
)
from tritonhf.server.admin import ENV_VAR, RESTRICTED_MESSAGE

_UNAVAILABLE = (
    "UNAVAILABLE",
    "failed to connect",
    "connection refused",
    "Socket closed",
    "connection closed",  # geventhttpclient, when the server dies mid-request
)
_TIMEOUT = ("DEADLINE_EXCEEDED", "Deadline Exceeded", "timed out", "timeout")
_INVALID = (
    "INVALID_ARGUMENT",
    "400",
    "batch-size must be",
    "unexpected shape",
    "unexpected datatype",
)


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    value = status() if callable(status) else None
    return str(value or "")


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    value = message() if callable(message) else None
    return str(value or exc)


_REQUEST_ID = r"\[request id: .*?\](?=\s|$)"
"""The caller's request id, which Triton leads a refusal with (any text a raw client sends)."""
_NOT_OURS = rf"'[^']*'|\"[^\"]*\"|{_REQUEST_ID}"
"""What the caller named in a message: quoted names and the request id."""


def _not_ours(text: str) -> str:
    """``text`` without what the caller named: quoted names and the request id.

    Quoted: model, input and label names. A model called ``timeout-svc`` or a request id
    ``UNAVAILABLE`` must not make a refusal read as a timeout or a server that is down.
    """
    return re.sub(_NOT_OURS, "''", text)


# A row a step names (``TEXT[4]``), or a part of the message that is not the step's own words.
_ROW_OR_NOT_OURS = re.compile(rf"{_NOT_OURS}|\bTEXT\[(\d+)\]")


def shift_rows(message: str, offset: int) -> str:
    """``message`` with every row a step names (``TEXT[k]``) read as ``TEXT[offset + k]``.

    The client sends a call over the model's max batch in chunks, and a step names the row
    within its chunk; shifted by the chunk's start, it names the caller's index, as the
    client's own checks (``texts[k]``) do.
    """
    if offset == 0:
        return message

    def shifted(found: re.Match[str]) -> str:
        row = found.group(1)
        return found.group(0) if row is None else f"TEXT[{int(row) + offset}]"

    return _ROW_OR_NOT_OURS.sub(shifted, message)


def one_line(reason: str) -> str:
    """Triton's message on one line, without the Python stack a Python-backend step appends."""
    return " ".join(re.split(r"\n\s*At:\n", reason, maxsplit=1)[0].split())


def answers_http1(address: str, *, timeout_s: float = 1.0) -> bool:
    """Whether ``address`` (``host:port``) answers an HTTP/1 request, as Triton's HTTP port does."""
    host, _, port = address.partition("/")[0].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as conn:
            conn.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
            return conn.recv(5) == b"HTTP/"
    except (OSError, ValueError):
        return False


def _wrong_port(message: str, url: str, protocol: str | None) -> str | None:
    """What to say when ``url`` is reachable but speaks the other protocol, else None.

    Over HTTP, gRPC's port answers in HTTP/2 frames, which the HTTP client cannot parse. Over
    gRPC, Triton's HTTP port closes the connection, as a server going down would; only then
    is the port asked, once, whether it speaks HTTP/1.
    """
    if protocol == "http" and "Expected HTTP/" in message:
        return (
            f"cannot talk HTTP to Triton at {url}: it answered in HTTP/2, as Triton's gRPC "
            "port does; use protocol grpc (`--protocol grpc`) or the HTTP port (default 8000)"
        )
    closed = ("Socket closed", "Failed parsing HTTP/2", "Connection reset by peer")
    if protocol == "grpc" and any(k in message for k in closed) and answers_http1(url):
        return (
            f"cannot talk gRPC to Triton at {url}: it answers HTTP/1, as Triton's HTTP port "
            "does; use protocol http (`--protocol http`) or the gRPC port (default 8001)"
        )
    return None


def map_error(
    exc: BaseException,
    *,
    model: str | None,
    url: str,
    protocol: str | None = None,
    row_offset: int = 0,
    timeout_s: float | None = None,
) -> ClientError:
    """Translate ``exc`` into the narrowest `ClientError`, keeping the server's message.

    ``protocol`` (``grpc`` or ``http``), where given, lets a server that cannot be talked to
    be told apart from a port that speaks the other protocol. ``row_offset``, the index of a
    chunk's first text in the caller's list, is added to every row the message names.
    ``timeout_s``, the client's limit, is named in a timeout's message.
    """
    if isinstance(exc, ClientError):
        return exc
    status, message = _status(exc), shift_rows(_message(exc), row_offset)
    found = _not_ours(f"{status} {message}")
    # Checked first: Triton refuses a restricted API with HTTP 403, or over gRPC with status
    # UNAVAILABLE, which must not read as a server that is down (and be retried).
    if RESTRICTED_MESSAGE.search(message) or status == "403":
        return PermissionDeniedError(
            f"Triton at {url} refused the request: it needs the admin key ({message}); set "
            f"{ENV_VAR} to the key the server was started with"
        )
    # Checked before timeouts and "unavailable": a request that waited in the queue past
    # --queue-timeout-ms ("Request timeout expired") or found the queue full is overload,
    # and a full queue answers with gRPC status UNAVAILABLE; retrying at once adds load.
    if re.search(r"exceeds maximum queue size|request timeout expired", found, re.IGNORECASE):
        return OverloadedError(
            f"{model!r} at {url} is overloaded and rejected the request ({message}); "
            "back off and retry, or add capacity"
        )
    # Checked before "unavailable" (gRPC status UNAVAILABLE, HTTP 503): the server is up, in a
    # model-control mode without the load/unload API.
    if "explicit model load / unload is not allowed" in message:
        return DeployError(
            f"Triton at {url} does not load or unload models on request ({message}): it runs "
            "with --model-control none or poll; restart it with --model-control explicit (the "
            "default of `tritonhf serve`)"
        )
    # Checked before "unavailable": a failed load reads "version 2 is at UNAVAILABLE state".
    if re.search(r"load failed for model|failed to load", found, re.IGNORECASE):
        return DeployError(one_line(message))
    # A gRPC connect that timed out ("failed to connect ... timed out before receiving
    # SETTINGS frame": a server that accepts and never answers) is a server that cannot be
    # reached, not a slow request: checked as "unavailable" below, and retried.
    timed_out = any(k.lower() in found.lower() for k in _TIMEOUT)
    if isinstance(exc, TimeoutError) or (timed_out and "failed to connect" not in found.lower()):
        limit = "" if timeout_s is None else f" after {timeout_s:g} s (timeout_s; --timeout)"
        return InferenceTimeoutError(f"request to {url} timed out{limit}: {message}")
    # Checked before "unavailable" and "unknown model": Triton answers a loaded-but-not-ready
    # model with "Request for unknown model: 'x' version 1 is not at ready state" and gRPC
    # status UNAVAILABLE (HTTP 503), and one that is unloaded (or stopping) with "... 'x' has
    # no available versions".
    not_ready = r"not at ready state|is not ready|not loaded|has no available versions"
    if re.search(not_ready, found, re.IGNORECASE):
        return ModelNotReadyError(f"model {model!r} at {url} is not ready: {message}")
    # Reachable but starting or shutting down (gRPC status UNAVAILABLE): retryable, elsewhere
    # or later.
    stopping = r"server is stopping|stopped accepting new inference requests|server not ready"
    if re.search(stopping, found, re.IGNORECASE):
        return ServerUnavailableError(
            f"Triton at {url} is starting or shutting down and refused the request ({message}); "
            "retry on another replica or once it is ready"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        return ClientError(  # local, not the server: not retried
            f"this process ran out of file descriptors ({message}): raise its limit "
            "(`ulimit -n`), or close the clients it no longer uses"
        )
    # http.client.HTTPException: geventhttpclient's HTTPConnectionClosed and friends.
    if isinstance(exc, ConnectionError | OSError | http.client.HTTPException) or any(
        k.lower() in found.lower() for k in _UNAVAILABLE
    ):
        wrong_port = _wrong_port(message, url, protocol)
        if wrong_port:
            return WrongProtocolError(f"{wrong_port} ({message})")
        if "before receiving SETTINGS frame" in message:  # a listener that says nothing
            return ServerUnavailableError(
                f"Triton at {url} took the connection but did not answer ({message}): a server "
                "that is stopped, hung or out of file descriptors, or a port that is not Triton's"
            )
        return ServerUnavailableError(
            f"cannot reach Triton at {url} ({message}); is the server running "
            "(`tritonhf serve`) and is the URL/protocol right?"
        )
    if re.search(r"unknown model|not found", found, re.IGNORECASE):
        return ModelNotFoundError(
            f"the server at {url} has no model {model!r} ({message}); "
            "`tritonhf models` lists what it serves, and `tritonhf deploy --model NAME` loads a "
            "pipeline its repository holds"
        )
    # A step's stub process died (the OOM killer, a crash) and the request never reached it:
    # `tritonhf serve` reloads the step within seconds, so it is retried like a reload.
    if re.search(r"Stub process '[^']*' is not healthy", message):
        return ModelNotReadyError(
            f"model {model!r} at {url} is not ready: a process of one of its steps died "
            f"({one_line(message)}); `tritonhf serve` reloads the step within seconds (if "
            "this persists, the server's log says why the reload fails: memory, /dev/shm)"
        )
    if status in ("StatusCode.INTERNAL", "500"):  # the server's fault, whatever it quotes
        return InferenceError(
            f"request to {model!r} at {url} failed on the server: {status}: {one_line(message)}"
        )
    if any(k in found for k in _INVALID):
        return InvalidInputError(f"the server rejected the input for {model!r}: {message}")
    if "CANCELLED" in status:
        # gRPC's own words when this process cancelled the call or closed the channel.
        if re.search(r"Locally cancelled|Channel closed", message, re.IGNORECASE):
            return InferenceError(
                f"request to {model!r} at {url} was cancelled before its answer came "
                f"({message}): the client was closed while the call ran"
            )
        # Otherwise the server (or a proxy) ended the call: Triton's gRPC endpoint does so to
        # the calls it holds when it stops, after the drain. Retryable, as "server is stopping".
        return ServerUnavailableError(
            f"Triton at {url} cancelled the call before answering ({one_line(message)}): a "
            "server (or proxy) that is stopping; retry on another replica or once it is ready"
        )
    said = one_line(message)
    if "while decoding the response" in message or status in ("405", "501"):
        # An HTTP server that is not Triton's endpoint: its page (HTML) cut to a line.
        return InferenceError(
            f"{url} does not answer as Triton's HTTP endpoint ({status}: {said[:160]}): is it "
            "Triton's HTTP port (default 8000), not its metrics port or another server?"
        )
    what = f"request to {model!r}" if model else "request"
    return InferenceError(f"{what} at {url} failed: {status or 'error'}: {said}")
