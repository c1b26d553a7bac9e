"""The demo's service layer (what the Gradio callbacks call) against the shared real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import CLASSIFIER
from tests.integration.models import SENTIMENT_LABELS
from tritonhf.errors import InvalidInputError, ServerUnavailableError
from tritonhf.server.launcher import TritonServer
from tritonhf.server.ports import free_ports
from tritonhf.ui.service import DemoConfig, DemoService


@pytest.fixture
def service(server: TritonServer) -> Iterator[DemoService]:
    config = DemoConfig(grpc_url=server.config.grpc_url, http_url=server.config.http_url)
    demo = DemoService(config)
    yield demo
    demo.close()


def outcomes(service: DemoService, action: str) -> dict[str, float]:
    """``tritonhf_ui_requests_total`` of ``action`` by outcome, as the demo's /metrics has it."""
    return {
        sample.labels["outcome"]: sample.value
        for metric in service.registry.collect()
        for sample in metric.samples
        if sample.name == "tritonhf_ui_requests_total" and sample.labels["action"] == action
    }


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_classify_without_a_chosen_classifier_finds_the_served_one(
    service: DemoService, protocol: str
) -> None:
    # As after a page that loaded while Triton was down: the dropdown is empty.
    done = service.classify("great service, friendly staff", protocol=protocol, model=None)

    assert done.info.model == CLASSIFIER
    assert done.result.label in SENTIMENT_LABELS
    assert set(done.labels) == set(SENTIMENT_LABELS)


def test_every_action_is_counted_when_it_fails_before_the_request(service: DemoService) -> None:
    with pytest.raises(InvalidInputError):
        service.classify("   ", protocol="grpc", model=CLASSIFIER)
    with pytest.raises(InvalidInputError, match="not a tritonhf classifier"):
        service.classify("a text", protocol="grpc", model="minilm")
    with pytest.raises(InvalidInputError):
        service.search("  ", k=3, protocol="grpc", model="minilm")
    service.search("my parcel never arrived", k=3, protocol="grpc", model="minilm")
    with pytest.raises(InvalidInputError, match="at least one sentence"):
        service.compare(" \n ", protocol="grpc", model="minilm")
    service.compare("one\ntwo", protocol="grpc", model="minilm")

    assert outcomes(service, "classify") == {"InvalidInputError": 2.0}
    assert outcomes(service, "search") == {"InvalidInputError": 1.0, "ok": 1.0}
    assert outcomes(service, "compare") == {"InvalidInputError": 1.0, "ok": 1.0}


def test_a_server_that_is_down_is_counted_and_named() -> None:
    grpc, http = free_ports(2)
    service = DemoService(DemoConfig(grpc_url=f"127.0.0.1:{grpc}", http_url=f"127.0.0.1:{http}"))
    try:
        with pytest.raises(ServerUnavailableError):
            service.classify("a text", protocol="grpc", model=None)
        assert outcomes(service, "classify") == {"ServerUnavailableError": 1.0}
    finally:
        service.close()


def test_a_model_or_classifier_the_server_does_not_serve_is_named_at_start(
    server: TritonServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = DemoConfig(
        grpc_url=server.config.grpc_url, model=CLASSIFIER, classifier="minilm"
    )  # swapped: neither can do its job
    service = DemoService(config)
    try:
        service.warm()
    finally:
        service.close()

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"--model {CLASSIFIER} is not an embedding model" in w for w in warnings)
    assert any("--classifier minilm is not a classifier" in w for w in warnings)
