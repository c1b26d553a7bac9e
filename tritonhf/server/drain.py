"""Stop a ``tritonserver`` process without failing the requests it is serving.

On SIGTERM Triton stops each model's scheduler at once, so a request between two ensemble steps
is refused by the second. A drain first unloads the ensembles: Triton refuses new requests to
them while their in-flight ones complete on the still-loaded steps. Then it unloads every other
model, finishing what was sent to them directly, and only then is Triton sent SIGTERM.

Used by the launcher (`tritonhf serve`, the tests) and by the Triton image's entrypoint
(`tritonhf.server.entrypoint`), which runs on the image's Python 3.10 with the package installed
without its dependencies: this module imports the standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess  # nosec B404
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

IDLE_EXIT_GRACE_S = 5.0
"""After every model unloaded: how long Triton may take to exit before it is ended."""
_LOADED = frozenset({"READY", "LOADING", "UNLOADING"})
_UNLOAD_AGAIN_S = 1.0
"""How often an unload is asked again of a model still listed READY or LOADING (one that was
loading when first asked, e.g. under a concurrent deploy)."""
_ATTEMPTS = 3
"""Tries of one repository call that got no answer at all (a connection reset or refused)."""
_RETRY_PAUSE_S = 0.2
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def die_with_parent() -> None:
    """In the child (``preexec_fn``): get SIGTERM if the process that started it dies (Linux).

    Without it, a killed test run, CLI or entrypoint would leave a server holding its ports.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def is_ready(http_url: str) -> bool:
    """True when ``/v2/health/ready`` of the server at ``host:port`` answers 200."""
    return _health(http_url, "ready")


def is_live(http_url: str) -> bool:
    """True when ``/v2/health/live`` of the server at ``host:port`` answers 200."""
    return _health(http_url, "live")


def _health(http_url: str, which: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/health/{which}", timeout=2) as response:  # nosec B310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def drain(
    http_url: str,
    timeout_s: float,
    *,
    headers: Mapping[str, str] | None = None,
    stuck: frozenset[str] = frozenset(),
) -> bool:
    """Unload the ensembles, then every other model; True once nothing is loaded.

    Needs a live server in explicit model-control mode (the caller checks the mode); live,
    not ready: with ``--strict-readiness`` one model that failed to load makes the server
    unready, and the pipelines that serve still deserve a drain. A server that does not
    answer (or refuses the repository API: ``headers`` carry the admin key, see
    `tritonhf.server.admin.http_headers`) is left to SIGTERM (False). Best effort within
    ``timeout_s``. The ``stuck`` models (a stub died and was never replaced: Triton 2.51 never
    finishes unloading them) are not waited for: the drain counts as complete without them,
    so the stop does not spend the drain's and Triton's whole timeouts on them.
    """
    if not is_live(http_url):
        log.warning("no drain: the server at %s is not live; SIGTERM stops it", http_url)
        return False
    if stuck:
        log.warning(
            "not waiting for %s in the drain: a Python-backend stub of it died and was not "
            "replaced, and Triton 2.51 never finishes unloading such a model",
            ", ".join(sorted(stuck)),
        )
    repository = _Repository(
        http_url, deadline=time.monotonic() + timeout_s, headers=headers, ignored=stuck
    )
    drained = _unload_all(repository)
    if not drained:
        # Said, because the stop may then fail (Triton ends requests still in flight and can
        # exit 1): this line tells why.
        log.warning("drain incomplete (%s); SIGTERM stops the rest", repository.failure)
    return drained


def _unload_all(repository: _Repository) -> bool:
    """Unload the ensembles, then the rest; again until nothing is loaded (or the deadline).

    A deploy under way can load a step meanwhile, and Triton then loads the ensembles that use
    it again: so the steps go only in a round that finds no ensemble loaded, and every round
    looks again.
    """
    while True:
        loaded = repository.loaded()
        if loaded is None:
            return False
        if not loaded:
            return True
        ensembles = sorted(name for name in loaded if repository.is_ensemble(name))
        if not repository.unload(ensembles or sorted(loaded)):
            return False


def terminate(
    process: subprocess.Popen[bytes],
    *,
    drained: bool,
    timeout_s: float,
    signum: int = signal.SIGTERM,
) -> int:
    """Send ``signum``, wait, force it if it lingers; return the exit code (0 after a drain).

    Once every model has unloaded nothing is in flight, and what can still hold Triton up is an
    idle HTTP keep-alive connection of some client: Triton waits for those until
    ``--exit-timeout-secs``, then exits 1. So after a complete drain it gets
    `IDLE_EXIT_GRACE_S`, then is ended, and the shutdown counts as clean, as it does when
    Triton itself exits 1 then (seen once in a full test run on a loaded machine: its log ended
    cleanly, "0 live models"). Without a drain it gets ``timeout_s``. Expects ``process`` to
    lead its own process group (``start_new_session``): what is left of the group
    (Python-backend stubs of a server that died abruptly) is ended.
    """
    if process.poll() is None:
        process.send_signal(signum)
    try:
        code = process.wait(timeout=IDLE_EXIT_GRACE_S if drained else timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    if drained:  # nothing was in flight: how Triton tore down its endpoints is no failure
        code = 0
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return code


class _Repository:
    """Triton's model-repository HTTP API, every call bounded by one deadline."""

    def __init__(
        self,
        http_url: str,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        ignored: frozenset[str] = frozenset(),
    ) -> None:
        self._base = f"http://{http_url}"
        self._deadline = deadline
        self._headers = dict(headers or {})
        self._ignored = ignored
        self.failure = "no failure"
        """What went wrong last: a call without answer, or models still loaded at the deadline."""

    def loaded(self, states: frozenset[str] = _LOADED) -> set[str] | None:
        """Models the index lists in ``states`` (None: the index did not answer).

        By default READY, LOADING (a deploy or load under way) and UNLOADING.
        """
        index = self._call("POST", "/v2/repository/index")
        if not isinstance(index, list):
            return None
        listed = {entry.get("name", "") for entry in index if entry.get("state") in states}
        return listed - self._ignored

    def is_ensemble(self, name: str) -> bool:
        """True when the loaded configuration of ``name`` is an ensemble."""
        config = self._call("GET", f"/v2/models/{name}/config")
        return isinstance(config, dict) and config.get("platform") == "ensemble"

    def unload(self, names: list[str]) -> bool:
        """Unload ``names``; True once the index lists none of them as loaded."""
        pending = list(names)
        # An unloading model already answers "not ready" while its requests still run: wait
        # until the index no longer lists it as READY, LOADING or UNLOADING.
        while time.monotonic() < self._deadline:
            for name in pending:
                self._call("POST", f"/v2/repository/models/{name}/unload")
            asked = time.monotonic()
            while time.monotonic() - asked < _UNLOAD_AGAIN_S:
                loaded = self.loaded()
                if loaded is None:  # the server stopped answering: SIGTERM decides the rest
                    return False
                if not loaded.intersection(names):
                    return True
                if time.monotonic() >= self._deadline:
                    self.failure = f"still loaded at the deadline: {sorted(loaded & set(names))}"
                    return False
                time.sleep(0.05)
            # Asked again: a model that was loading when asked is READY (or still LOADING).
            again = self.loaded(frozenset({"READY", "LOADING"}))
            if again is None:
                return False
            pending = sorted(again.intersection(names))
        still = self.loaded()  # UNLOADING ones too: a model that never finishes unloading
        self.failure = (
            f"still loaded at the deadline: {sorted((still or set(pending)) & set(names))}"
        )
        return False

    def _call(self, method: str, path: str) -> Any:
        """The decoded JSON answer, or None when the server did not answer it."""
        request = urllib.request.Request(f"{self._base}{path}", method=method)  # noqa: S310
        # Connection: close, so this request's own connection never delays Triton's exit.
        request.add_header("Connection", "close")
        for name, value in self._headers.items():
            request.add_header(name, value)
        body = b"{}" if method == "POST" else None
        for attempt in range(1, _ATTEMPTS + 1):
            timeout = max(self._deadline - time.monotonic(), 0.1)
            try:
                with urllib.request.urlopen(request, data=body, timeout=timeout) as response:  # noqa: S310  # nosec B310
                    text = response.read()
                break
            except urllib.error.HTTPError as error:
                # Answered, and refused: a 403 (the repository API is restricted and the key
                # is missing or wrong). Draining is best effort; SIGTERM follows either way.
                self.failure = f"{method} {path} answered HTTP {error.code}"
                return None
            except (urllib.error.URLError, OSError) as error:
                # No answer at all (reset, refused, timed out): asked again while time is left.
                self.failure = f"{method} {path} got no answer: {error}"
                if attempt == _ATTEMPTS or time.monotonic() + _RETRY_PAUSE_S >= self._deadline:
                    return None
                time.sleep(_RETRY_PAUSE_S)
        try:
            return json.loads(text) if text else None
        except ValueError:
            self.failure = f"{method} {path} answered something other than JSON"
            return None
