"""A real Triton started with an admin key: what stays open, what is refused, and what works.

One server for the module; the last test deploys with the key and stops it with a drain.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import server_config
from tritonhf.cli.main import main
from tritonhf.client import PermissionDeniedError, RetryPolicy, TritonHFClient
from tritonhf.client.deploy import deploy_pipeline
from tritonhf.export.pipeline import ExportResult
from tritonhf.server.admin import HEADER
from tritonhf.server.drain import drain
from tritonhf.server.launcher import ModelControl, TritonServer

KEY = "integration-admin-key-0123456789"
PIPELINE = ("minilm", "minilm_feedback", "minilm_model", "minilm_tokenizer")
# What an attacker would upload: a Python-backend model whose initialize() runs code.
UPLOADED = "import pathlib\nclass TritonPythonModel:\n    def initialize(self, args):\n"
UPLOADED += "        pathlib.Path('/tmp/tritonhf-admin-key-pwned').touch()\n"


@pytest.fixture(scope="module")
def keyed_server(
    exported: ExportResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """The exported pipeline, copied, served in explicit mode with `KEY` as the admin key."""
    source = exported.folders[0].parent
    repo = tmp_path_factory.mktemp("admin") / "repo"
    for name in PIPELINE:
        shutil.copytree(source / name, repo / name)
    config = server_config(repo, model_control=ModelControl.EXPLICIT, admin_key=KEY)
    with TritonServer(config, log_path=repo.parent / "server.log") as server:
        yield server


def clients(server: TritonServer, key: str) -> list[TritonHFClient]:
    """A gRPC and an HTTP client sending ``key`` (``""``: none) on admin calls."""
    retry = RetryPolicy(attempts=1)
    return [
        TritonHFClient(server.config.grpc_url, protocol="grpc", admin_key=key, retry=retry),
        TritonHFClient(server.config.http_url, protocol="http", admin_key=key, retry=retry),
    ]


def raw_post(server: TritonServer, path: str, body: dict[str, object]) -> tuple[int, str]:
    """POST to Triton's HTTP endpoint without any header: (status, body)."""
    request = urllib.request.Request(
        f"http://{server.config.http_url}{path}", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Connection", "close")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # nosec B310
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_inference_health_and_config_need_no_key(keyed_server: TritonServer) -> None:
    for client in clients(keyed_server, ""):
        with client:
            assert client.embed(["served without the admin key"]).shape == (1, 384)
            assert client.health().model_ready
            assert client.model_config("minilm")["platform"] == "ensemble"
            assert {s.name for s in client.loaded_models()} == set(PIPELINE)


@pytest.mark.parametrize("key", ["", "a-wrong-key-of-enough-length"], ids=["none", "wrong"])
def test_index_unload_and_load_without_the_key_are_refused_and_the_model_still_serves(
    keyed_server: TritonServer, key: str
) -> None:
    said = "refused the admin key this client sent" if key else "it needs the admin key"
    for client in clients(keyed_server, key):
        with client:
            with pytest.raises(PermissionDeniedError, match="TRITONHF_ADMIN_KEY") as refused:
                client.models()
            assert said in str(refused.value)
            with pytest.raises(PermissionDeniedError):
                client.unload_model("minilm")
            with pytest.raises(PermissionDeniedError):
                client.load_model("minilm_model")
            with pytest.raises(PermissionDeniedError):
                deploy_pipeline(client, model="minilm")
            assert client.embed(["still served"]).shape == (1, 384)


def test_raw_repository_calls_without_the_header_are_refused(keyed_server: TritonServer) -> None:
    status, body = raw_post(keyed_server, "/v2/repository/models/minilm/unload", {})
    assert status == 403
    assert f"expecting header '{HEADER}'" in body

    upload = {
        "parameters": {
            "config": json.dumps({"backend": "python", "max_batch_size": 0}),
            "file:1/model.py": base64.b64encode(UPLOADED.encode()).decode(),
        }
    }
    status, _ = raw_post(keyed_server, "/v2/repository/models/pwned/load", upload)
    assert status == 403
    assert not Path("/tmp/tritonhf-admin-key-pwned").exists()  # noqa: S108
    assert not drain(keyed_server.config.http_url, 2.0), "a drain without the key is refused"
    assert keyed_server.is_ready()
    with TritonHFClient(keyed_server.config.grpc_url, admin_key="") as client:
        assert client.embed(["still served"]).shape == (1, 384)


def test_the_demo_finds_the_served_models_without_the_key(
    keyed_server: TritonServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tritonhf.ui.service import DemoConfig, DemoService

    monkeypatch.delenv("TRITONHF_ADMIN_KEY", raising=False)
    service = DemoService(
        DemoConfig(grpc_url=keyed_server.config.grpc_url, http_url=keyed_server.config.http_url)
    )
    try:
        assert service.states("grpc") is None
        assert service.served("grpc").embedders == ("minilm",)
        compared = service.compare("one sentence\nanother", protocol="grpc", model="minilm")
        assert compared.info.version == "1"
    finally:
        service.close()


def test_classify_without_model_says_no_classifier_is_served(keyed_server: TritonServer) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tritonhf.cli.main", "classify", "great",
         "--url", keyed_server.config.grpc_url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "serves no ready classifier: name one with --model" in done.stderr


def test_health_without_the_key_says_what_it_could_not_see_and_a_wrong_key_fails(
    keyed_server: TritonServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the key, `health` checks what serves (it cannot list an unloaded pipeline) and
    says so; a wrong key read as "no key" and passed with a pipeline down (probe A2)."""
    url = keyed_server.config.grpc_url
    monkeypatch.delenv("TRITONHF_ADMIN_KEY", raising=False)
    assert main(["health", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "needs its admin key, $TRITONHF_ADMIN_KEY: these are the pipelines that serve" in out
    assert "model minilm: ready=True" in out

    monkeypatch.setenv("TRITONHF_ADMIN_KEY", "a-wrong-key-of-enough-length")
    assert main(["health", "--url", url]) != 0
    assert "refused the admin key this client sent" in capsys.readouterr().err

    monkeypatch.setenv("TRITONHF_ADMIN_KEY", KEY)
    assert main(["health", "--url", url]) == 0
    assert "admin key" not in capsys.readouterr().out


def test_with_the_key_deploy_works_and_the_stop_drains_cleanly(
    keyed_server: TritonServer,
) -> None:
    repo = keyed_server.config.repo
    for step in ("minilm_tokenizer", "minilm_model"):  # a version of every step
        shutil.copytree(repo / step / "1", repo / step / "2")
    for client in clients(keyed_server, KEY):
        with client:
            assert {s.name for s in client.models()} == set(PIPELINE)
    grpc, http = clients(keyed_server, KEY)
    with grpc, http:
        states = deploy_pipeline(grpc, model="minilm")
        assert {s.name: s.version for s in states if s.ready}["minilm_model"] == "2"
        http.unload_model("minilm_feedback")
        http.load_model("minilm_feedback")
        assert grpc.embed(["served by version 2"]).shape == (1, 384)

    assert keyed_server.drain(30.0), "the drain with the key unloads every model"
    assert keyed_server.stop() == 0
