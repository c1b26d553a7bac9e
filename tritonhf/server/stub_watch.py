"""Reload a model whose Python-backend stub died, which Triton 2.51 would keep failing.

Triton runs each instance of a Python-backend model in a stub process. When a stub dies (the
kernel's OOM killer, a crash in a native library, ``kill -9``) Triton 2.51 neither restarts it
nor marks the model unready: ``/v2/health/ready`` stays 200 and every request that reaches the
instance fails with "Stub process '<model>_0_0' is not healthy", until the model is loaded
again (tried: reloading with the unchanged config is a no-op, unloading takes the ensemble down
with it).

`StubWatch` polls the server's children: it notes which model version each live stub serves
(its command line names ``<repo>/<model>/<version>/model.py``) and, when one has died (Triton
reaps the stubs it stops itself, and leaves those that died on their own as zombies; see
`StubWatch.scan`), loads that model again with its served config, pinned to the versions it
serves and with a ``tritonhf_reloaded`` parameter that makes the config new. Triton then starts
fresh instances beside the broken ones and switches to them; the ensemble stays READY. Requests
that reached a dead stub before the reload still fail. A model reloaded less than `QUIET_S` ago
waits for the rest of that window, so a stub that dies at every start is retried twice a
minute, not in a loop; a reload that fails (a model file broken since the start, Triton too
busy to answer) is tried again when that window ends, until one succeeds. A stub that dies
while Triton is still loading its version cannot be helped: Triton 2.51 waits for it forever,
so the load (a deploy) never ends; the watch says so, once. Needs the load API: explicit model
control. The watch's thread outlives a look that fails and a log that cannot be written.

A stub that hangs is stopped, so that it dies and is reloaded the same way: one that is stopped
(SIGSTOP) for `STOPPED_S`, which Triton fails every request sent to, and one that has run one
batch for longer than ``hang_s`` (a deadlock, which Triton's health check does not see), by
the clock its step keeps (`tritonhf.backends.execute_clock`).

When a request was inside the stub that died, Triton 2.51 never releases the replaced
instances: their surviving stubs (a model's weights each) would live until the server exits.
The watch stops the ones still running `REPLACED_GRACE_S` after the reload; Triton routes
nothing to them by then.

Standard library only: the container's entrypoint runs it too (`tritonhf.server.entrypoint`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tritonhf.backends.busy import owned
from tritonhf.backends.execute_clock import batch_started_ns, clock_path
from tritonhf.server.process import PROC, children

STUB = "triton_python_backend_stub"


def dated(line: str, *, source: str = "tritonhf") -> str:
    """One of tritonhf's own lines, dated as Triton's ISO8601 lines are, newline included."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {source}: {line}\n"


def dated_line(line: str, *, source: str = "tritonhf") -> None:
    """Write one of tritonhf's own lines to stderr, dated (`dated`).

    In one write, newline included: Triton writes to the same stderr, and `print`'s two
    writes (stderr writes through) let a line of Triton's land between text and newline.
    """
    sys.stderr.write(dated(line, source=source))
    sys.stderr.flush()


RELOADED = "tritonhf_reloaded"
"""The config parameter a reload sets (to the time of the reload)."""
POLL_S = 1.0
QUIET_S = 30.0
"""A model is reloaded at most once in this many seconds (a later death waits for the rest of
the window): a stub that dies at every start must not keep Triton loading."""
LOAD_WAIT_S = 600.0
"""How long a reload may take (Triton loads the model's weights again)."""
READ_TIMEOUT_S = 10.0
"""How long the watch waits for Triton's index or a config: a server out of file descriptors
queues the connection for good, and the watch must go on watching."""
STOP_WAIT_S = 5.0
"""How long stopping waits for a look in progress (a reload may take `LOAD_WAIT_S`)."""
REPLACED_GRACE_S = 60.0
"""How long the stubs of the instances a reload replaced may run on (finishing the requests
they had) before the watch stops them."""
HANG_S = 300.0
"""How long one batch may run before its stub counts as hung (``tritonhf serve
--stub-hang-timeout``; 0: never)."""
HANG_ENV = "TRITONHF_STUB_HANG_TIMEOUT_S"
"""Where the container's entrypoint reads ``hang_s`` from."""
STOPPED_S = 5.0
"""How long a stub may stay stopped (SIGSTOP) before the watch kills it."""


def hang_seconds(value: str | None, *, source: str) -> float:
    """A hang limit from its text (None: `HANG_S`); see `seconds`."""
    return HANG_S if value is None else seconds(value, source=source)


def seconds(value: str, *, source: str) -> float:
    """A number of seconds >= 0 from its text.

    ValueError otherwise, naming ``source`` (a flag, a variable).
    """
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise ValueError(f"{source} must be a number of seconds >= 0, got {value!r}")
    return number


class Reload(Enum):
    """What became of a reload."""

    DONE = "done"
    NOT_NEEDED = "not needed"
    """The versions serve no more, or the server does not let tritonhf load models."""
    FAILED = "failed"
    """Tried again when the model's quiet window ends."""


@dataclass(frozen=True)
class DeadStub:
    """A stub that died while Triton still served its instance."""

    pid: int
    model: str
    version: str


def _state(pid: int) -> str:
    """The process's state letter (``Z``: a zombie), ``""`` when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def _rss_mb(pid: int) -> int:
    """The process's resident memory in MB (0 when it cannot be read)."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    kilobytes = next(
        (line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), "0"
    )
    return int(kilobytes) // 1024


def _command(pid: int) -> str:
    """The process's command name (first 15 characters), which a zombie still has."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return ""
    return stat.partition("(")[2].rpartition(")")[0]


def served_by(pid: int) -> tuple[str, str, str] | None:
    """(model, version, shared-memory region) of a live stub; None for another child.

    Read from its arguments: ``model.py``'s path, then the region's name.
    """
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if len(argv) < 3 or not argv[0].endswith(STUB.encode()):
        return None
    model_py = Path(argv[1].decode(errors="replace"))
    return model_py.parent.parent.name, model_py.parent.name, argv[2].decode(errors="replace")


class StubWatch:
    """Poll ``server_pid``'s stubs on a thread; reload the model of each one that dies."""

    def __init__(
        self,
        server_pid: int,
        http_url: str,
        *,
        explicit: bool,
        headers: Mapping[str, str] | None = None,
        log: Callable[[str], None] = print,
        poll_s: float = POLL_S,
        hang_s: float = HANG_S,
    ) -> None:
        self.server_pid = server_pid
        self.http_url = http_url
        self.explicit = explicit
        self.headers = dict(headers or {})
        self.log = log
        self.poll_s = poll_s
        self.hang_s = hang_s
        self._serving: dict[int, tuple[str, str]] = {}
        self._reloaded_at: dict[str, float] = {}
        self._pending: dict[str, set[str]] = {}  # died, waiting for the quiet window to end
        self._failed: set[str] = set()  # whose last reload failed (tried again)
        self.unreplaced: set[str] = set()
        """Models with a stub that died and no reload since: Triton 2.51 never finishes
        unloading them (it waits for the dead stub), so a drain does not wait for them."""
        self._replaced: dict[int, tuple[str, float]] = {}  # pid -> (model, stop it after)
        self._zombies: set[int] = set()  # seen once as zombies
        self._buried: set[int] = set()  # zombies dealt with (Triton never reaps them)
        self._stopped_since: dict[int, float] = {}  # serving stubs seen stopped (SIGSTOP)
        self._batch_seen: dict[int, int] = {}  # serving stub -> its batch start at the last look
        self.regions: set[str] = set()
        """The ``/dev/shm`` regions of every stub seen: what a crashed Triton leaves there."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tritonhf-stub-watch", daemon=True)

    def start(self) -> StubWatch:
        """Start polling; returns self."""
        self.scan()  # the stubs of the startup loads, before any can die unnoticed
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (before the server is drained or stopped, whose stubs exit then)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=STOP_WAIT_S)
            if self._thread.is_alive():
                self._say(
                    f"the stub watch still waits on Triton after {STOP_WAIT_S:.0f} s (a reload, "
                    "or a server that does not answer): stopping without it"
                )

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001  # the watch outlives any one look
                self._say(f"the stub watch's look failed ({exc!r}); looking again")

    def _say(self, line: str) -> None:
        """Log ``line``; a log that cannot be written (a full disk) must not stop the watch."""
        with suppress(Exception):
            self.log(line)

    def tick(self) -> None:
        """Scan once; reload each model with a dead stub whose quiet window has ended."""
        self._stop_hung()
        for stub in self.scan():
            waiting = self._pending.setdefault(stub.model, set())
            if not waiting and self.explicit and (left := self._quiet_left(stub.model)) > 0:
                self._say(
                    f"the Python-backend stub of {stub.model} (version {stub.version}) died "
                    f"again within {QUIET_S:.0f} s of its reload: reloading it in {left:.0f} s"
                )
            waiting.add(stub.version)
            self.unreplaced.add(stub.model)
        for model in list(self._pending):
            if self._stop.is_set():
                return
            if not self.explicit or self._quiet_left(model) <= 0:
                versions = self._pending.pop(model)
                if self.recover(model, versions) is Reload.FAILED:
                    self._pending[model] = versions  # again when its quiet window ends
        self._stop_replaced()

    def _stop_hung(self) -> None:
        """Kill the serving stubs that are stopped or stuck in one batch: the scans reload them.

        Triton 2.51 replaces neither: it fails every request sent to a stopped stub ("not
        healthy"), and a deadlocked one holds its request for ever.
        """
        for pid, (model, version) in list(self._serving.items()):
            if (why := self._hung(pid)) is not None:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._say(
                    f"the Python-backend stub of {model} (version {version}) {why}: stopping "
                    f"it, so that {model} is reloaded"
                )

    def _hung(self, pid: int) -> str | None:
        """Why the serving stub ``pid`` counts as hung, or None."""
        state = _state(pid)
        if state in ("", "Z", "X"):  # dead already: the scans deal with it
            return None
        if state == "T":
            since = self._stopped_since.setdefault(pid, time.monotonic())
            if time.monotonic() - since >= STOPPED_S:
                return f"has been stopped for {STOPPED_S:.0f} s (Triton fails its requests)"
        else:
            self._stopped_since.pop(pid, None)
        if self.hang_s <= 0:
            return None
        started = batch_started_ns(self.server_pid, pid)
        seen, self._batch_seen[pid] = self._batch_seen.get(pid), started
        running_s = (time.monotonic_ns() - started) / 1e9
        if started and started == seen and running_s >= self.hang_s:  # twice: no torn read
            return (
                f"has run one batch for {running_s:.0f} s (--stub-hang-timeout "
                f"{self.hang_s:g}): a deadlock Triton does not see"
            )
        return None

    def _forget(self, pid: int) -> None:
        """Drop what the watch knew of a stub that serves no more, and its clock file.

        Gone (Triton reaped it), dead, or replaced by a reload.
        """
        self._serving.pop(pid, None)
        self._stopped_since.pop(pid, None)
        self._batch_seen.pop(pid, None)
        clock = clock_path(self.server_pid, pid)
        if owned(clock):  # another user's under that name is theirs
            with suppress(OSError):
                clock.unlink()

    def _stop_replaced(self) -> None:
        """Kill the stubs of replaced instances that Triton kept past `REPLACED_GRACE_S`."""
        stopped: dict[str, list[int]] = {}
        for pid, (model, deadline) in list(self._replaced.items()):
            if _state(pid) in ("", "Z", "X"):  # Triton released the instance, or it died
                del self._replaced[pid]
            elif time.monotonic() >= deadline:
                del self._replaced[pid]
                if (served := served_by(pid)) is not None and served[0] == model:
                    megabytes = _rss_mb(pid)
                    os.kill(pid, signal.SIGKILL)
                    self._buried.add(pid)  # its zombie is no news (its clock went at the reload)
                    stopped.setdefault(model, []).append(megabytes)
        for model, sizes in stopped.items():
            self._say(
                f"stopped {len(sizes)} stub(s) of the {model} instances the reload replaced "
                f"({sum(sizes)} MB): Triton 2.51 keeps them when a request was inside the "
                "stub that died"
            )

    def _quiet_left(self, model: str) -> float:
        """Seconds until ``model`` may be reloaded again (<= 0: now)."""
        return self._reloaded_at.get(model, float("-inf")) + QUIET_S - time.monotonic()

    def scan(self) -> list[DeadStub]:
        """One look at the server's children: the stubs that died since the last look.

        A zombie counts from its second sighting: Triton reaps the stubs it stops itself
        within milliseconds. A stub that died before the watch saw it alive (it polls once a
        second) is found by its model's missing instance (`_missing_stubs`).
        """
        dead, unknown = [], False
        current = children(self.server_pid)
        for pid in current:
            state = _state(pid)
            if state in ("Z", "X"):
                if pid in self._buried:
                    continue
                if pid not in self._zombies:
                    self._zombies.add(pid)
                    continue
                self._buried.add(pid)
                if pid in self._serving:
                    model, version = self._serving[pid]
                    self._forget(pid)
                    dead.append(DeadStub(pid, model, version))
                elif pid not in self._replaced and _command(pid) == STUB[:15]:
                    unknown = True
            elif (
                pid not in self._serving
                and pid not in self._replaced
                and state not in ("", "Z", "X")
                and (served := served_by(pid)) is not None
            ):
                model, version, region = served
                self._serving[pid] = model, version
                if region:
                    self.regions.add(region)
        for gone in [pid for pid in self._serving if pid not in current]:
            self._forget(gone)  # stopped and reaped by Triton: an unload or a reload
        self._zombies.intersection_update(current)
        return dead + self._missing_stubs() if unknown else dead

    def _missing_stubs(self) -> list[DeadStub]:
        """The READY Python-backend model versions with fewer live stubs than instances.

        One `DeadStub` each, with a pid of 0: which process died is not known.
        """
        try:
            index = self._request("POST", "/v2/repository/index", {"ready": True})
            live = Counter(self._serving.values())
            missing = []
            for entry in index if isinstance(index, list) else []:
                model, version = str(entry.get("name")), str(entry.get("version"))
                config = self._request("GET", f"/v2/models/{model}/config")
                if not isinstance(config, dict) or config.get("backend") != "python":
                    continue
                groups = config.get("instance_group") or [{}]
                instances = sum(int(g.get("count", 1)) * len(g.get("gpus") or [0]) for g in groups)
                if live[(model, version)] < instances:
                    missing.append(DeadStub(0, model, version))
            return missing
        except (OSError, ValueError) as exc:
            self._say(
                "a Python-backend stub died before the watch saw it serving, and Triton's "
                f"index could not say which model lost it: {exc}"
            )
            return []

    def recover(self, model: str, versions: set[str]) -> Reload:
        """Reload ``model``, whose stubs of ``versions`` died."""
        what = f"the Python-backend stub of {model} (version {', '.join(sorted(versions))})"
        if not self.explicit:
            self._say(
                f"{what} died; Triton fails its requests until restarted (without explicit "
                "model control tritonhf cannot reload it)"
            )
            return Reload.NOT_NEEDED
        try:
            states = self._version_states(model)
        except (OSError, ValueError):  # no index (the key is missing): trust the stubs
            states = dict.fromkeys(versions, "READY")
        ready = sorted((v for v, state in states.items() if state == "READY"), key=int)
        if loading := sorted(v for v in versions if states.get(v) == "LOADING"):
            self._say(
                f"{what} died while Triton was loading version {', '.join(loading)}: Triton "
                "2.51 waits for it forever, so that load (a deploy) never ends; the versions "
                "already serving go on serving, and a restart of the server ends the wait"
            )
        if not versions.intersection(ready):  # a failed load's, or an unload's: not serving
            if model in self._failed:  # it was being retried: say why that ends
                self._failed.discard(model)
                self._say(
                    f"not reloading {model} again: version {', '.join(sorted(versions))} no "
                    "longer serves (a deploy or an unload moved on)"
                )
            return Reload.NOT_NEEDED
        self._reloaded_at[model] = time.monotonic()
        if model in self._failed:
            self._say(f"reloading {model} again (its last reload failed)")
        else:
            self._say(f"{what} died: reloading {model}")
        try:
            config = self._request("GET", f"/v2/models/{model}/config")
            if not isinstance(config, dict):
                raise ValueError(f"Triton answered {config!r} for the config of {model}")
            config["version_policy"] = {"specific": {"versions": [int(v) for v in ready]}}
            parameters = config.setdefault("parameters", {})
            parameters[RELOADED] = {"string_value": f"{time.time():.3f}"}
            body = {"parameters": {"config": json.dumps(config)}}
            self._request("POST", f"/v2/repository/models/{model}/load", body, LOAD_WAIT_S)
        except (OSError, ValueError) as exc:  # urllib's errors are OSErrors too
            self._say(
                f"could not reload {model}: {_reason(exc)}; the instance whose stub died fails "
                f"every request Triton sends it until a reload succeeds: trying again in "
                f"{QUIET_S:.0f} s (`tritonhf deploy` loads the pipeline again once the cause "
                "is fixed)"
            )
            self._failed.add(model)
            return Reload.FAILED
        self._failed.discard(model)
        self.unreplaced.discard(model)
        self._say(f"reloaded {model}: new stubs serve it")
        # Every instance of the pinned versions is new; the last scan saw only the old ones.
        deadline = time.monotonic() + REPLACED_GRACE_S
        for pid, (served, version) in list(self._serving.items()):
            if served == model and version in ready:
                self._forget(pid)
                self._replaced[pid] = (model, deadline)
        return Reload.DONE

    def _version_states(self, model: str) -> dict[str, str]:
        """``{version: state}`` of ``model`` in Triton's index (READY, LOADING, UNAVAILABLE...).

        The reload pins the READY ones, so it keeps them all.
        """
        index = self._request("POST", "/v2/repository/index", {})
        if not isinstance(index, list):
            return {}
        return {
            str(entry.get("version")): str(entry.get("state"))
            for entry in index
            if entry.get("name") == model and entry.get("version") is not None
        }

    def _request(
        self, method: str, path: str, body: object = None, timeout_s: float | None = None
    ) -> object:
        """Triton's answer to one API call, within ``timeout_s`` (default `READ_TIMEOUT_S`)."""
        data = None if body is None else json.dumps(body).encode()
        url = f"http://{self.http_url}{path}"  # our own server: no other scheme
        request = urllib.request.Request(url, data=data, method=method, headers=self.headers)
        wait_s = READ_TIMEOUT_S if timeout_s is None else timeout_s
        with urllib.request.urlopen(request, timeout=wait_s) as response:  # noqa: S310  # nosec B310
            text = response.read()
        return json.loads(text) if text else None


def _reason(exc: Exception) -> str:
    """Why a request to Triton failed, in one line.

    Its error message, without the Python traceback of a Python-backend model's load error.
    """
    reason = str(exc)
    if isinstance(exc, urllib.error.HTTPError):
        body = exc.read().decode(errors="replace")
        try:
            reason = f"{exc.code}: {json.loads(body)['error']}"
        except (ValueError, KeyError, TypeError):
            reason = f"{exc.code}: {body or exc.reason}"
    return " ".join(reason.split("\n\nAt:\n")[0].split())
