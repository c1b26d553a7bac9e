"""The steps' JSON request lines in the session server's log: fields, correlation, no raw text."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import CLASSIFIER
from tritonhf.client import InvalidInputError, TritonHFClient
from tritonhf.server.launcher import TritonServer

COMMON = {"ts", "level", "logger", "event", "model", "step", "request_id", "outcome", "latency_ms"}


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of the server log that is a tritonhf JSON record."""
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{") and '"logger":"tritonhf' in line:
            found.append(json.loads(line))
    return found


def lines_for(
    log: Path, request_id: str, count: int, timeout_s: float = 10
) -> list[dict[str, Any]]:
    """The records of ``request_id`` once ``count`` of them are written."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r for r in json_lines(log) if r.get("request_id") == request_id]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture(scope="module")
def client(server: TritonServer) -> Iterator[TritonHFClient]:
    with TritonHFClient(server.config.grpc_url, timeout_s=60) as connected:
        yield connected


@pytest.fixture(scope="module")
def log(server: TritonServer) -> Path:
    assert server.log_path is not None
    return server.log_path


def secret() -> str:
    return f"confidential patient note {uuid.uuid4().hex}"


def test_an_embedding_request_logs_one_line_per_step_with_its_request_id(
    client: TritonHFClient, log: Path
) -> None:
    text = secret()
    result = client.encode([text, "second text " * 300])

    tokenize, infer = sorted(
        lines_for(log, result.request_id, 2), key=lambda r: r["step"] != "tokenizer"
    )

    assert set(tokenize) >= COMMON
    assert set(infer) >= COMMON
    assert (tokenize["step"], tokenize["event"], tokenize["model"]) == (
        "tokenizer",
        "tokenize",
        "minilm",
    )
    assert tokenize["texts"] == 2
    assert tokenize["tokens"] == result.num_tokens.tolist()
    assert tokenize["truncated"] == 1 == int(result.truncated.sum())
    assert tokenize["outcome"] == "ok"
    assert tokenize["latency_ms"] >= 0
    assert (infer["step"], infer["texts"]) == ("model", 2)
    assert infer["embedding_norm_mean"] == pytest.approx(1.0, abs=1e-3)
    assert text not in log.read_text(encoding="utf-8", errors="replace")


def test_a_classification_logs_labels_and_confidence_but_not_the_text(
    client: TritonHFClient, log: Path
) -> None:
    text = secret()
    (prediction,) = client.classify([text], model=CLASSIFIER, request_id=f"ui-{uuid.uuid4().hex}")

    records = lines_for(log, prediction.request_id, 2)
    (infer,) = [r for r in records if r["step"] == "model"]

    assert infer["model"] == CLASSIFIER
    assert infer["labels"] == [prediction.label]
    assert infer["confidence"] == [pytest.approx(prediction.score, abs=1e-4)]
    assert text not in json.dumps(records)
    assert text not in log.read_text(encoding="utf-8", errors="replace")


def test_bad_input_logs_the_error_type_and_reason(client: TritonHFClient, log: Path) -> None:
    request_id = uuid.uuid4().hex
    module = client._module()
    tensor = module.InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"\xff\xfe"]], dtype=object))

    with pytest.raises(InvalidInputError, match="not valid UTF-8"):
        client._call("minilm", "infer", "minilm", [tensor], request_id=request_id)

    (record,) = lines_for(log, request_id, 1)
    assert record["outcome"] == "error"
    assert (record["error_type"], record["reason"]) == ("TextError", "not_utf8")
    assert record["level"] == "warning"
    assert "TEXT[0] is not valid UTF-8" in record["error"]


def test_feedback_is_logged_against_the_rated_request(client: TritonHFClient, log: Path) -> None:
    (prediction,) = client.classify(["what a lovely day"], model=CLASSIFIER)
    label = client.labels(CLASSIFIER)[-1]

    client.feedback(
        request_id=prediction.request_id, positive=False, corrected_label=label, model=CLASSIFIER
    )

    (record,) = [r for r in lines_for(log, prediction.request_id, 3) if r["step"] == "feedback"]
    assert record["event"] == "feedback"
    assert (record["rating"], record["corrected_label"], record["outcome"]) == (
        "negative",
        label,
        "ok",
    )


def test_an_empty_corrected_label_sent_raw_is_no_correction(
    client: TritonHFClient, log: Path
) -> None:
    import tritonclient.grpc as grpcclient

    (prediction,) = client.classify(["an ordinary day"], model=CLASSIFIER)
    tensors = {
        "REQUEST_ID": (np.array([prediction.request_id.encode()], dtype=object), "BYTES"),
        "POSITIVE": (np.array([True]), "BOOL"),
        "CORRECTED_LABEL": (np.array([b""], dtype=object), "BYTES"),  # always sent, empty
    }
    inputs = []
    for name, (array, wire) in tensors.items():
        tensor = grpcclient.InferInput(name, list(array.shape), wire)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    raw = grpcclient.InferenceServerClient(client.url)
    try:
        answer = raw.infer(f"{CLASSIFIER}_feedback", inputs)
    finally:
        raw.close()

    assert answer.as_numpy("ACCEPTED").tolist() == [True]
    (record,) = [r for r in lines_for(log, prediction.request_id, 3) if r["step"] == "feedback"]
    assert (record["rating"], record["outcome"]) == ("positive", "ok")
    assert record.get("corrected_label") is None
