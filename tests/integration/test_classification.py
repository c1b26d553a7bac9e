"""A served classifier against PyTorch: probabilities, labels, scores, top-k; CLI and config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLASSIFIER
from tests.integration.models import SENTIMENT_LABELS
from tritonhf import data
from tritonhf.client import InvalidInputError, TritonHFClient
from tritonhf.export.pipeline import ExportResult
from tritonhf.repository.checks import check_config_matches_onnx
from tritonhf.repository.configs import model_config
from tritonhf.server.launcher import TritonServer
from tritonhf.spec import PipelineSpec, Runtime, Task


@pytest.fixture(scope="module")
def reference(classifier_source: Path, classifier: ExportResult) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(classifier_source).eval()
    tokenizer = AutoTokenizer.from_pretrained(classifier_source)
    batch = tokenizer(
        data.sentences()[:100],
        padding=True,
        truncation=True,
        max_length=classifier.spec.max_length,
        return_tensors="pt",
    )
    with torch.no_grad():
        return torch.softmax(model(**batch).logits, dim=-1).numpy()


@pytest.fixture
def classifier_client(server: TritonServer, protocol: str) -> TritonHFClient:
    url = server.config.grpc_url if protocol == "grpc" else server.config.http_url
    return TritonHFClient(url, protocol=protocol, model=CLASSIFIER)


def test_the_task_and_labels_come_from_the_models_config(classifier: ExportResult) -> None:
    assert classifier.spec.task is Task.CLASSIFICATION
    assert classifier.spec.labels == SENTIMENT_LABELS
    assert [d.name for d in classifier.validation.outputs] == ["PROBABILITIES", "LABEL"]
    assert classifier.validation.passed


def test_served_predictions_match_pytorch(
    classifier_client: TritonHFClient, reference: np.ndarray
) -> None:
    results = classifier_client.classify(data.sentences()[:100], top_k=3)
    classifier_client.close()
    served = np.array([[dict(r.top)[label] for label in SENTIMENT_LABELS] for r in results])
    np.testing.assert_allclose(served, reference, atol=1e-4)
    assert [r.label for r in results] == [SENTIMENT_LABELS[i] for i in reference.argmax(1)]
    np.testing.assert_allclose([r.score for r in results], reference.max(1), atol=1e-4)
    assert all(r.top[0][0] == r.label for r in results)
    assert all(np.isclose(sum(p for _, p in r.top), 1.0, atol=1e-4) for r in results)


def test_top_k_orders_the_classes_and_beyond_them_gives_all(
    classifier_client: TritonHFClient,
) -> None:
    (result,) = classifier_client.classify(["what a day"], top_k=2)
    assert len(result.top) == 2
    assert result.top[0][1] >= result.top[1][1]
    (everything,) = classifier_client.classify(["what a day"], top_k=4)
    assert sorted(label for label, _ in everything.top) == sorted(SENTIMENT_LABELS)
    assert [label for label, _ in everything.top[:2]] == [label for label, _ in result.top]
    assert classifier_client.labels() == SENTIMENT_LABELS
    classifier_client.close()


def test_asking_an_embedder_for_labels_is_a_clear_error(server: TritonServer) -> None:
    with (
        TritonHFClient(server.config.grpc_url) as client,
        pytest.raises(InvalidInputError, match="not a tritonhf classifier"),
    ):
        client.classify(["hello"])


@pytest.mark.parametrize("call", ["embed", "encode"])
def test_asking_a_classifier_for_embeddings_is_a_clear_error(
    server: TritonServer, call: str
) -> None:
    with (
        TritonHFClient(server.config.grpc_url, model=CLASSIFIER) as client,
        pytest.raises(InvalidInputError, match=r"no EMBEDDING output: it is a classifier"),
    ):
        getattr(client, call)(["hello"])


def test_classify_cli_prints_labels_as_json(server: TritonServer) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "tritonhf.cli.main", "classify", "great", "awful",
            "--model", CLASSIFIER, "--url", server.config.grpc_url, "--top-k", "3", "--json",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["results"]
    assert [row["text"] for row in rows] == ["great", "awful"]
    assert all(row["label"] in SENTIMENT_LABELS and len(row["top"]) == 3 for row in rows)
    assert [row["truncated"] for row in rows] == [False, False]


def test_classify_cli_without_model_uses_the_one_served_classifier(server: TritonServer) -> None:
    with TritonHFClient(server.config.http_url, protocol="http") as client:
        served = client.served()
    assert (served.embedders, served.classifiers) == (("minilm",), (CLASSIFIER,))
    done = subprocess.run(
        [
            sys.executable, "-m", "tritonhf.cli.main", "classify", "great", "--json",
            "--url", server.config.grpc_url,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["model"] == CLASSIFIER
    assert answer["results"][0]["label"] in SENTIMENT_LABELS


def test_the_native_onnxruntime_config_of_a_classifier_matches_its_graph(
    classifier: ExportResult,
) -> None:
    spec = PipelineSpec(
        name=CLASSIFIER,
        task=Task.CLASSIFICATION,
        runtime=Runtime.ONNXRUNTIME,
        embedding_size=classifier.spec.embedding_size,
        max_length=classifier.spec.max_length,
        max_batch_size=16,
        labels=SENTIMENT_LABELS,
    )
    check_config_matches_onnx(model_config(spec), classifier.onnx.path)
