"""The steps record on their own thread, after the response: every request is still counted."""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CLASSIFIER
from tests.integration.test_bad_input import raw_infer
from tritonhf import data
from tritonhf.client import InvalidInputError, TritonHFClient
from tritonhf.server.launcher import TritonServer

COUNTED = (
    "tritonhf_texts_total",
    "tritonhf_tokens_total",
    "tritonhf_request_tokens_count",
    "tritonhf_predictions_total",
    "tritonhf_prediction_confidence_count",
)


def totals(server: TritonServer, model: str) -> dict[str, float]:
    """Each `COUNTED` series of ``model``, summed over its other labels."""
    with urllib.request.urlopen(server.config.metrics_url, timeout=5) as response:  # noqa: S310
        text = response.read().decode("utf-8")
    found = dict.fromkeys(COUNTED, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in found and sample.labels.get("model") == model:
                found[sample.name] += sample.value
    return found


def settled(server: TritonServer, model: str, timeout_s: float = 10) -> dict[str, float]:
    """The totals once two reads 0.3 s apart agree (earlier tests' recording has finished)."""
    deadline = time.monotonic() + timeout_s
    last = totals(server, model)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = totals(server, model)
        if now == last:
            return now
        last = now
    return last


def test_concurrent_requests_are_each_counted_exactly_once(server: TritonServer) -> None:
    texts = data.sentences()[:60]
    batches = [texts[i : i + 1 + i % 3] for i in range(0, 48)]
    before = settled(server, CLASSIFIER)

    with (
        TritonHFClient(server.config.grpc_url, timeout_s=60) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        results = list(pool.map(lambda b: client.classify(b, model=CLASSIFIER), batches))

    expected = {
        "tritonhf_texts_total": sum(len(b) for b in batches),
        "tritonhf_tokens_total": sum(p.num_tokens for r in results for p in r),
        "tritonhf_request_tokens_count": len(batches),
        "tritonhf_predictions_total": sum(len(b) for b in batches),
        "tritonhf_prediction_confidence_count": sum(len(b) for b in batches),
    }
    after = settled(server, CLASSIFIER)
    assert {name: after[name] - before[name] for name in COUNTED} == expected


def triton_requests(server: TritonServer, model: str) -> dict[str, float]:
    """Triton's own success and failure counters of ``model``, failures by reason."""
    with urllib.request.urlopen(server.config.metrics_url, timeout=5) as response:  # noqa: S310
        text = response.read().decode("utf-8")
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name.removeprefix("nv_inference_request_").removesuffix("_total")
            if key in ("success", "failure") and sample.labels["model"] == model:
                key += f"/{sample.labels['reason']}" if "reason" in sample.labels else ""
                found[key] = sample.value
    return found


def test_a_request_refused_by_a_step_is_two_ensemble_failures_and_a_step_success(
    server: TritonServer,
) -> None:
    """Pins the Triton behaviour that the recording rules and dashboards halve.

    If a Triton upgrade changes it, `model:tritonhf_request_failures:rate5m` and the
    overview's failure panels must change too.
    """
    with TritonHFClient(server.config.grpc_url) as client:
        client.embed(["warm"])
        time.sleep(0.3)  # Triton counts a request after it has answered it
        ensemble, step = (
            triton_requests(server, "minilm"),
            triton_requests(server, "minilm_tokenizer"),
        )
        with pytest.raises(InvalidInputError):
            raw_infer(client, [[b"bad \xff byte"]])
    time.sleep(0.3)

    def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}

    assert moved(ensemble, triton_requests(server, "minilm")) == {"failure/OTHER": 2}
    assert moved(step, triton_requests(server, "minilm_tokenizer")) == {"success": 1}
