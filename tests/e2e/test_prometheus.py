"""A real Prometheus scrapes the session's Triton and a client's metrics, with the project's
own prometheus.yml and rules; every PromQL expression of every Grafana panel must return data.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CLASSIFIER
from tests.e2e.daemons import Daemon
from tests.integration.test_bad_input import raw_infer
from tritonhf import data
from tritonhf.client import ClientMetrics, InvalidInputError, TritonHFClient
from tritonhf.server.launcher import TritonServer
from tritonhf.server.ports import free_ports

ROOT = Path(__file__).parents[2]
OBSERVABILITY = ROOT / "observability"
DASHBOARDS = sorted((OBSERVABILITY / "grafana" / "dashboards").glob("*.json"))
# What Grafana puts in place of the template variables: every model, and a rate window wide
# enough to hold the test's traffic.
VARIABLES = {"$__rate_interval": "1m", "$model": ".*"}
SCRAPE_S = 1


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str

    @property
    def promql(self) -> str:
        expr = self.expr
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        return expr


def panel_queries() -> list[PanelQuery]:
    """Every Prometheus target of every panel (rows' nested panels included)."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        panels = list(dashboard["panels"])
        panels += [p for row in dashboard["panels"] for p in row.get("panels", [])]
        for panel in panels:
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                if source.get("type") == "prometheus":
                    found.append(
                        PanelQuery(path.stem, panel["title"], target["refId"], target["expr"])
                    )
    return found


QUERIES = panel_queries()


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


class Prometheus(Daemon):
    """A real ``prometheus`` process on a free 127.0.0.1 port."""

    def __init__(self, config: Path, storage: Path, log: Path) -> None:
        arguments = [f"--config.file={config}", f"--storage.tsdb.path={storage}"]
        super().__init__(("prometheus",), arguments, log, "/-/ready")
        self.url = self.base

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = http_json(url)
        assert body["status"] == "success", body
        return list(body["data"]["result"])


def test_the_shipped_config_scrapes_triton_and_the_ui_by_service_name() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    assert jobs["triton"]["static_configs"][0]["targets"] == ["triton:8002"]
    assert jobs["ui"]["static_configs"][0]["targets"] == ["ui:7860"]
    assert jobs["ui"]["metrics_path"] == "/metrics"
    assert config["rule_files"] == ["rules/*.yml"]


def local_config(target: Path, triton_metrics: int, ui_port: int) -> Path:
    """Copy observability/prometheus with the targets pointed at 127.0.0.1 and 1 s scrapes."""
    shutil.copytree(OBSERVABILITY / "prometheus", target)
    path = target / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    config["global"]["scrape_interval"] = f"{SCRAPE_S}s"
    config["global"]["evaluation_interval"] = f"{SCRAPE_S}s"
    ports = {"triton": triton_metrics, "ui": ui_port}
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[job['job_name']]}"]
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def ui_metrics() -> Iterator[tuple[Any, int]]:
    """A client-metrics registry served over HTTP, standing in for the UI's /metrics."""
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    (port,) = free_ports(1)
    http_server, thread = prometheus_client.start_http_server(
        port, addr="127.0.0.1", registry=registry
    )
    yield registry, port
    http_server.shutdown()
    http_server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def prometheus(
    server: TritonServer, ui_metrics: tuple[Any, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    folder = tmp_path_factory.mktemp("prometheus")
    config = local_config(folder / "config", server.config.metrics_port, ui_metrics[1])
    running = Prometheus(config, folder / "data", folder / "prometheus.log")
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def send_traffic(server: TritonServer, metrics: ClientMetrics) -> None:
    """Embeddings, classifications, feedback and bad input, over gRPC and HTTP.

    Two calls of 31 texts per model per round, two rounds: 124 texts, past the 100 a drift
    window needs before it publishes a score.
    """
    sentences = data.sentences()
    long_text = "tokens " * 600  # truncated by both models
    for url, protocol in ((server.config.grpc_url, "grpc"), (server.config.http_url, "http")):
        with TritonHFClient(url, protocol=protocol, timeout_s=60, metrics=metrics) as client:
            encoded = client.encode([*sentences[:30], long_text])
            assert encoded.truncated[-1]
            results = client.classify([*sentences[:30], long_text], model=CLASSIFIER)
            assert results[-1].truncated
            client.feedback(request_id=results[0].request_id, positive=True, model=CLASSIFIER)
            client.feedback(
                request_id=results[1].request_id,
                positive=False,
                corrected_label=client.labels(CLASSIFIER)[0],
                model=CLASSIFIER,
            )
            with pytest.raises(InvalidInputError):
                client.feedback(
                    request_id=results[0].request_id,
                    positive=False,
                    corrected_label="no-such-label",
                    model=CLASSIFIER,
                )
            with pytest.raises(InvalidInputError):  # counted by the tokenizer as not_utf8
                raw_infer(client, [[b"bad \xff byte"]])


@pytest.fixture(scope="module")
def scraped(
    server: TritonServer, prometheus: Prometheus, ui_metrics: tuple[Any, int]
) -> Prometheus:
    """Traffic in two rounds, scrapes apart, so rates have samples before and after."""
    metrics = ClientMetrics(registry=ui_metrics[0])
    prometheus.wait_ready()
    wait_for(prometheus, 'up{job="triton"} == 1', 'up{job="ui"} == 1')
    send_traffic(server, metrics)
    time.sleep(2.5 * SCRAPE_S)
    send_traffic(server, metrics)
    time.sleep(2.5 * SCRAPE_S)
    wait_for(prometheus, "tritonhf_feedback_total", "tritonhf_client_errors_total")
    return prometheus


def wait_for(prometheus: Prometheus, *exprs: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(prometheus.query(e) for e in exprs):
            return
        time.sleep(0.5)
    pytest.fail(f"no data for {exprs} after {timeout_s} s")


def has_gpu_metrics(server: TritonServer) -> bool:
    with urllib.request.urlopen(server.config.metrics_url, timeout=5) as response:  # noqa: S310
        return b"\nnv_gpu_" in response.read()


def test_every_dashboard_has_prometheus_panels() -> None:
    assert {path.stem for path in DASHBOARDS} == {"overview", "model-quality"}
    assert {q.dashboard for q in QUERIES} == {"overview", "model-quality"}
    assert len(QUERIES) >= 30


@pytest.mark.parametrize(
    "query", QUERIES, ids=[f"{q.dashboard}:{q.panel}:{q.ref}" for q in QUERIES]
)
def test_every_grafana_panel_query_returns_data(
    query: PanelQuery, scraped: Prometheus, server: TritonServer
) -> None:
    if "nv_gpu_" in query.expr and not has_gpu_metrics(server):
        pytest.skip("GPU panel: this Triton has no GPU, so it exports no nv_gpu_* metrics")

    result = scraped.query(query.promql)

    assert result, f"no data for {query.promql}"
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(v) for v in values), f"only NaN/inf for {query.promql}: {result}"


RECORDED = [
    "model:tritonhf_request_latency_seconds:p50",
    "model:tritonhf_request_latency_seconds:p95",
    "model:tritonhf_request_latency_seconds:p99",
    "model:tritonhf_request_failures:rate5m",
    "model:tritonhf_requests:rate5m",
    "model:tritonhf_request_errors:ratio_rate5m",
    "model:tritonhf_queue_seconds:avg5m",
    "model:tritonhf_queue_seconds:p99",
    "model:tritonhf_compute_seconds:avg5m",
]


def test_recording_rules_evaluate_on_real_triton_series(scraped: Prometheus) -> None:
    wait_for(scraped, *RECORDED)
    rules = http_json(f"{scraped.url}/api/v1/rules")["data"]["groups"]
    recorded = {r["name"] for g in rules for r in g["rules"] if r["type"] == "recording"}
    broken = [
        (r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r["health"] == "err"
    ]

    assert recorded == set(RECORDED)
    assert broken == []
    errors = {s["metric"]["model"]: float(s["value"][1]) for s in scraped.query(RECORDED[5])}
    assert all(0.0 <= ratio <= 1.0 for ratio in errors.values())
    assert errors["minilm"] > 0  # the traffic's non-UTF-8 requests failed in the tokenizer


def test_no_alert_fires_on_healthy_test_traffic(scraped: Prometheus) -> None:
    alerts = http_json(f"{scraped.url}/api/v1/alerts")["data"]["alerts"]

    assert [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"] == []
