"""The admin key: which Triton APIs need it, the header that carries it, and Triton's flags.

With ``TRITONHF_ADMIN_KEY`` set, Triton refuses the APIs in `RESTRICTED_APIS` to a request
without the header `HEADER` carrying the key: HTTP answers 403, gRPC ``UNAVAILABLE`` (see
`RESTRICTED_MESSAGE`). Inference, health, metadata, model config and statistics stay open.

The key comes from the environment only: a command-line flag would leak into shell history and
``ps``. Triton itself receives it in its argv (``--http-restricted-api``), which is unavoidable:
it has no other way to take it, so anyone who can list the server's processes can read it.

Standard library only (and `tritonhf.errors`): the Triton image's entrypoint imports this
module (Python 3.10, the package installed without its dependencies).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence

from tritonhf.errors import ConfigError

ENV_VAR = "TRITONHF_ADMIN_KEY"
HEADER = "tritonhf-admin-key"
"""The HTTP header that carries the key (gRPC: `GRPC_HEADER`)."""
GRPC_HEADER = f"triton-grpc-protocol-{HEADER}"
"""Triton's gRPC frontend looks for the header under this prefix (``triton-grpc-protocol-``)."""
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
"""model-repository: index, load (a Python-backend model uploaded with a load runs code),
unload. shared-memory: registering regions makes Triton map memory a caller names. trace and
logging: both change the server for everyone (trace rate and files, log level and log file).
tritonhf needs none of the four to serve, so all of them take the key."""
RESTRICTED_FLAGS = ("--http-restricted-api", "--grpc-restricted-protocol")
RESTRICTED_MESSAGE = re.compile(r"This (API|protocol) is restricted, expecting header")
"""Triton 2.51's answer to a restricted call without the right header (HTTP 403, gRPC
UNAVAILABLE)."""
MIN_KEY_LENGTH = 16
_KEY = re.compile(r"[!-~]+")  # visible ASCII: a valid HTTP header and gRPC metadata value


def check_key(key: str) -> str:
    """``key`` if Triton and both protocols can carry it; `ConfigError` otherwise."""
    if not _KEY.fullmatch(key) or len(key) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"{ENV_VAR} must be at least {MIN_KEY_LENGTH} visible ASCII characters without "
            f"spaces (got {len(key)} characters); generate one with `openssl rand -hex 32`"
        )
    return key


def admin_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The key in ``TRITONHF_ADMIN_KEY`` (of ``environ``, default the process's); None if unset.

    Empty counts as unset (compose passes an unset host variable through as empty).
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return check_key(value) if value else None


def restricted_flags(key: str) -> list[str]:
    """The two ``tritonserver`` flags that put `RESTRICTED_APIS` behind ``key``."""
    check_key(key)
    setting = f"{','.join(RESTRICTED_APIS)}:{HEADER}={key}"
    return [f"{flag}={setting}" for flag in RESTRICTED_FLAGS]


def has_restricted_flags(args: Sequence[str]) -> bool:
    """True when ``args`` already restrict an API (the user's own setting wins)."""
    return any(arg.split("=", 1)[0] in RESTRICTED_FLAGS for arg in args)


def http_headers(key: str | None) -> dict[str, str]:
    """The HTTP headers of a restricted call (none without a key)."""
    return {HEADER: key} if key else {}


def grpc_headers(key: str | None) -> dict[str, str]:
    """The gRPC metadata of a restricted call (none without a key)."""
    return {GRPC_HEADER: key} if key else {}


def is_loopback(host: str) -> bool:
    """True when a server bound to ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def open_api_warning(host: str) -> str:
    """The one-line warning for a server bound to ``host`` without a key."""
    return (
        f"warning: {ENV_VAR} is not set and Triton listens on {host}: anyone who reaches its "
        "HTTP/gRPC ports can unload models and load new ones (running their code); "
        f"set {ENV_VAR} (e.g. `export {ENV_VAR}=$(openssl rand -hex 32)`) to restrict "
        f"{', '.join(RESTRICTED_APIS)}"
    )
