"""The merged layout: the model step tokenizes, the ensemble has one step, the contract holds.

Merged exports are written beside the session's (split) models and loaded into its running
server, then compared with them request by request: same embeddings, labels, token counts
and truncation flags, the same typed errors, and the server stays up.
"""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLASSIFIER, series_total
from tests.integration.loaded import unload_pipelines
from tests.integration.models import tiny_model
from tritonhf import data
from tritonhf.client import TritonHFClient
from tritonhf.client.deploy import deploy_pipeline
from tritonhf.errors import ClientError, InvalidInputError
from tritonhf.export.pipeline import ExportOptions, export_model
from tritonhf.gate.acceptance import AcceptanceOptions, run_acceptance
from tritonhf.server.launcher import TritonServer
from tritonhf.spec import Layout, Runtime

LONG = " ".join(["The quarterly report covers revenue, churn and the support backlog."] * 60)
TEXTS = [*data.sentences()[:40], LONG, "ok", "Ünïcödé, emoji 🚀 and 中文 text."]


@pytest.fixture(scope="module")
def merged(
    server: TritonServer,
    repo: Path,
    classifier_source: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TritonHFClient]:
    """Merged exports of the session's two models and of a tiny model on both Python runtimes."""
    tiny = tiny_model(tmp_path_factory.mktemp("tiny-merged"))
    exports = {
        "minilm_merged": {},
        "cls_merged": {"model": str(classifier_source)},
        "tiny_onnx_merged": {"model": str(tiny)},
        "tiny_torch_merged": {"model": str(tiny), "runtime": Runtime.PYTHON_TORCH},
    }
    with TritonHFClient(server.config.grpc_url, timeout_s=120) as client:
        try:
            for name, options in exports.items():
                export_model(
                    ExportOptions(name=name, repo=repo, layout=Layout.MERGED, **options)  # type: ignore[arg-type]
                )
                client.load_model(name)
            yield client
        finally:
            # Leave the session's repository and server as they were: later tests use both.
            unload_pipelines(client, server, repo, exports)


def test_a_merged_export_has_no_tokenizer_step_and_a_one_step_ensemble(
    merged: TritonHFClient, repo: Path
) -> None:
    assert not (repo / "minilm_merged_tokenizer").exists()
    steps = merged.model_config("minilm_merged")["ensemble_scheduling"]["step"]
    assert [step["model_name"] for step in steps] == ["minilm_merged_model"]
    assert merged.token_limit("minilm_merged") == merged.token_limit("minilm") == 256
    with pytest.raises(ClientError, match="declares no max_length"):
        merged.token_limit("minilm_feedback")  # not an ensemble that tokenizes


def test_a_merged_step_counts_its_load_once(merged: TritonHFClient, server: TritonServer) -> None:
    """It runs the tokenizer's and the model's initialize too: three counts, and the objects it
    dropped took the series away (TritonHFStepReloading could not see a merged step)."""
    assert series_total(server, 'tritonhf_step_loads_total{model="minilm_merged_model"}') == 1


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_merged_embeddings_equal_the_split_ones(
    merged: TritonHFClient, server: TritonServer, protocol: str
) -> None:
    url = server.config.grpc_url if protocol == "grpc" else server.config.http_url
    with TritonHFClient(url, protocol=protocol) as client:
        split = client.encode(TEXTS, model="minilm")
        one = client.encode(TEXTS, model="minilm_merged")

    np.testing.assert_allclose(one.embeddings, split.embeddings, atol=1e-5)
    np.testing.assert_array_equal(one.num_tokens, split.num_tokens)
    np.testing.assert_array_equal(one.truncated, split.truncated)
    assert one.truncated.tolist().count(True) == 1  # LONG, cut to 256 tokens
    assert one.num_tokens.max() == 256


def test_merged_classifier_gives_the_split_labels_and_probabilities(
    merged: TritonHFClient,
) -> None:
    split = merged.classify(TEXTS, model=CLASSIFIER)
    one = merged.classify(TEXTS, model="cls_merged")

    assert [r.label for r in one] == [r.label for r in split]
    assert [r.num_tokens for r in one] == [r.num_tokens for r in split]
    np.testing.assert_allclose([r.score for r in one], [r.score for r in split], atol=1e-5)
    assert merged.labels("cls_merged") == merged.labels(CLASSIFIER)


def test_concurrent_requests_of_mixed_lengths_come_back_to_their_senders(
    merged: TritonHFClient,
) -> None:
    """Concurrent requests share dynamic batches (tokenized together, run in length groups)."""
    texts = [LONG[: 40 * (i % 9 + 1)] for i in range(48)]
    expected = merged.embed(texts, model="minilm")

    def one(index: int) -> np.ndarray:
        return merged.embed([texts[index]], model="minilm_merged")[0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        got = np.stack(list(pool.map(one, range(len(texts)))))

    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_python_torch_runtime_merges_too_and_agrees_with_onnx(merged: TritonHFClient) -> None:
    onnx = merged.encode(TEXTS, model="tiny_onnx_merged")
    torch = merged.encode(TEXTS, model="tiny_torch_merged")

    cosine = np.sum(onnx.embeddings * torch.embeddings, axis=1)
    assert cosine.min() > 0.9999
    np.testing.assert_array_equal(onnx.num_tokens, torch.num_tokens)


@pytest.mark.parametrize(
    ("text", "message"),
    [("\u200b\u200b", "has no tokens"), ("x" * (2 << 20), "over the limit")],
    ids=["invisible", "too-large"],
)
def test_bad_text_is_a_typed_error_and_the_merged_step_keeps_serving(
    merged: TritonHFClient, server: TritonServer, text: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        merged.encode(["a fine sentence", text], model="minilm_merged")

    assert merged.embed(["still serving"], model="minilm_merged").shape == (1, 384)
    counted = 'tritonhf_invalid_inputs_total{model="minilm_merged"'
    deadline = time.monotonic() + 10  # the step records after it has responded
    while True:
        with urllib.request.urlopen(server.config.metrics_url, timeout=10) as response:  # noqa: S310
            metrics = response.read().decode()
        if counted in metrics or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counted in metrics


def test_the_served_merged_embedder_passes_the_acceptance_gate(
    merged: TritonHFClient, server: TritonServer
) -> None:
    report = run_acceptance(
        AcceptanceOptions(reference="default", model="minilm_merged", url=server.config.grpc_url)
    )
    assert report.passed, report.table()


def test_deploy_reloads_a_merged_export_which_has_only_the_model_step(
    merged: TritonHFClient, repo: Path
) -> None:
    step = repo / "tiny_onnx_merged_model"
    shutil.copytree(step / "1", step / "2")
    before = merged.embed(TEXTS[:4], model="tiny_onnx_merged")

    states = deploy_pipeline(merged, model="tiny_onnx_merged")

    ready = {s.name: s.version for s in states if s.ready}
    assert ready == {
        "tiny_onnx_merged": "1",
        "tiny_onnx_merged_model": "2",
        "tiny_onnx_merged_feedback": "1",
    }
    np.testing.assert_allclose(merged.embed(TEXTS[:4], model="tiny_onnx_merged"), before)
