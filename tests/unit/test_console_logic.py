"""The ops console's metrics maths, report discovery and tables, without Streamlit."""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from tritonhf.client import ModelState, Protocol
from tritonhf.console.logic import (
    ConsoleConfig,
    append_history,
    chart_table,
    ensembles_using,
    pipeline_of,
    state_rows,
    summary_line,
)
from tritonhf.console.metrics import (
    NO_VALUE,
    ModelRates,
    model_rates,
    parse_metrics,
    rate_rows,
    scrape,
)
from tritonhf.console.reports import find_reports, strip_local_images
from tritonhf.errors import ClientError, ConfigError, ServerUnavailableError
from tritonhf.server.ports import free_ports

# What Triton 2.51 prints on its metrics port (trimmed), at two moments 2 s apart.
BEFORE = """\
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="minilm",version="1"} 10
nv_inference_request_success{model="minilm_model",version="1"} 10
# HELP nv_inference_request_failure Number of failed inference requests
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="minilm",reason="OTHER",version="1"} 0
nv_inference_request_failure{model="minilm",reason="REJECTED",version="1"} 1
# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="minilm",version="1"} 10
nv_inference_count{model="minilm_model",version="1"} 10
# HELP nv_inference_exec_count Number of model executions performed
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="minilm",version="1"} 10
nv_inference_exec_count{model="minilm_model",version="1"} 5
# HELP nv_inference_request_duration_us Cumulative inference request duration
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="minilm",version="1"} 100000
nv_inference_request_duration_us{model="minilm_model",version="1"} 50000
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="minilm",version="1"} 10000
nv_inference_queue_duration_us{model="minilm_model",version="1"} 5000
# HELP nv_inference_compute_infer_duration_us Cumulative compute inference duration
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="minilm",version="1"} 80000
nv_inference_compute_infer_duration_us{model="minilm_model",version="1"} 40000
# HELP nv_inference_pending_request_count Instantaneous number of pending requests
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="minilm",version="1"} 0
# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0.5
"""


def _after() -> str:
    # 20 more successes and 1 more failure for minilm; minilm_model idle.
    return (
        BEFORE.replace('"minilm",version="1"} 10\n', '"minilm",version="1"} 30\n')
        .replace('reason="OTHER",version="1"} 0', 'reason="OTHER",version="1"} 1')
        .replace('"minilm",version="1"} 100000', '"minilm",version="1"} 520000')
        .replace('"minilm",version="1"} 10000', '"minilm",version="1"} 73000')
        .replace('"minilm",version="1"} 80000', '"minilm",version="1"} 437000')
        .replace(
            'nv_inference_pending_request_count{model="minilm",version="1"} 0',
            'nv_inference_pending_request_count{model="minilm",version="1"} 3',
        )
    )


def test_parse_metrics_reads_every_sample_with_its_labels() -> None:
    found = parse_metrics(BEFORE, at=1.0)
    assert found.at == 1.0
    assert found.samples[("nv_cpu_utilization", ())] == 0.5
    assert found.by_model("nv_inference_request_failure") == {("minilm", "1"): 1.0}
    assert found.by_model("nv_inference_exec_count") == {
        ("minilm", "1"): 10.0,
        ("minilm_model", "1"): 5.0,
    }


def test_parse_metrics_refuses_text_that_is_not_prometheus_format() -> None:
    with pytest.raises(ClientError, match="Prometheus text format"):
        parse_metrics('<html>{"not": metrics}</html>\nnv_x{model="a" 1\n')


def test_model_rates_come_from_the_difference_of_two_scrapes() -> None:
    rates = {
        r.model: r
        for r in model_rates(parse_metrics(BEFORE, at=10.0), parse_metrics(_after(), at=12.0))
    }
    minilm = rates["minilm"]
    # 20 successes and one OTHER failure in 2 s: an ensemble counts a request that failed
    # inside it twice with reason OTHER, so that is half a failed request.
    assert minilm.requests_per_s == pytest.approx(10.25)
    assert minilm.failures_per_s == pytest.approx(0.25)
    assert minilm.inferences_per_s == pytest.approx(10.0)
    assert minilm.mean_batch == pytest.approx(1.0)
    # Triton adds time for successes only: 420 ms of request time over 20 of them; 63 ms
    # queued; 357 ms computing.
    assert minilm.latency_ms == pytest.approx(21.0)
    assert minilm.queue_ms == pytest.approx(3.15)
    assert minilm.compute_ms == pytest.approx(17.85)
    assert minilm.pending == 3.0
    idle = rates["minilm_model"]
    assert idle.requests_per_s == 0.0
    assert idle.latency_ms is None
    assert idle.queue_ms is None
    assert idle.mean_batch is None


def test_a_counter_that_went_down_means_a_restart_and_counts_from_zero() -> None:
    restarted = BEFORE.replace('"minilm",version="1"} 10\n', '"minilm",version="1"} 4\n')
    rates = {
        r.model: r
        for r in model_rates(parse_metrics(BEFORE, at=0.0), parse_metrics(restarted, at=1.0))
    }
    assert rates["minilm"].requests_per_s == pytest.approx(4.0)


def test_model_rates_need_scrapes_in_time_order() -> None:
    with pytest.raises(ValueError, match="time order"):
        model_rates(parse_metrics(BEFORE, at=5.0), parse_metrics(BEFORE, at=5.0))


def test_rate_rows_show_a_dash_for_an_idle_interval_not_a_markdown_bullet() -> None:
    idle = ModelRates("m", "1", 0.0, 0.0, 0.0, None, None, None, None, 0.0)
    row = rate_rows([idle])[0]
    assert row["requests/s"] == "0.00"
    assert row["latency ms"] == row["queue ms"] == row["mean batch"] == NO_VALUE


def test_scrape_names_the_url_when_nothing_listens() -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}/metrics"
    with pytest.raises(ServerUnavailableError, match=f"cannot read Triton's metrics at {url}"):
        scrape(url, timeout_s=2)


@pytest.mark.parametrize(
    "answer", [b"\x00\x00\x18\x04\x00\x00\x00\x00\x00", b"HTTP/1.0 200 OK\r\n\r\n\xdc\xff"],
    ids=["not-http", "not-text"],
)  # fmt: skip
def test_scrape_of_something_that_is_not_a_metrics_endpoint_is_a_clear_error(
    answer: bytes,
) -> None:
    # The gRPC port given for the metrics one answers HTTP/2 frames, not a status line.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_once() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(1024)
            connection.sendall(answer)

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with pytest.raises(ServerUnavailableError, match=f"cannot read Triton's metrics at {url}"):
            scrape(url, timeout_s=5)
    finally:
        thread.join(10)
        listener.close()


def test_scrape_refuses_a_url_without_scheme() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        scrape("127.0.0.1:8002/metrics")


def _write(path: Path, text: str, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_find_reports_lists_folders_with_markdown_or_plots_newest_first(tmp_path: Path) -> None:
    _write(tmp_path / "summary.md", "# top", 1_000)
    _write(tmp_path / "bench.csv", "a,b\n1,2\n", 1_000)
    _write(tmp_path / "older" / "bench.png", "png", 500)
    _write(tmp_path / "newer" / "summary.md", "# new", 2_000)
    _write(tmp_path / "newer" / "bench.png", "png", 1_900)
    _write(tmp_path / "raw" / "minilm-grpc-c1.csv", "x", 3_000)  # CSVs only: not a report
    reports = find_reports(tmp_path)
    assert [r.title for r in reports] == ["newer", tmp_path.name, "older"]
    newest = reports[0]
    assert [p.name for p in newest.markdown] == ["summary.md"]
    assert [p.name for p in newest.images] == ["bench.png"]
    assert newest.modified == 2_000
    assert [p.name for p in reports[1].tables] == ["bench.csv"]


def test_find_reports_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert find_reports(tmp_path / "absent") == []


def test_strip_local_images_keeps_remote_ones() -> None:
    text = "# r\n![throughput vs p99](bench.png)\n![badge](https://x.org/b.png)\n"
    stripped, found = strip_local_images(text)
    assert found == ["bench.png"]
    assert "bench.png" not in stripped
    assert "https://x.org/b.png" in stripped


def test_pipeline_of_maps_steps_to_their_ensemble() -> None:
    assert pipeline_of("minilm_tokenizer") == "minilm"
    assert pipeline_of("sentiment_feedback") == "sentiment"
    assert pipeline_of("minilm") == "minilm"


def test_unloading_a_step_names_every_ensemble_triton_takes_down_with_it() -> None:
    """A team's own ensemble over tritonhf's steps went down unnamed (probe G2)."""

    def ensemble(*steps: str) -> dict[str, Any]:
        return {
            "platform": "ensemble",
            "ensemble_scheduling": {"step": [{"model_name": step} for step in steps]},
        }

    configs = {
        "minilm": ensemble("minilm_tokenizer", "minilm_model"),
        "mine_embed": ensemble("minilm_tokenizer", "minilm_model"),
        "minilm_model": {"backend": "python"},
        "lone_model": {"backend": "python"},
    }
    assert ensembles_using("minilm_model", configs) == ["mine_embed", "minilm"]
    assert ensembles_using("minilm_tokenizer", configs) == ["mine_embed", "minilm"]
    assert ensembles_using("minilm_feedback", configs) == []  # no step of an ensemble
    assert ensembles_using("minilm", configs) == []
    assert ensembles_using("lone_model", configs) == []


def test_state_rows_put_each_ensemble_before_its_steps() -> None:
    states = [
        ModelState("minilm_tokenizer", "1", "READY"),
        ModelState("alpha_model", "1", "UNAVAILABLE", "unloaded"),
        ModelState("minilm", "1", "READY"),
        ModelState("alpha", "1", "READY"),
    ]
    rows = state_rows(states)
    assert [r["model"] for r in rows] == ["alpha", "alpha_model", "minilm", "minilm_tokenizer"]
    assert rows[1]["ready"] == "✗"
    assert rows[1]["reason"] == "unloaded"
    assert summary_line(states) == "3/4 models ready; not ready: alpha_model"


def test_history_keeps_the_last_points_per_model() -> None:
    history: list[dict[str, object]] = []
    for t in range(5):
        rate = ModelRates("m", "1", float(t), 0.0, 0.0, None, 2.0 * t or None, None, None, 0.0)
        history = append_history(history, [rate], at=float(t), limit=3)  # type: ignore[arg-type]
    assert chart_table(history, "requests/s") == {"m": {2.0: 2.0, 3.0: 3.0, 4.0: 4.0}}
    assert chart_table(history, "queue ms") == {"m": {2.0: 0.0, 3.0: 0.0, 4.0: 0.0}}


def test_console_config_passes_itself_to_the_app_script() -> None:
    config = ConsoleConfig(protocol=Protocol.HTTP, bench_dir=Path("b"), timeout_s=3)
    assert config.url == "127.0.0.1:8000"
    assert "--protocol=http" in config.args()
    assert "--bench-dir=b" in config.args()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 0}, "port must be in 1..65535"),
        ({"timeout_s": 0}, "timeout_s (--timeout) must be a finite number of seconds > 0"),
        ({"timeout_s": float("nan")}, "timeout_s (--timeout) must be a finite number"),
        ({"timeout_s": 2e6}, "timeout_s (--timeout) must be at most"),
        ({"metrics_url": "localhost:8002"}, "metrics_url must start with"),
    ],
)
def test_console_config_refuses_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ConsoleConfig(**overrides)  # type: ignore[arg-type]
