"""Shared test setup.

Markers by folder (tests/unit, tests/integration, tests/e2e), and one exported repository and
one real Triton server for the whole test session, shared by the integration and e2e tests.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.models import SENTIMENT_LABELS, tiny_model
from tritonhf.client import TritonHFClient
from tritonhf.export.pipeline import ExportOptions, ExportResult, export_model
from tritonhf.server.launcher import ServerConfig, TritonServer
from tritonhf.server.ports import free_ports
from tritonhf.telemetry import telemetry_off

TESTS = Path(__file__).parent
FOLDER_MARKERS = ("unit", "integration", "e2e", "deploy")


def pytest_configure(config: pytest.Config) -> None:
    telemetry_off(os.environ)  # as the CLI does, before any test loads ONNX Runtime


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.path).relative_to(TESTS).parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))


PROBE_MODEL = "env_probe"
PROBE_CONFIG = """
name: "env_probe"
backend: "python"
max_batch_size: 0
input { name: "DUMMY" data_type: TYPE_INT32 dims: [ 1 ] }
output { name: "INFO" data_type: TYPE_STRING dims: [ 1 ] }
"""
# Reports where the Python-backend stub's interpreter and packages come from.
PROBE_MODEL_PY = """
import json, sys
import numpy, tokenizers, onnxruntime
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        info = {
            "prefix": sys.prefix,
            "isolated": sys.flags.isolated,
            "modules": {m.__name__: m.__file__ for m in (numpy, tokenizers, onnxruntime)},
            "numpy_version": numpy.__version__,
        }
        blob = numpy.array([json.dumps(info).encode()], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("INFO", blob)]) for _ in requests]
"""


def server_config(repo: Path, **overrides: object) -> ServerConfig:
    http, grpc, metrics = free_ports(3)
    settings: dict[str, object] = {
        "repo": repo,
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "exit_timeout_s": 5,
        "startup_timeout_s": 120,
    }
    settings.update(overrides)
    return ServerConfig(**settings)  # type: ignore[arg-type]


def series_total(server: TritonServer, series: str) -> float:
    """The sum of the server's metric samples whose line starts with ``series``."""
    with urllib.request.urlopen(server.config.metrics_url, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series))


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """The default model exported once, with the python-onnx runtime."""
    return export_model(ExportOptions(repo=tmp_path_factory.mktemp("repo")))


CLASSIFIER = "tinycls"


@pytest.fixture(scope="session")
def classifier_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random 3-class sentiment classifier (a HF folder)."""
    return tiny_model(tmp_path_factory.mktemp("classifier"), labels=SENTIMENT_LABELS)


@pytest.fixture(scope="session")
def classifier(exported: ExportResult, classifier_source: Path) -> ExportResult:
    """The classifier exported beside the default model (task detected from its config)."""
    return export_model(
        ExportOptions(
            model=str(classifier_source),
            name=CLASSIFIER,
            repo=exported.folders[0].parent,
            max_batch_size=16,
        )
    )


@pytest.fixture(scope="session")
def repo(exported: ExportResult, classifier: ExportResult) -> Path:
    folder = exported.folders[0].parent
    probe = folder / PROBE_MODEL
    (probe / "1").mkdir(parents=True, exist_ok=True)
    (probe / "config.pbtxt").write_text(PROBE_CONFIG)
    (probe / "1" / "model.py").write_text(PROBE_MODEL_PY)
    return folder


@pytest.fixture(scope="session")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """The session's Triton server on free 127.0.0.1 ports; always stopped at the end."""
    log = tmp_path_factory.mktemp("logs") / "tritonserver.log"
    with TritonServer(server_config(repo), log_path=log) as running:
        yield running


@pytest.fixture(params=["grpc", "http"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(server: TritonServer, protocol: str) -> Iterator[TritonHFClient]:
    url = server.config.grpc_url if protocol == "grpc" else server.config.http_url
    with TritonHFClient(url, protocol=protocol, timeout_s=60) as connected:
        yield connected


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        stat = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
