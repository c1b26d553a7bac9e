"""The observability/ stack files: promtool checks and unit tests, and their contracts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tritonhf.observability import client_metrics
from tritonhf.observability import metrics as m
from tritonhf.observability.drift import ALERT_THRESHOLD

ROOT = Path(__file__).parents[2]
STACK = ROOT / "observability"
RULES = STACK / "prometheus" / "rules" / "tritonhf.yml"
RULE_TESTS = STACK / "prometheus" / "tests" / "tritonhf_test.yml"
DASHBOARDS = STACK / "grafana" / "dashboards"
ALERTMANAGER = STACK / "alertmanager" / "alertmanager.yml"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: run `make system-deps` (Debian: prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_prometheus_config_and_its_rule_files() -> None:
    done = promtool("check", "config", str(STACK / "prometheus" / "prometheus.yml"))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))

    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_show_each_alert_firing_and_staying_quiet() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_has_a_promtool_test_and_the_required_ones_exist() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }

    assert alerts == tested
    assert {
        "TritonHFHighP99Latency",
        "TritonHFHighErrorRatio",
        "TritonHFQueueTimeGrowing",
        "TritonHFInputDrift",
        "TritonHFModelNotReady",
    } <= alerts


def test_every_alert_links_to_its_runbook_in_the_docs() -> None:
    headings = re.findall(r"^### (TritonHF\w+)$", TROUBLESHOOTING.read_text(), re.MULTILINE)
    for rule in rules():
        if "alert" in rule:
            url = rule["annotations"]["runbook_url"]
            assert url.endswith(f"docs/troubleshooting.md#{rule['alert'].lower()}"), url
            assert rule["alert"] in headings, f"no runbook section for {rule['alert']}"


def test_amtool_accepts_the_alertmanager_config() -> None:
    binary = shutil.which("amtool")
    if binary is None:
        pytest.fail("amtool is not installed: run `make system-deps` (prometheus-alertmanager)")
    done = subprocess.run(
        [binary, "check-config", str(ALERTMANAGER)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    config = yaml.safe_load((STACK / "prometheus" / "prometheus.yml").read_text())
    (target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]

    assert target == "alertmanager:9093"
    volumes = compose["alertmanager"]["volumes"]
    mounts = {v["source"]: v["target"] for v in volumes if isinstance(v, dict)}
    assert mounts["./observability/alertmanager"] == "/etc/alertmanager"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in compose["alertmanager"]["command"]


def test_the_drift_alert_uses_the_documented_threshold() -> None:
    (drift,) = [rule for rule in rules() if rule.get("alert") == "TritonHFInputDrift"]

    assert f"(tritonhf_drift_psi) > {ALERT_THRESHOLD} and on (model)" in drift["expr"]


def dashboard_exprs() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((path.stem, target["datasource"]["uid"], target["expr"]))
    return found


def known_series() -> set[str]:
    server = {name for metric in m.ALL_METRICS for name in m.exposed_names(metric)}
    client = {client_metrics.REQUESTS, client_metrics.ERRORS, client_metrics.TEXTS}
    client |= {f"{client_metrics.REQUEST_DURATION}_{s}" for s in ("bucket", "sum", "count")}
    return server | client


def test_dashboards_and_rules_use_only_metrics_the_code_exports() -> None:
    texts = [expr for _, _, expr in dashboard_exprs()] + [rule["expr"] for rule in rules()]
    used = {name for text in texts for name in re.findall(r"(?<![:\w])tritonhf_[a-z_]+", text)}

    assert used
    assert used <= known_series()


def test_dashboards_refer_to_the_provisioned_datasources_and_have_unique_panel_ids() -> None:
    provisioned = yaml.safe_load(
        (STACK / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text()
    )["datasources"]
    sources = {d["uid"]: d for d in provisioned}

    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["loki"]["url"] == "http://loki:3100"
    assert {uid for _, uid, _ in dashboard_exprs()} <= set(sources)
    for path in DASHBOARDS.glob("*.json"):
        dashboard = json.loads(path.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path
        assert dashboard["uid"].startswith("tritonhf-")


def test_the_dashboard_provider_loads_the_mounted_dashboards() -> None:
    provider = yaml.safe_load(
        (STACK / "grafana" / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )["providers"][0]

    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_promtail_ships_to_loki_and_labels_the_json_request_fields() -> None:
    config = yaml.safe_load((STACK / "promtail" / "promtail.yml").read_text())

    assert config["clients"][0]["url"] == "http://loki:3100/loki/api/v1/push"
    for job in config["scrape_configs"]:
        (match,) = [s["match"] for s in job["pipeline_stages"] if "match" in s]
        labels = next(s["labels"] for s in match["stages"] if "labels" in s)
        assert {"model", "step", "outcome", "event", "level"} <= set(labels)
        assert "request_id" not in labels  # unbounded: kept in the line, not as a label


def test_loki_listens_where_grafana_and_promtail_look() -> None:
    config = yaml.safe_load((STACK / "loki" / "loki.yml").read_text())

    assert config["server"]["http_listen_port"] == 3100
    assert config["auth_enabled"] is False
