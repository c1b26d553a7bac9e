"""Drift on the real server: reference-like traffic keeps PSI low, very long texts raise it.

The classifier's steps keep a sliding window (500 texts) per feature; the test fills it
completely each time, so traffic from other tests does not matter.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CLASSIFIER
from tritonhf import data
from tritonhf.client import TritonHFClient
from tritonhf.observability.drift import (
    ALERT_THRESHOLD,
    DEFAULT_WINDOW,
    EMBEDDING_SIMILARITY,
    LABEL,
    TOKEN_LENGTH,
)
from tritonhf.server.launcher import TritonServer


def drift_scores(server: TritonServer, model: str, timeout_s: float = 10) -> dict[str, float]:
    """``tritonhf_drift_psi`` per feature for ``model`` once the steps have recorded it all.

    The steps record after responding, so the scores are read until two reads 0.3 s apart agree.
    """
    deadline = time.monotonic() + timeout_s
    last = _scores(server, model)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = _scores(server, model)
        if now == last:
            break
        last = now
    return last


def _scores(server: TritonServer, model: str) -> dict[str, float]:
    with urllib.request.urlopen(server.config.metrics_url, timeout=5) as response:  # noqa: S310
        text = response.read().decode("utf-8")
    return {
        sample.labels["feature"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "tritonhf_drift_psi"
        for sample in family.samples
        if sample.labels["model"] == model
    }


def fill_window(client: TritonHFClient, texts: list[str]) -> None:
    for start in range(0, len(texts), 64):
        client.classify(texts[start : start + 64], model=CLASSIFIER)


@pytest.fixture(scope="module")
def client(server: TritonServer) -> Iterator[TritonHFClient]:
    with TritonHFClient(server.config.grpc_url, timeout_s=60) as connected:
        yield connected


def reference_like() -> list[str]:
    sentences = data.sentences()  # the export's default reference set
    repeats = -(-DEFAULT_WINDOW // len(sentences))
    return (sentences * repeats)[:DEFAULT_WINDOW]


def test_reference_like_traffic_keeps_drift_below_the_alert_threshold(
    server: TritonServer, client: TritonHFClient
) -> None:
    fill_window(client, reference_like())

    scores = drift_scores(server, CLASSIFIER)

    print(f"PSI after {DEFAULT_WINDOW} reference-like texts: {scores}")
    assert set(scores) == {TOKEN_LENGTH, LABEL}
    assert scores[TOKEN_LENGTH] < 0.1 < ALERT_THRESHOLD
    assert scores[LABEL] < 0.1


def test_very_long_texts_push_token_length_drift_above_the_alert_threshold(
    server: TritonServer, client: TritonHFClient
) -> None:
    fill_window(client, reference_like())
    words = data.sentences()
    long_texts = [" ".join(words[i : i + 40]) for i in range(DEFAULT_WINDOW // 2)]

    fill_window(client, long_texts)  # half the window is now truncated texts

    scores = drift_scores(server, CLASSIFIER)
    print(f"PSI after {len(long_texts)} very long texts: {scores}")
    assert scores[TOKEN_LENGTH] > ALERT_THRESHOLD


def test_requests_sent_with_drift_off_stay_out_of_the_window(
    server: TritonServer, client: TritonHFClient
) -> None:
    # What the demo does with its corpus index: not the users' traffic.
    fill_window(client, reference_like())
    before = drift_scores(server, CLASSIFIER)
    words = data.sentences()
    long_texts = [" ".join(words[i : i + 40]) for i in range(DEFAULT_WINDOW // 2)]

    for start in range(0, len(long_texts), 64):
        client.classify(long_texts[start : start + 64], model=CLASSIFIER, drift=False)

    assert drift_scores(server, CLASSIFIER) == before


EMBEDDER_TEXTS = 2 * DEFAULT_WINDOW
"""Texts that fill the window of each of the embedder's two model instances."""


def embed_all(client: TritonHFClient, texts: list[str]) -> None:
    for start in range(0, len(texts), 64):
        client.embed(texts[start : start + 64], model="minilm")


def source_lines() -> list[str]:
    """Lines of this package's Python source: text on another subject than the corpus's."""
    package = Path(data.__file__).parent.parent
    lines = [
        line.strip()
        for path in sorted(package.rglob("*.py"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if len(line.strip()) > 30
    ]
    return lines[:: max(1, len(lines) // EMBEDDER_TEXTS)][:EMBEDDER_TEXTS]


def test_an_embedders_similarity_to_its_reference_drifts_on_another_subject(
    server: TritonServer, client: TritonHFClient
) -> None:
    sentences = data.sentences()  # the export's default reference set
    embed_all(client, (sentences * -(-EMBEDDER_TEXTS // len(sentences)))[:EMBEDDER_TEXTS])
    alike = drift_scores(server, "minilm")

    embed_all(client, source_lines())
    elsewhere = drift_scores(server, "minilm")

    print(f"PSI of the embeddings' similarity: reference-like {alike}, source code {elsewhere}")
    assert alike[EMBEDDING_SIMILARITY] < ALERT_THRESHOLD
    assert elsewhere[EMBEDDING_SIMILARITY] > ALERT_THRESHOLD
