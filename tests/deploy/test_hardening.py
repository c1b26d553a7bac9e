"""What an outside review of the production artefacts found, kept fixed.

Images reach Kubernetes only by immutable tags and only after CI passed; the HPA alone sets the
replica count; KServe's metrics annotations are switched on; the app image's health check follows
the command it runs; `make up` and `make bench` honour REPO and BENCH_DIR; the torch image layer
matches the base image's CUDA 12.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

from tests.deploy import kustomize
from tests.deploy.support import ROOT, load_yaml, run
from tests.deploy.test_drift import dockerfile_instructions, one, rendered

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = "ghcr.io/tritonhf/tritonhf-triton"


# --- Kubernetes: which image, how many replicas, KServe metrics -------------------------------


def _triton_images(docs: list[dict[str, Any]]) -> set[str]:
    deployment = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    (runtime,) = one(docs, "ServingRuntime")["spec"]["containers"]
    return {deployment, runtime["image"]}


@pytest.mark.parametrize("overlay", kustomize.OVERLAYS)
def test_kubernetes_runs_the_release_of_the_package_version(overlay: str) -> None:
    assert _triton_images(rendered(overlay)) == {f"{IMAGE}:{VERSION}"}
    # release.yml publishes exactly that tag (X.Y.Z from the v-tag).
    release = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert "type=semver,pattern={{version}}" in release


def test_kustomize_edit_set_image_in_an_overlay_pins_a_commit(tmp_path: Path) -> None:
    # What `kustomize edit set image IMAGE:sha-<commit>` writes into an overlay: it names the
    # base's output image (`kubectl kustomize` renders this the same way).
    shutil.copytree(kustomize.K8S, tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "gpu"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    tag = "sha-" + "0123456789abcdef" * 2 + "01234567"
    kustomization["images"] = [{"name": IMAGE, "newTag": tag}]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    assert _triton_images(kustomize.render(overlay)) == {f"{IMAGE}:{tag}"}


@pytest.mark.parametrize("overlay", kustomize.OVERLAYS)
def test_the_hpa_alone_sets_the_deployments_replicas(overlay: str) -> None:
    docs = rendered(overlay)
    hpa = one(docs, "HorizontalPodAutoscaler")
    deployment = one(docs, "Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "an apply would reset the HPA's count"


def test_kserve_scrapes_the_runtimes_metrics_port() -> None:
    docs = rendered()
    isvc = one(docs, "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"
    annotations = one(docs, "ServingRuntime")["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/path"] == "/metrics"


# --- workflows: images pushed only after CI ---------------------------------------------------


def _workflow(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = load_yaml(f".github/workflows/{name}")
    return data


def test_images_are_pushed_only_after_ci_passed_on_that_commit() -> None:
    images = _workflow("images.yml")
    triggers = images[True]  # PyYAML reads the key `on` as True
    assert "push" not in triggers, "a push to main would publish before CI"
    ci_run = triggers["workflow_run"]
    assert ci_run["workflows"] == [_workflow("ci.yml")["name"]]
    assert ci_run["types"] == ["completed"]
    (job,) = images["jobs"].values()
    assert "github.event.workflow_run.conclusion == 'success'" in job["if"]
    assert job["env"]["PUSH"] == "${{ github.event_name == 'workflow_run' }}"
    assert "github.event.workflow_run.head_sha" in job["env"]["COMMIT"]
    steps = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
    assert steps["actions/checkout"]["with"]["ref"] == "${{ env.COMMIT }}"
    assert steps["docker/build-push-action"]["with"]["push"] == "${{ env.PUSH == 'true' }}"
    tags = steps["docker/metadata-action"]["with"]["tags"]
    assert "type=raw,value=sha-${{ env.COMMIT }}" in tags
    assert "type=sha" not in tags, "metadata-action's sha is github.sha, not the tested commit"


def test_the_release_publishes_its_images_after_ci() -> None:
    jobs = _workflow("release.yml")["jobs"]
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["images"]["needs"] == ["ci"]


# --- the app image's health check --------------------------------------------------------------


@pytest.fixture
def answering() -> Iterator[tuple[int, set[str]]]:
    """A server on a free loopback port answering 200 on the paths put in the returned set."""
    paths: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            self.send_response(200 if self.path in paths else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _app_health(tmp_path: Path, argv: list[str]) -> int:
    """Run the app image's HEALTHCHECK with ``argv`` as PID 1's command line."""
    healthcheck = dict(dockerfile_instructions("app.Dockerfile"))["HEALTHCHECK"]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("\0".join(argv) + "\0")
    code = command[2].replace("/proc/1/cmdline", str(cmdline))
    return run(sys.executable, "-c", code, timeout=30).returncode


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["python", "/usr/local/bin/tritonhf", "ui", "--port=PORT"], "/metrics"),
        (["python", "/usr/local/bin/tritonhf", "console", "--port", "PORT"], "/_stcore/health"),
        # docker run --init: PID 1 is docker-init, the command follows "--".
        (["/sbin/docker-init", "--", "tritonhf", "console", "--port=PORT"], "/_stcore/health"),
    ],
)
def test_app_health_check_polls_the_command_it_runs(
    tmp_path: Path, answering: tuple[int, set[str]], argv: list[str], path: str
) -> None:
    port, paths = answering
    argv = [a.replace("PORT", str(port)) for a in argv]
    assert _app_health(tmp_path, argv) == 1  # nothing answers yet
    paths.add(path)
    assert _app_health(tmp_path, argv) == 0
    paths.clear()
    paths.add({"/metrics": "/_stcore/health", "/_stcore/health": "/metrics"}[path])
    assert _app_health(tmp_path, argv) == 1  # the other command's endpoint does not count


# --- Makefile: up and bench --------------------------------------------------------------------


def test_make_up_mounts_repo_and_exports_what_make_run_serves(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    result = run("make", "-n", "up", f"REPO={repo}", "PROFILE=cpu")
    assert result.returncode == 0, result.stderr
    assert f"--name minilm --repo {repo}" in result.stdout
    assert f"--name sentiment --repo {repo}" in result.stdout
    assert re.search(rf"^TRITONHF_MODEL_REPOSITORY={repo} docker compose ", result.stdout, re.M)
    volume = load_yaml("docker-compose.yml")["services"]["triton"]["volumes"][0]
    assert volume["source"].startswith("${TRITONHF_MODEL_REPOSITORY:-")


def test_make_bench_writes_where_make_console_reads(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    for target in ("bench", "console"):
        result = run("make", "-n", target, f"BENCH_DIR={bench}", f"REPO={tmp_path / 'repo'}")
        assert result.returncode == 0, result.stderr
        assert str(bench) in result.stdout, target


# --- the torch layer of the Triton image -------------------------------------------------------

# PyPI's Linux x86_64 torch wheels: 2.7 is a CUDA 12.6 build, 2.8-2.10 CUDA 12.8, 2.11 on CUDA 13
# (their nvidia-*-cu12 / cuda-toolkit 13 requirements). transformers 5 needs torch >= 2.6.
LAST_CUDA_12_TORCH = (2, 10)


def test_the_torch_layer_is_a_cuda_12_build_for_the_base_images_cuda_12_6() -> None:
    pins = {}
    for line in (ROOT / "docker" / "requirements-triton-torch.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    torch = tuple(int(part) for part in pins["torch"].split(".")[:2])
    assert (2, 6) <= torch <= LAST_CUDA_12_TORCH, pins["torch"]
    assert pins["transformers"].startswith("5.")
    dockerfile = (ROOT / "docker" / "triton.Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tritonserver:24.10-py3" in dockerfile  # CUDA 12.6


def test_every_action_is_pinned_to_a_commit_with_its_version_named() -> None:
    # A tag can be moved to other code; a commit SHA cannot. Dependabot proposes new SHAs.
    pinned = re.compile(r"^\s*(?:- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+$")
    remote = re.compile(r"^\s*(?:- )?uses: (?!\./)")
    for workflow in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for line in workflow.read_text(encoding="utf-8").splitlines():
            if remote.match(line):
                assert pinned.match(line), f"{workflow.name}: {line.strip()}"
    dependabot = load_yaml(".github/dependabot.yml")
    assert [u["package-ecosystem"] for u in dependabot["updates"]] == ["github-actions"]
