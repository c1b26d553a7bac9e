"""The steps record on their own thread, after the response: every request is still counted."""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CLASSIFIER
from tritonhf import data
from tritonhf.client import TritonHFClient
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
