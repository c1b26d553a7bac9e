"""`StubWatch` against a real process tree and a small HTTP server that answers as Triton does.

The "server" is a process that starts one child per model version, each named like Triton's
Python-backend stub with ``<repo>/<model>/<version>/model.py`` as its argument, and never reaps
them, as Triton 2.51 does not reap a stub that died on its own. The HTTP side answers the three
requests the watch makes (index, config, load); a load starts fresh stubs, as Triton's does.
(The same recovery against a real Triton: tests/integration/test_reliability.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import tritonhf
from tritonhf.backends.execute_clock import clock_path
from tritonhf.server import stub_watch
from tritonhf.server.process import children, orphaned_stubs
from tritonhf.server.stub_watch import STUB, StubWatch

# Starts a stub per "<model> <version>" line on stdin and prints its pid; reaps none. The
# "stub" is Python under the stub's name (a link), which names the process as Triton's does.
PARENT = """
import subprocess, sys
repo, stubs = sys.argv[1], []  # kept: a Popen that is dropped gets reaped by the next one
for line in sys.stdin:
    model, version = line.split()
    stubs.append(subprocess.Popen([sys.argv[2], f"{repo}/{model}/{version}/model.py"]))
    print(stubs[-1].pid, flush=True)
"""

IDLE = "import time\ntime.sleep(600)\n"
STUCK = """
import time
from tritonhf.backends.execute_clock import ExecuteClock
with ExecuteClock.of_this_process().running():  # a batch that never ends
    time.sleep(600)
"""


class FakeServer:
    """The stub-owning process and its HTTP API; ``states`` is what the index reports."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.states: dict[tuple[str, str], str] = {}
        self.instances: dict[str, int] = {}  # a model's instance count (default 1)
        self.loads: list[dict[str, Any]] = []
        self.load_times: list[float] = []  # time.monotonic() of each load
        self.failing_loads = 0  # how many loads to come answer as a broken model file does
        self.index_delay_s = 0.0  # how long the index takes to answer (a server out of fds)
        self.load_delay_s = 0.0  # how long a load takes
        stub = repo.parent / STUB
        stub.symlink_to(os.path.realpath(sys.executable))
        # Named as Triton is: a `tritonhf serve` starting meanwhile stops stubs whose parent is
        # no tritonserver (`orphaned_stubs`), and a developer may well serve while testing.
        server = repo.parent / "tritonserver"
        server.symlink_to(os.path.realpath(sys.executable))
        self.process = subprocess.Popen(
            [str(server), "-c", PARENT, str(repo), str(stub)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(tritonhf.__file__).parents[1])},
        )
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http.server_address[1]}"

    def start_stub(
        self, model: str, version: str = "1", state: str = "READY", code: str = IDLE
    ) -> int:
        model_py = self.repo / model / version / "model.py"
        model_py.parent.mkdir(parents=True, exist_ok=True)
        model_py.write_text(code)
        self.states[(model, version)] = state
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{model} {version}\n")
        self.process.stdin.flush()
        pid = int(self.process.stdout.readline())
        # Until it has exec'd the stub, the child's command line is its parent's.
        wait_until(lambda: pid in children(self.process.pid) and STUB in cmdline(pid))
        return pid

    def stop(self) -> None:
        self.http.shutdown()
        for pid in children(self.process.pid):
            os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # /v2/models/<model>/config
                model = self.path.split("/")[3]
                count = fake.instances.get(model, 1)
                group = {"count": count, "kind": "KIND_CPU"}
                self._answer(
                    {
                        "name": model,
                        "backend": "python",
                        "instance_group": [group],
                        "parameters": {},
                    }
                )

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if self.path == "/v2/repository/index":
                    time.sleep(fake.index_delay_s)
                    entries = [
                        {"name": m, "version": v, "state": s} for (m, v), s in fake.states.items()
                    ]
                    self._answer(entries)
                    return
                model = self.path.split("/")[4]  # /v2/repository/models/<model>/load
                config = json.loads(body["parameters"]["config"])
                fake.load_times.append(time.monotonic())
                fake.loads.append({"model": model, **config})
                time.sleep(fake.load_delay_s)
                if fake.failing_loads > 0:
                    fake.failing_loads -= 1
                    error = (
                        f"load failed for model '{model}': version 1 is at UNAVAILABLE state: "
                        "Internal: InvalidProtobuf: Protobuf parsing failed.\n\nAt:\n  "
                        "/repo/model.py(12): initialize\n"
                    )
                    data = json.dumps({"error": error}).encode()
                    self.send_response(400)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                for version in config["version_policy"]["specific"]["versions"]:
                    fake.start_stub(model, str(version))
                self._answer({})

        return Handler


def wait_until(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeServer]:
    fake = FakeServer(tmp_path / "repo")
    yield fake
    fake.stop()


@pytest.fixture
def said() -> list[str]:
    return []


@pytest.fixture
def watch(server: FakeServer, said: list[str]) -> Iterator[StubWatch]:
    server.start_stub("minilm_tokenizer")
    server.start_stub("minilm_model")
    assert not set(orphaned_stubs()) & set(children(server.process.pid))  # a serve spares them
    watch = StubWatch(server.process.pid, server.url, explicit=True, log=said.append, poll_s=0.02)
    yield watch.start()
    watch.stop()


def test_a_dead_stub_reloads_its_model_pinned_to_the_ready_versions(
    server: FakeServer, watch: StubWatch, said: list[str]
) -> None:
    (stub,) = [p for p in children(server.process.pid) if "minilm_model" in cmdline(p)]
    os.kill(stub, signal.SIGKILL)

    wait_until(lambda: server.loads)
    (load,) = server.loads
    assert load["model"] == "minilm_model"
    assert load["version_policy"] == {"specific": {"versions": [1]}}
    assert float(load["parameters"][stub_watch.RELOADED]["string_value"]) > 0
    wait_until(lambda: any(line.startswith("reloaded minilm_model") for line in said))


def test_stubs_of_replaced_instances_that_triton_keeps_are_stopped_after_the_grace(
    server: FakeServer, watch: StubWatch, said: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake's load leaves the old stubs running, as Triton 2.51 does when a request was
    inside the stub that died; the watch stops the survivor, and reloads nothing for it."""
    monkeypatch.setattr(stub_watch, "REPLACED_GRACE_S", 0.5)
    second = server.start_stub("minilm_model")  # a second instance
    wait_until(lambda: second in watch._serving)
    old = [p for p in children(server.process.pid) if "minilm_model" in cmdline(p)]
    os.kill(old[0], signal.SIGKILL)
    wait_until(lambda: server.loads)

    wait_until(lambda: state(old[1]) == "Z")
    assert any(line.startswith("stopped 1 stub(s) of the minilm_model instances") for line in said)
    time.sleep(0.3)
    assert len(server.loads) == 1  # its death was the watch's doing: no second reload
    tokenizer = [p for p in children(server.process.pid) if "minilm_tokenizer" in cmdline(p)]
    assert tokenizer  # other models' stubs are left alone


def test_a_stub_that_dies_again_in_the_quiet_window_is_reloaded_when_it_ends(
    server: FakeServer, watch: StubWatch, said: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stub_watch, "QUIET_S", 1.5)
    first = [p for p in children(server.process.pid) if "minilm_model" in cmdline(p)]
    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: len(server.loads) == 1)
    reloaded_at = watch._reloaded_at["minilm_model"]

    def fresh_stubs() -> list[int]:
        return [
            p
            for p in children(server.process.pid)
            if "minilm_model" in cmdline(p) and p not in first and state(p) != "Z"
        ]

    wait_until(fresh_stubs)  # the fake starts it after recording the load
    (fresh,) = fresh_stubs()
    wait_until(lambda: fresh in watch._serving)  # seen alive: its death is noticed
    os.kill(fresh, signal.SIGKILL)

    wait_until(lambda: any("died again within" in line for line in said))
    assert len(server.loads) == 1  # not at once: the window holds it back
    wait_until(lambda: len(server.loads) == 2)
    assert server.load_times[1] - reloaded_at >= 1.5
    assert [load["model"] for load in server.loads] == ["minilm_model", "minilm_model"]


def test_a_stub_that_dies_while_its_version_loads_is_reported_not_reloaded(
    server: FakeServer, watch: StubWatch, said: list[str]
) -> None:
    loading = server.start_stub("minilm_model", "2", state="LOADING")
    wait_until(lambda: loading in watch._serving)
    os.kill(loading, signal.SIGKILL)

    wait_until(lambda: any("while Triton was loading version 2" in line for line in said))
    assert any("waits for it forever" in line for line in said)
    time.sleep(0.2)
    assert server.loads == []  # version 1 serves on; reloading it would not end the wait
    assert watch.unreplaced == {"minilm_model"}  # a drain does not wait for it


def test_a_stub_that_died_before_the_watch_saw_it_is_found_by_its_missing_instance(
    server: FakeServer, said: list[str]
) -> None:
    server.start_stub("minilm_tokenizer")
    server.start_stub("minilm_model")
    watch = StubWatch(server.process.pid, server.url, explicit=True, log=said.append, poll_s=3600)
    watch.start()  # the first scan; the thread then waits an hour: the test scans by hand
    try:
        server.instances["minilm_model"] = 2
        unseen = server.start_stub("minilm_model")  # its second instance, killed at once
        os.kill(unseen, signal.SIGKILL)
        wait_until(lambda: state(unseen) == "Z")
        watch.tick()
        assert server.loads == []  # one sighting of a zombie is not enough
        watch.tick()
        assert [load["model"] for load in server.loads] == ["minilm_model"]
        watch.tick()
        assert len(server.loads) == 1  # its zombie stays, but is old news
    finally:
        watch.stop()


def test_without_explicit_model_control_a_dead_stub_is_only_reported(
    server: FakeServer, said: list[str]
) -> None:
    stub = server.start_stub("minilm_model")
    watch = StubWatch(server.process.pid, server.url, explicit=False, log=said.append, poll_s=0.02)
    watch.start()
    try:
        os.kill(stub, signal.SIGKILL)
        wait_until(lambda: any("cannot reload it" in line for line in said))
    finally:
        watch.stop()
    assert server.loads == []


def test_a_stopped_stub_is_killed_and_its_model_reloaded(
    server: FakeServer, watch: StubWatch, said: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stub_watch, "STOPPED_S", 0.3)
    (stub,) = [p for p in children(server.process.pid) if "minilm_model" in cmdline(p)]
    wait_until(lambda: stub in watch._serving)
    os.kill(stub, signal.SIGSTOP)

    wait_until(lambda: server.loads)
    assert [load["model"] for load in server.loads] == ["minilm_model"]
    assert any("minilm_model (version 1) has been stopped for" in line for line in said)
    assert state(stub) == "Z"


def test_a_stub_stuck_in_one_batch_past_the_limit_is_killed_and_its_model_reloaded(
    server: FakeServer, said: list[str]
) -> None:
    tokenizer = server.start_stub("minilm_tokenizer")  # idle: its clock says 0
    stuck = server.start_stub("minilm_model", code=STUCK)
    clock = clock_path(server.process.pid, stuck)
    wait_until(clock.exists)
    watch = StubWatch(
        server.process.pid, server.url, explicit=True, log=said.append, poll_s=0.05, hang_s=0.5
    )
    watch.start()
    try:
        time.sleep(0.3)
        assert server.loads == []  # not before the limit
        wait_until(lambda: server.loads)
    finally:
        watch.stop()
    assert [load["model"] for load in server.loads] == ["minilm_model"]
    (line,) = [line for line in said if "has run one batch for" in line]
    assert "--stub-hang-timeout 0.5" in line
    assert state(stuck) == "Z"
    assert not clock.exists()  # the dead stub's clock is removed with it
    assert state(tokenizer) == "S"


def test_without_a_hang_limit_a_stuck_batch_is_left_alone(
    server: FakeServer, said: list[str]
) -> None:
    stuck = server.start_stub("minilm_model", code=STUCK)
    wait_until(clock_path(server.process.pid, stuck).exists)
    watch = StubWatch(
        server.process.pid, server.url, explicit=True, log=said.append, poll_s=0.02, hang_s=0
    )
    watch.start()
    time.sleep(0.5)
    watch.stop()
    assert server.loads == []
    assert state(stuck) == "S"


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")


def state(pid: int) -> str:
    return stub_watch._state(pid)


def test_a_reload_that_fails_is_tried_again_when_the_quiet_window_ends(
    server: FakeServer, watch: StubWatch, said: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model file broken since the start failed the reload once, and the watch never tried
    again: the dead instance failed every other request for good, with health all green (a
    probe's finding)."""
    monkeypatch.setattr(stub_watch, "QUIET_S", 0.5)
    server.failing_loads = 2
    (stub,) = [p for p in children(server.process.pid) if "minilm_model" in cmdline(p)]
    os.kill(stub, signal.SIGKILL)

    wait_until(lambda: any(line.startswith("reloaded minilm_model") for line in said))
    assert len(server.loads) == 3
    # Not in a loop (the window runs from the watch's clock, a little before the server's).
    assert server.load_times[2] - server.load_times[1] >= 0.45
    failed = [line for line in said if line.startswith("could not reload minilm_model")]
    assert len(failed) == 2
    assert "400: load failed for model 'minilm_model'" in failed[0]
    assert "Protobuf parsing failed." in failed[0]
    assert "At:" not in failed[0]  # no traceback
    assert "\n" not in failed[0]
    assert "fails every request Triton sends it until a reload succeeds" in failed[0]
    assert "`tritonhf deploy`" in failed[0]
    assert said.count("reloading minilm_model again (its last reload failed)") == 2
    assert watch.unreplaced == set()  # replaced at last


def test_a_log_that_cannot_be_written_does_not_stop_the_watch(server: FakeServer) -> None:
    """With the log on a full disk the watch's thread died at its first line, and no dead stub
    was reloaded for the rest of the server's life (a probe's finding)."""
    written: list[str] = []

    def full_disk(line: str) -> None:
        if len(written) < 1:
            written.append("")
            raise OSError(28, "No space left on device")
        written.append(line)

    stub = server.start_stub("minilm_model")
    watch = StubWatch(server.process.pid, server.url, explicit=True, log=full_disk, poll_s=0.02)
    watch.start()
    try:
        os.kill(stub, signal.SIGKILL)
        wait_until(lambda: any(line.startswith("reloaded minilm_model") for line in written))
        assert watch._thread.is_alive()
    finally:
        watch.stop()


def test_a_server_that_does_not_answer_holds_the_watch_and_its_stop_for_seconds_not_minutes(
    server: FakeServer, said: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of file descriptors, Triton queued the watch's connection for good: the watch waited
    600 s on it, and SIGTERM waited for the watch (a probe's finding)."""
    monkeypatch.setattr(stub_watch, "READ_TIMEOUT_S", 0.3)
    monkeypatch.setattr(stub_watch, "STOP_WAIT_S", 0.3)
    stub = server.start_stub("minilm_model")
    watch = StubWatch(server.process.pid, server.url, explicit=True, log=said.append, poll_s=0.02)
    watch.start()
    server.index_delay_s = 5.0
    server.load_delay_s = 5.0
    os.kill(stub, signal.SIGKILL)
    wait_until(lambda: server.loads)  # the index read timed out; the reload went on

    started = time.monotonic()
    watch.stop()  # while the load takes its time
    assert time.monotonic() - started < 3
    assert any("stopping without it" in line for line in said)


def test_retries_end_with_a_word_when_the_version_no_longer_serves(
    server: FakeServer, watch: StubWatch, said: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stub_watch, "QUIET_S", 0.5)
    server.failing_loads = 100
    (stub,) = [p for p in children(server.process.pid) if "minilm_model" in cmdline(p)]
    os.kill(stub, signal.SIGKILL)
    wait_until(lambda: any(line.startswith("could not reload minilm_model") for line in said))

    server.states[("minilm_model", "1")] = "UNLOADING"  # a deploy of version 2 moved on
    wait_until(lambda: any(line.startswith("not reloading minilm_model again") for line in said))
    loads = len(server.loads)
    time.sleep(1.2)
    assert len(server.loads) == loads  # no more tries
    assert watch.unreplaced == {"minilm_model"}  # and a drain does not wait for it
