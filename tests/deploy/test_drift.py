"""No drift: compose, Kubernetes, Dockerfiles and the observability config agree with the code.

The server's flags and ports come from ``ServerConfig`` (tritonhf/server/launcher.py), the CLI's
defaults from ``build_parser()``, the demo's and console's ports from their config classes, and
the scrape targets from observability/prometheus/prometheus.yml. Every path a deployment file
mounts or copies must exist in the repository.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import subprocess  # nosec B404
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.deploy import kustomize
from tests.deploy.support import ROOT, load_yaml
from tritonhf.cli.parser import build_parser
from tritonhf.console.logic import ConsoleConfig
from tritonhf.server.admin import ENV_VAR, has_restricted_flags
from tritonhf.server.launcher import ModelControl, ServerConfig
from tritonhf.ui.service import DemoConfig

DEFAULTS = ServerConfig(repo=Path("/models"))
# Launcher flags a container deliberately sets differently (each with the reason); every other
# flag `tritonhf serve` passes must reach the containerised Triton with the same value.
CONTAINER_DIFFERS = {
    "--model-repository": "a container path (/models), compared with the mount target instead",
    "--backend-directory": "the NGC image has its own backends",
    "--http-address": "a container listens on all interfaces; the host publishes on 127.0.0.1",
    "--grpc-address": "same as --http-address",
    "--metrics-address": "same as --http-address",
    "--allow-gpu-metrics": "the NGC image has DCGM and the GPU to report; the wheel has neither",
}
PORTS = {"http": DEFAULTS.http_port, "grpc": DEFAULTS.grpc_port, "metrics": DEFAULTS.metrics_port}
MODELS_DIR = "/models"
PROMETHEUS_CONFIG = "observability/prometheus/prometheus.yml"
RULES = "observability/prometheus/rules/tritonhf.yml"


def flags(args: list[str]) -> set[tuple[str, str]]:
    """``--key=value`` arguments as (key, value) pairs; a repeated key keeps every value."""
    pairs = set()
    for arg in args:
        key, _, value = arg.partition("=")
        pairs.add((key, value))
    return pairs


def launcher_flags() -> set[tuple[str, str]]:
    command = DEFAULTS.command(Path("tritonserver"), Path("/backends"))[1:]
    return {(k, v) for k, v in flags(command) if k not in CONTAINER_DIFFERS}


def dockerfile_instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/NAME, continuation lines joined, comments dropped."""
    lines = (ROOT / "docker" / name).read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    joined = re.sub(r"\\\n", " ", text)
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.strip().split(None, 1) for line in joined.splitlines())
        if parts
    ]


def rendered(overlay: str = "gpu") -> list[dict[str, Any]]:
    return kustomize.render(kustomize.K8S / "overlays" / overlay)


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml("docker-compose.yml")
    return data


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host address with the default BIND, host port)."""
    result = {}
    for spec in service.get("ports", []):
        plain = re.sub(r"\$\{[A-Z_]*BIND:-([^}]*)\}", r"\1", spec)
        address, host_port, container_port = plain.rsplit(":", 2)
        result[int(container_port)] = (address, int(host_port))
    return result


# --- Triton: flags, ports, health, repository ------------------------------------------------


@pytest.mark.parametrize("service", ["triton", "triton-cpu"])
def test_compose_triton_runs_with_the_launchers_flags(
    compose: dict[str, Any], service: str
) -> None:
    command = compose["services"][service]["command"]
    assert launcher_flags() <= flags(command), launcher_flags() - flags(command)
    assert ("--model-repository", MODELS_DIR) in flags(command)
    assert DEFAULTS.model_control is ModelControl.EXPLICIT
    assert ("--model-control-mode", "explicit") in flags(command)


def test_dockerfile_default_command_equals_the_compose_command(compose: dict[str, Any]) -> None:
    cmd = next(args for op, args in dockerfile_instructions("triton.Dockerfile") if op == "CMD")
    assert json.loads(cmd) == compose["services"]["triton"]["command"][: len(json.loads(cmd))]
    assert launcher_flags() <= flags(json.loads(cmd))


def test_kubernetes_triton_runs_with_the_launchers_flags() -> None:
    deployment = one(rendered(), "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert launcher_flags() <= flags(args), launcher_flags() - flags(args)
    assert ("--model-repository", MODELS_DIR) in flags(args)


# --- Triton: the draining entrypoint and the time it is given to stop -------------------------

NGC_ENTRYPOINT = "/opt/nvidia/nvidia_entrypoint.sh"
ENTRYPOINT = [NGC_ENTRYPOINT, "python3", "-m", "tritonhf.server.entrypoint"]
PRE_STOP_S = 5
# The entrypoint drains for up to --exit-timeout-secs, then gives Triton that much again plus
# 5 s (tritonhf/server/entrypoint.py); the orchestrator's grace period must cover both.
STOP_BUDGET_S = 2 * DEFAULTS.exit_timeout_s + 5


def test_triton_image_runs_the_draining_entrypoint_with_flags_as_its_command() -> None:
    instructions = dict(dockerfile_instructions("triton.Dockerfile"))
    assert json.loads(instructions["ENTRYPOINT"]) == ENTRYPOINT
    assert all(arg.startswith("--") for arg in json.loads(instructions["CMD"]))
    assert "tritonhf.server.entrypoint" in instructions["RUN"]  # imported at build time


def test_the_triton_image_builds_the_request_guard_and_preloads_it() -> None:
    from tritonhf.server.guard import LIBRARY, SOURCES

    instructions = dockerfile_instructions("triton.Dockerfile")
    folder = SOURCES.relative_to(ROOT).as_posix()
    assert ("COPY", f"{folder}/ /src/{SOURCES.name}/") in instructions
    built = next(args for op, args in instructions if op == "RUN" and f"/src/{LIBRARY}" in args)
    assert f"/src/{SOURCES.name}/*.c" in built
    assert ("COPY", f"--from=guard /src/{LIBRARY} /opt/tritonhf/") in instructions
    assert ("ENV", f"LD_PRELOAD=/opt/tritonhf/{LIBRARY}") in instructions


def test_the_entrypoint_needs_only_the_standard_library_of_the_images_python_310() -> None:
    module = ROOT.joinpath(*ENTRYPOINT[-1].split(".")).with_suffix(".py")
    files, names = _reachable([module])
    assert ROOT / "tritonhf" / "server" / "drain.py" in files
    third_party = {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"tritonhf"}
    assert not third_party, f"the image installs tritonhf without dependencies: {third_party}"
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
    assert not names & NEWER_THAN_310, sorted(names & NEWER_THAN_310)


@pytest.mark.parametrize("service", ["triton", "triton-cpu"])
def test_compose_keeps_the_entrypoint_and_waits_for_the_drain(
    compose: dict[str, Any], service: str
) -> None:
    triton = compose["services"][service]
    assert "entrypoint" not in triton
    assert ("--exit-timeout-secs", str(DEFAULTS.exit_timeout_s)) in flags(triton["command"])
    grace = re.fullmatch(r"(\d+)s", triton["stop_grace_period"])
    assert grace is not None
    assert int(grace.group(1)) >= STOP_BUDGET_S


def test_kubernetes_pods_sleep_before_the_drain_and_wait_for_it() -> None:
    pod = one(rendered(), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container, "a command would replace the draining entrypoint"
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", str(PRE_STOP_S)]}}
    assert pod["terminationGracePeriodSeconds"] >= PRE_STOP_S + STOP_BUDGET_S


def test_kserve_runtime_has_the_deployments_shm_and_exit_timeout() -> None:
    docs = rendered()
    deployment = one(docs, "Deployment")["spec"]["template"]["spec"]
    runtime = one(docs, "ServingRuntime")["spec"]
    (container,) = runtime["containers"]
    assert "command" not in container, "a command would replace the draining entrypoint"
    exit_timeout = ("--exit-timeout-secs", str(DEFAULTS.exit_timeout_s))
    assert exit_timeout in flags(container["args"])
    assert exit_timeout in flags(deployment["containers"][0]["args"])
    shm = "/dev/shm"  # noqa: S108  # the Python backend's tensor exchange
    for pod, mounts in ((runtime, container), (deployment, deployment["containers"][0])):
        (mount,) = [m for m in mounts["volumeMounts"] if m["mountPath"] == shm]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}


@pytest.mark.parametrize("service", ["triton", "triton-cpu"])
def test_compose_publishes_the_default_ports_on_loopback(
    compose: dict[str, Any], service: str
) -> None:
    ports = published(compose["services"][service])
    assert ports == {p: ("127.0.0.1", p) for p in PORTS.values()}


def test_every_published_port_is_bound_to_loopback_by_default(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for address, _ in published(service).values():
            assert address == "127.0.0.1", f"{name} publishes on {address}"


def test_bind_does_not_expose_the_console_which_holds_the_admin_key(
    compose: dict[str, Any],
) -> None:
    (spec,) = compose["services"]["console"]["ports"]
    assert spec.startswith("${CONSOLE_BIND:-127.0.0.1}:"), spec
    assert "TRITONHF_ADMIN_KEY" in compose["services"]["console"]["environment"]


def test_compose_triton_mounts_the_exported_repository_read_only(
    compose: dict[str, Any],
) -> None:
    serve_defaults = _subcommand("serve").parse_args([])
    export_defaults = _subcommand("export").parse_args([])
    for service in ("triton", "triton-cpu"):
        (volume,) = compose["services"][service]["volumes"]
        assert volume["type"] == "bind"
        assert volume["read_only"] is True
        assert volume["target"] == MODELS_DIR
        # `make up` passes REPO in this variable; without it, the CLI's default folder.
        source = re.fullmatch(r"\$\{TRITONHF_MODEL_REPOSITORY:-(.+)\}", volume["source"])
        assert source is not None, volume["source"]
        assert Path(source.group(1)) == serve_defaults.repo == export_defaults.repo
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert f"{serve_defaults.repo}/" in gitignore  # generated, so it need not exist in git


def test_compose_health_check_polls_readiness_on_the_http_port(compose: dict[str, Any]) -> None:
    test = " ".join(compose["services"]["triton"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{DEFAULTS.http_port}/v2/health/ready" in test
    dockerfile = dict(dockerfile_instructions("triton.Dockerfile"))
    assert f"http://127.0.0.1:{DEFAULTS.http_port}/v2/health/ready" in dockerfile["HEALTHCHECK"]
    assert dockerfile["EXPOSE"].split() == [str(p) for p in PORTS.values()]


def test_compose_triton_has_gpu_shm_and_profiles(compose: dict[str, Any]) -> None:
    gpu, cpu = compose["services"]["triton"], compose["services"]["triton-cpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert "deploy" not in cpu
    assert gpu["profiles"] == ["gpu"]
    assert cpu["profiles"] == ["cpu"]
    assert cpu["networks"]["default"]["aliases"] == ["triton"]
    assert gpu["shm_size"] == cpu["shm_size"] == "1gb"


def test_kubernetes_ports_probes_and_service_agree() -> None:
    docs = rendered()
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == PORTS
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    service = one(docs, "Service")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        name: (port, name) for name, port in PORTS.items()
    }
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    monitor = one(docs, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    # The alert rules and dashboards select up{job="triton"}, the compose scrape job's name.
    scrape_jobs = [c["job_name"] for c in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]]
    relabel = monitor["spec"]["endpoints"][0]["relabelings"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "triton"} in relabel
    assert "triton" in scrape_jobs


def test_kubernetes_runs_the_same_alert_and_recording_rules_as_compose() -> None:
    rule = one(rendered(), "PrometheusRule")
    assert rule["spec"]["groups"] == load_yaml(RULES)["groups"]


def test_kubernetes_repository_volume_is_the_pvc_mounted_read_only() -> None:
    docs = rendered()
    pvc = one(docs, "PersistentVolumeClaim")["metadata"]["name"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"] == {"claimName": pvc, "readOnly": True}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert mount == {"name": volume["name"], "mountPath": MODELS_DIR, "readOnly": True}
    shm = "/dev/shm"  # noqa: S108  # the Python backend's tensor exchange
    assert any(m["mountPath"] == shm for m in pod["containers"][0]["volumeMounts"])
    isvc = one(docs, "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["storageUri"].rstrip("/") == f"pvc://{pvc}"


def test_kserve_runtime_uses_the_project_image_and_explicit_model_control() -> None:
    docs = rendered()
    runtime = one(docs, "ServingRuntime")
    isvc = one(docs, "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] in {
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    }
    (container,) = runtime["spec"]["containers"]
    triton_image = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["image"] == triton_image
    assert all(arg.startswith("--") for arg in container["args"]), "args follow the ENTRYPOINT"
    args = flags(container["args"])
    assert {("--model-control-mode", "explicit"), ("--load-model", "*")} <= args
    metrics_port = runtime["spec"]["annotations"]["prometheus.kserve.io/port"]
    assert ("--metrics-port", metrics_port) in args
    assert metrics_port == str(DEFAULTS.metrics_port)


ADMIN_SECRET = {"name": "tritonhf-admin-key", "key": "admin-key", "optional": False}
"""The Secret docs/deployment.md tells to create; required, so no pod serves without a key."""


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_kubernetes_triton_and_kserve_take_the_admin_key_from_a_required_secret(
    overlay: str,
) -> None:
    docs = rendered(overlay)
    deployment = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    (runtime,) = one(docs, "ServingRuntime")["spec"]["containers"]
    for container in (deployment, runtime):
        env = {e["name"]: e for e in container.get("env", [])}
        assert env[ENV_VAR]["valueFrom"]["secretKeyRef"] == ADMIN_SECRET
        # The entrypoint adds the restricting flags from the key; flags here would win over it.
        assert not has_restricted_flags(container["args"])


def test_compose_passes_the_hosts_admin_key_to_triton_and_the_console_not_the_demo(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("triton", "triton-cpu", "console"):
        assert services[name]["environment"][ENV_VAR] == "${TRITONHF_ADMIN_KEY:-}", name
        assert not has_restricted_flags(services[name].get("command", []))
    assert ENV_VAR not in services["ui"].get("environment", {}), "the demo needs no admin key"


def test_gpu_overlay_reaches_the_kserve_predictor_too() -> None:
    isvc = one(rendered("gpu"), "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_hpa_scales_the_deployment_on_the_adapters_triton_metric() -> None:
    docs = rendered()
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    adapter = next(d for d in docs if d["kind"] == "ConfigMap")
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    (rule,) = rules
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    source = re.match(r"\^(\w+)\$", rule["name"]["matches"])
    assert source is not None
    assert source.group(1).startswith("nv_inference_")  # a Triton metric
    assert source.group(1) in rule["seriesQuery"]
    assert source.group(1) in rule["metricsQuery"]
    # The same Triton series the Prometheus rules (unit-tested with promtool) are built on.
    rules_text = "".join(
        p.read_text() for p in (ROOT / "observability" / "prometheus" / "rules").glob("*.yml")
    )
    for series in set(re.findall(r"\bnv_\w+", rule["metricsQuery"])):
        assert series in rules_text, f"{series} is not used by observability/prometheus/rules"


# --- the demo and the console ----------------------------------------------------------------


def _subcommand(name: str) -> Any:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[name]


@pytest.mark.parametrize(
    ("service", "default_port"), [("ui", DemoConfig().port), ("console", ConsoleConfig().port)]
)
def test_compose_app_commands_parse_and_reach_triton(
    compose: dict[str, Any], service: str, default_port: int
) -> None:
    command = compose["services"][service]["command"]
    args = build_parser().parse_args(command)
    assert args.command == service
    assert args.port == default_port == _subcommand(service).get_default("port")
    assert published(compose["services"][service]) == {default_port: ("127.0.0.1", default_port)}
    assert args.grpc_url == f"triton:{DEFAULTS.grpc_port}"
    assert args.http_url == f"triton:{DEFAULTS.http_port}"
    if service == "console":
        assert urlparse(args.metrics_url).netloc == f"triton:{DEFAULTS.metrics_port}"


def test_app_image_default_command_is_the_compose_ui_command(compose: dict[str, Any]) -> None:
    instructions = dict(dockerfile_instructions("app.Dockerfile"))
    assert json.loads(instructions["ENTRYPOINT"]) == ["tritonhf"]
    image_args = build_parser().parse_args(json.loads(instructions["CMD"]))
    compose_args = build_parser().parse_args(compose["services"]["ui"]["command"])
    assert image_args == compose_args
    assert f"'{DemoConfig().port}'" in instructions["HEALTHCHECK"]
    assert f"'{ConsoleConfig().port}'" in instructions["HEALTHCHECK"]
    assert instructions["EXPOSE"].split() == [str(DemoConfig().port), str(ConsoleConfig().port)]


# --- observability: scrape targets, datasources, mounted paths -------------------------------


def _service_ports(compose: dict[str, Any]) -> dict[str, set[int]]:
    """Where each compose service (and network alias) listens inside the network."""
    listens: dict[str, set[int]] = {}
    for name, service in compose["services"].items():
        ports = set(published(service))
        for alias in [name, *service.get("networks", {}).get("default", {}).get("aliases", [])]:
            listens.setdefault(alias, set()).update(ports)
    return listens


def test_prometheus_scrapes_triton_and_the_ui_at_compose_addresses(
    compose: dict[str, Any],
) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert f"triton:{DEFAULTS.metrics_port}" in targets
    assert f"ui:{DemoConfig().port}" in targets
    listens = _service_ports(compose)
    for target in targets:
        host, _, port = target.partition(":")
        assert int(port) in listens.get(host, set()), f"{target} is not a compose service port"
    for pattern in config.get("rule_files", []):
        assert list((ROOT / "observability" / "prometheus").glob(pattern)), pattern


def test_grafana_datasources_point_at_compose_services(compose: dict[str, Any]) -> None:
    config = load_yaml("observability/grafana/provisioning/datasources/datasources.yml")
    urls = {source["type"]: urlparse(source["url"]) for source in config["datasources"]}
    listens = _service_ports(compose)
    assert {"prometheus", "loki"} <= set(urls)
    for url in urls.values():
        assert url.port in listens.get(url.hostname or "", set()), url.geturl()


def test_grafana_dashboard_provider_reads_the_mounted_dashboards(compose: dict[str, Any]) -> None:
    mounts = {
        v["target"]: v["source"]
        for v in compose["services"]["grafana"]["volumes"]
        if isinstance(v, dict)
    }
    config = load_yaml("observability/grafana/provisioning/dashboards/dashboards.yml")
    for provider in config["providers"]:
        path = provider["options"]["path"]
        target = next((t for t in mounts if path == t or path.startswith(t + "/")), None)
        assert target is not None, f"dashboard path {path} is not mounted into grafana"
        local = ROOT / mounts[target] / Path(path).relative_to(target)
        assert list(local.glob("*.json")), f"no dashboards in {local}"


def test_every_compose_bind_mount_and_build_file_exists(compose: dict[str, Any]) -> None:
    repo_default = str(_subcommand("serve").get_default("repo"))
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith("./"):
                continue  # named volumes and host paths (the Docker socket)
            if Path(source) == Path(repo_default):
                continue  # generated by `tritonhf export` (checked above)
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_loki_listens_where_compose_publishes_it(compose: dict[str, Any]) -> None:
    config = load_yaml("observability/loki/loki.yml")
    port = config.get("server", {}).get("http_listen_port", 3100)
    assert port in published(compose["services"]["loki"])
    promtail = load_yaml("observability/promtail/promtail.yml")
    pushes = [urlparse(client["url"]) for client in promtail["clients"]]
    assert all((u.hostname, u.port) == ("loki", port) for u in pushes), pushes


# --- images: what is copied, what the Python backend imports ---------------------------------


def _dockerignore_allows(path: str) -> bool:
    allowed = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


@pytest.mark.parametrize("dockerfile", ["triton.Dockerfile", "app.Dockerfile"])
def test_dockerfile_copies_exist_and_pass_dockerignore(dockerfile: str) -> None:
    copies = [args for op, args in dockerfile_instructions(dockerfile) if op == "COPY"]
    assert copies
    for args in copies:
        if args.startswith("--from"):
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile} copies missing {source}"
            assert _dockerignore_allows(source.rstrip("/")), f".dockerignore drops {source}"
    assert not _dockerignore_allows(".venv")
    assert not _dockerignore_allows("model_repository")


def test_image_version_argument_equals_the_package_version() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    args = [a for op, a in dockerfile_instructions("triton.Dockerfile") if op == "ARG"]
    assert f"TRITONHF_VERSION={version}" in args


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _reachable(paths: list[Path]) -> tuple[set[Path], set[str]]:
    """The files reachable through tritonhf imports, and every dotted name they import."""
    seen: set[Path] = set()
    found: set[str] = set()
    todo = list(paths)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                found.add(name)
                if name.split(".")[0] == "tritonhf":
                    parts = name.split(".")
                    for i in range(1, len(parts) + 1):  # the package __init__s run too
                        base = ROOT.joinpath(*parts[:i])
                        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                            if candidate.is_file():
                                todo.append(candidate)
    return seen, found


def _module_level_imports(path: Path) -> set[str]:
    """Names imported when the module is imported: not those inside functions (run on call)."""
    names: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return names


def _tritonhf_files(name: str) -> list[Path]:
    parts = name.split(".")
    found = []
    for i in range(1, len(parts) + 1):  # the package __init__s run too
        base = ROOT.joinpath(*parts[:i])
        found += [c for c in (base.with_suffix(".py"), base / "__init__.py") if c.is_file()]
    return found


def _step_imports(step: Path) -> set[str]:
    """Top-level modules a step needs: all its own imports, lazy ones included (they run when
    it serves), and the module-level imports of every tritonhf module it reaches."""
    direct = {n for node in ast.walk(ast.parse(step.read_text())) for n in _names(node)}
    found = {n.split(".")[0] for n in direct}
    todo = [f for n in direct if n.startswith("tritonhf") for f in _tritonhf_files(n)]
    seen: set[Path] = {step}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _module_level_imports(path):
            found.add(name.split(".")[0])
            if name.startswith("tritonhf"):
                todo += _tritonhf_files(name)
    return found


def _names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return []


# Which requirement files of the Triton image each Python-backend step needs.
STEP_REQUIREMENTS = {
    "tokenizer.py": ("requirements-triton.txt",),
    "onnx_runtime.py": ("requirements-triton.txt",),
    "feedback.py": ("requirements-triton.txt",),
    "torch_runtime.py": ("requirements-triton.txt", "requirements-triton-torch.txt"),
    "cuda_graphs.py": ("requirements-triton.txt", "requirements-triton-torch.txt"),
    # The merged step wraps the python-onnx step, or the python-torch one (torch image only).
    "merged.py": ("requirements-triton.txt",),
    "busy.py": ("requirements-triton.txt",),
    "execute_clock.py": ("requirements-triton.txt",),
    "loads.py": ("requirements-triton.txt",),
}


def test_triton_image_installs_everything_the_python_backend_steps_import() -> None:
    steps = sorted(p for p in (ROOT / "tritonhf" / "backends").glob("*.py") if p.stem != "__init__")
    assert {p.name for p in steps} == set(STEP_REQUIREMENTS), "list the new step's requirements"
    for step in steps:
        pins: dict[str, str] = {}
        for requirements in STEP_REQUIREMENTS[step.name]:
            pins.update(_pins(ROOT / "docker" / requirements))
        third_party = _step_imports(step) - set(sys.stdlib_module_names)
        third_party -= {"tritonhf", "triton_python_backend_utils"}
        missing = {m for m in third_party if m.lower() not in pins}
        assert not missing, f"{step.name} imports {sorted(missing)}, not installed in the image"
    base = _pins(ROOT / "docker" / "requirements-triton.txt")
    assert base["numpy"].startswith("1.")  # the 2.51 stub misreads BYTES tensors under numpy 2
    assert "numpy" not in _pins(ROOT / "docker" / "requirements-triton-torch.txt")


# Added after 3.10, which the NGC 24.10 image's Python-backend stub runs.
NEWER_THAN_310 = {"tomllib", "enum.StrEnum", "typing.Self", "datetime.UTC", "typing.Never"}


def test_python_backend_code_runs_on_the_images_python_310() -> None:
    files, names = _reachable(sorted((ROOT / "tritonhf" / "backends").glob("*.py")))
    assert len(files) > 2  # the steps and the package modules they use
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
    assert not names & NEWER_THAN_310, sorted(names & NEWER_THAN_310)


def test_triton_image_pins_agree_with_constraints() -> None:
    image = _pins(ROOT / "docker" / "requirements-triton.txt")
    image.update(_pins(ROOT / "docker" / "requirements-triton-torch.txt"))
    constraints = _pins(ROOT / "constraints.txt")
    # constraints.txt's versions of these have no wheel for the NGC image's Python 3.10, or (torch)
    # are CUDA 13 builds, which the image's CUDA 12.6 cannot run (test_hardening.py).
    differs = {"onnxruntime", "transformers", "torch"}
    for name, version in image.items():
        if name not in differs:
            assert constraints.get(name) == version, (
                f"{name}: image {version}, tests {constraints.get(name)}"
            )


# --- workflows: what they run exists ---------------------------------------------------------


def _workflow_steps() -> list[dict[str, Any]]:
    steps = []
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            steps.extend(job.get("steps", []))
    return steps


def test_workflow_make_targets_and_files_exist() -> None:
    targets = set()
    for step in _workflow_steps():
        for line in step.get("run", "").splitlines():
            match = re.match(r"\s*make\s+(.+)", line)
            if match:
                targets.update(t for t in match.group(1).split() if "=" not in t)
            for script in re.findall(r"bash\s+(\S+)", line):
                assert (ROOT / script).is_file(), script
        for key in ("cache-dependency-path", "file"):
            value = str(step.get("with", {}).get(key, ""))
            for image in ("triton", "app"):
                for path in value.replace("${{ matrix.image }}", image).split():
                    assert (ROOT / path).is_file(), path
    assert {"install", "lint", "security", "deploy-check"} <= targets
    result = subprocess.run(  # nosec B603 B607
        ["make", "-n", *sorted(targets)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
