"""The recording thread: off the caller's thread, in order, bounded, drained on close."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import numpy as np
import pytest

from tritonhf.observability import metrics as m
from tritonhf.observability.background import RECORDING_NICE, BackgroundRecorder
from tritonhf.observability.logs import TextLogging, configure_json_logging
from tritonhf.observability.steps import RequestOutcome, TokenizerObserver, _NoMetrics


def failures() -> tuple[list[Exception], BackgroundRecorder]:
    seen: list[Exception] = []
    return seen, BackgroundRecorder("test-recorder", on_error=seen.append)


def test_calls_run_on_another_thread_in_the_order_submitted() -> None:
    _, recorder = failures()
    ran: list[tuple[int, str]] = []

    for index in range(200):
        recorder.submit(lambda i: ran.append((i, threading.current_thread().name)), index)
    recorder.flush()

    assert [i for i, _ in ran] == list(range(200))
    assert {name for _, name in ran} == {"test-recorder"}
    recorder.close()


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_niced_recorder_lowers_only_its_own_thread() -> None:
    seen: list[Exception] = []
    recorder = BackgroundRecorder("niced", on_error=seen.append, nice=RECORDING_NICE)
    caller = own_nice()
    nice: list[int] = []

    recorder.submit(lambda: nice.append(own_nice()))
    recorder.flush()
    recorder.close()

    assert nice == [RECORDING_NICE]
    assert own_nice() == caller
    assert not seen


def test_the_observers_record_at_the_lowest_priority() -> None:
    observer = TokenizerObserver(_NoMetrics(), "pipe", None, TextLogging.OFF)
    nice: list[int] = []

    observer.recorder.submit(lambda: nice.append(own_nice()))
    observer.flush()
    observer.close()

    assert nice == [19]


def test_a_failing_call_is_reported_and_the_next_one_still_runs() -> None:
    seen, recorder = failures()
    ran: list[int] = []

    def broken() -> None:
        raise RuntimeError("metrics server gone")

    recorder.submit(broken)
    recorder.submit(ran.append, 1)
    recorder.close()

    assert [str(e) for e in seen] == ["metrics server gone"]
    assert ran == [1]


def test_close_runs_what_is_pending_then_refuses_more() -> None:
    _, recorder = failures()
    ran: list[int] = []
    recorder.submit(time.sleep, 0.05)
    for index in range(5):
        recorder.submit(ran.append, index)

    recorder.close()
    recorder.close()

    assert ran == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="closed"):
        recorder.submit(ran.append, 5)


def test_a_full_queue_makes_the_caller_wait_instead_of_dropping() -> None:
    recorder = BackgroundRecorder("bounded", on_error=lambda exc: None, max_pending=2)
    gate = threading.Event()
    ran: list[int] = []
    recorder.submit(gate.wait)  # taken by the thread, which then blocks
    time.sleep(0.05)
    recorder.submit(ran.append, 1)
    recorder.submit(ran.append, 2)

    blocked = threading.Thread(target=recorder.submit, args=(ran.append, 3))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()

    gate.set()
    blocked.join(5)
    recorder.close()
    assert ran == [1, 2, 3]


def test_the_observer_returns_before_a_slow_recording_finishes() -> None:
    stream = io.StringIO()
    observer = TokenizerObserver(_NoMetrics(), "minilm", None, TextLogging.OFF)
    observer.log = configure_json_logging(stream, logger="tritonhf.test.slow-recording")

    class Slow(_NoMetrics):
        def increment(self, metric: m.MetricDef, amount: float = 1.0, *labels: str) -> None:
            time.sleep(0.2)

    observer.metrics = Slow()
    outcome = RequestOutcome("slow-1")
    outcome.succeed(["a"], np.array([[3]]), np.array([[False]]))

    started = time.perf_counter()
    observer.record([outcome], started=started)
    returned_after = time.perf_counter() - started
    observer.close()

    assert returned_after < 0.1
    (line,) = (json.loads(text) for text in stream.getvalue().splitlines())
    assert line["request_id"] == "slow-1"
    assert line["latency_ms"] < 100  # measured when the step handed the batch over


def test_an_observer_whose_thread_is_gone_warns_once_and_never_raises() -> None:
    stream = io.StringIO()
    observer = TokenizerObserver(_NoMetrics(), "minilm", None, TextLogging.OFF)
    observer.log = configure_json_logging(stream, logger="tritonhf.test.closed-recorder")
    observer.close()
    outcome = RequestOutcome("late")
    outcome.succeed(["a"], np.array([[3]]), np.array([[False]]))

    observer.record([outcome], started=time.perf_counter())
    observer.record([outcome], started=time.perf_counter())

    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["observability_error"]
