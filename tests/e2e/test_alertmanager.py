"""The shipped Alertmanager config in the real Alertmanager (Debian's prometheus-alertmanager).

Alerts are posted to its API as Prometheus sends them; what it routes and what it holds back is
read back from the same API.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemons import Daemon

CONFIG = Path(__file__).parents[2] / "observability" / "alertmanager" / "alertmanager.yml"


class Alertmanager(Daemon):
    """A real Alertmanager on a free 127.0.0.1 port, clustering off."""

    def __init__(self, storage: Path, log: Path) -> None:
        arguments = [
            f"--config.file={CONFIG}",
            f"--storage.path={storage}",
            "--cluster.listen-address=",
        ]
        super().__init__(("prometheus-alertmanager", "alertmanager"), arguments, log, "/-/ready")
        self.url = f"{self.base}/api/v2"

    def call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310
            f"{self.url}{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  # nosec B310
            text = response.read()
        return json.loads(text) if text else None


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    folder = tmp_path_factory.mktemp("alertmanager")
    running = Alertmanager(folder / "data", folder / "alertmanager.log")
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus posts it (firing: no end time)."""
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": name},
    }


def states(alertmanager: Alertmanager) -> dict[tuple[str, str], dict[str, Any]]:
    """(alert name, model or instance) -> the alert's status."""
    return {
        (a["labels"]["alertname"], a["labels"].get("model") or a["labels"]["instance"]): a["status"]
        for a in alertmanager.call("/alerts")
    }


def test_a_down_server_pages_once_and_holds_back_what_it_explains(
    alertmanager: Alertmanager,
) -> None:
    alertmanager.call(
        "/alerts",
        [
            alert("TritonHFServerDown", "critical", instance="triton:8002", job="triton"),
            *(alert("TritonHFModelNotReady", "critical", model=m) for m in ("minilm", "sentiment")),
            alert("TritonHFHighErrorRatio", "critical", model="minilm"),
            alert("TritonHFInputDrift", "warning", model="minilm", feature="token_length"),
        ],
    )

    found = states(alertmanager)
    server_down = found[("TritonHFServerDown", "triton:8002")]
    assert server_down["state"] == "active"
    for key in (
        ("TritonHFModelNotReady", "minilm"),
        ("TritonHFModelNotReady", "sentiment"),
        ("TritonHFHighErrorRatio", "minilm"),
    ):
        assert found[key]["state"] == "suppressed", key
        assert found[key]["inhibitedBy"], key
    assert found[("TritonHFInputDrift", "minilm")]["state"] == "active"  # drift is not explained


def test_alerts_are_grouped_by_name_and_critical_ones_go_to_the_critical_receiver(
    alertmanager: Alertmanager,
) -> None:
    alertmanager.call(
        "/alerts",
        [
            *(alert("TritonHFQueueTimeGrowing", "warning", model=m) for m in ("a", "a_model")),
            *(alert("TritonHFHighErrorRatio", "critical", model=m) for m in ("b", "b_tokenizer")),
        ],
    )

    groups = {group["labels"]["alertname"]: group for group in alertmanager.call("/alerts/groups")}
    queue, errors = groups["TritonHFQueueTimeGrowing"], groups["TritonHFHighErrorRatio"]
    assert queue["receiver"]["name"] == "default"
    assert {a["labels"]["model"] for a in queue["alerts"]} == {"a", "a_model"}
    assert errors["receiver"]["name"] == "critical"
    assert {"b", "b_tokenizer"} <= {a["labels"]["model"] for a in errors["alerts"]}
