"""sentence-transformers models with other heads serve what SentenceTransformer.encode returns.

Tiny models are assembled with sentence-transformers itself (a random 2-layer BERT, then
Pooling, Dense and Normalize modules as its own classes save them), exported beside the
session's models and loaded into its server; their served embeddings are compared with
``SentenceTransformer(folder).encode`` on the same texts, over gRPC and HTTP.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.loaded import unload_pipelines
from tests.integration.models import tiny_model
from tritonhf import data
from tritonhf.client import TritonHFClient
from tritonhf.export.pipeline import ExportOptions, export_model
from tritonhf.server.launcher import TritonServer
from tritonhf.spec import Runtime

TEXTS = [
    *data.sentences()[:24],
    "ok",
    " ".join(["A long text that the tokenizer truncates at the model's limit."] * 40),
]


def st_model(folder: Path, base: Path, *, pooling: str | list[str], dense: list[tuple[int, str]],
             normalize: bool) -> Path:  # fmt: skip
    """Save a SentenceTransformer: ``base``, Pooling, Dense (out size, activation)s, Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as st

    torch.manual_seed(1)
    transformer = st.Transformer(str(base))
    width = transformer.get_embedding_dimension()
    pooled = st.Pooling(width, pooling_mode=pooling)
    modules: list[torch.nn.Module] = [transformer, pooled]
    size = pooled.get_embedding_dimension()
    for out, activation in dense:
        modules.append(st.Dense(size, out, activation_function=getattr(torch.nn, activation)()))
        size = out
    if normalize:
        modules.append(st.Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder


# name -> (pooling, dense layers, normalize, runtime)
HEADS: dict[str, tuple[str | list[str], list[tuple[int, str]], bool, Runtime]] = {
    "st_dense_tanh": ("mean", [(16, "Tanh")], False, Runtime.PYTHON_ONNX),
    "st_concat_norm": (["cls", "max"], [(24, "Identity"), (12, "GELU")], True, Runtime.PYTHON_ONNX),
    "st_last_weighted": (["lasttoken", "weightedmean", "mean_sqrt_len_tokens"], [], False,
                         Runtime.PYTHON_ONNX),
    "st_dense_torch": ("mean", [(16, "Tanh")], False, Runtime.PYTHON_TORCH),
}  # fmt: skip


@pytest.fixture(scope="module")
def heads(
    server: TritonServer, repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, np.ndarray]]:
    """Export and load each model of `HEADS`; yield sentence-transformers' embeddings of TEXTS."""
    from sentence_transformers import SentenceTransformer

    base = tiny_model(tmp_path_factory.mktemp("st-base"))
    expected = {}
    with TritonHFClient(server.config.grpc_url, timeout_s=120) as client:
        try:
            for name, (pooling, dense, normalize, runtime) in HEADS.items():
                folder = st_model(tmp_path_factory.mktemp(name) / "model", base, pooling=pooling,
                                  dense=dense, normalize=normalize)  # fmt: skip
                export_model(
                    ExportOptions(model=str(folder), name=name, repo=repo, runtime=runtime)
                )
                client.load_model(name)
                reference = SentenceTransformer(str(folder), device="cpu")
                expected[name] = np.asarray(reference.encode(TEXTS, batch_size=8))
            yield expected
        finally:
            unload_pipelines(client, server, repo, HEADS)


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_served_embeddings_equal_sentence_transformers_encode(
    heads: dict[str, np.ndarray], server: TritonServer, name: str, protocol: str
) -> None:
    url = server.config.grpc_url if protocol == "grpc" else server.config.http_url
    with TritonHFClient(url, protocol=protocol, timeout_s=60) as client:
        served = client.embed(TEXTS, model=name)

    expected = heads[name]
    assert served.shape == expected.shape
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)


def test_the_manifest_and_config_describe_the_head(
    heads: dict[str, np.ndarray], repo: Path
) -> None:
    manifest = json.loads((repo / "st_concat_norm" / "tritonhf.json").read_text(encoding="utf-8"))

    assert manifest["head"] == {
        "pooling": ["cls", "max"],
        "steps": [
            {"dense": {"in_features": 64, "out_features": 24, "bias": True,
                       "activation": "torch.nn.modules.linear.Identity"}},
            {"dense": {"in_features": 24, "out_features": 12, "bias": True,
                       "activation": "torch.nn.modules.activation.GELU"}},
            {"normalize": True},
        ],
    }  # fmt: skip
    assert manifest["spec"]["embedding_size"] == 12
    assert manifest["spec"]["normalized"] is True
    assert not json.loads((repo / "st_dense_tanh" / "tritonhf.json").read_text())["spec"][
        "normalized"
    ]


def anomalies(server: TritonServer, model: str) -> tuple[float, float]:
    """(embeddings recorded, rows counted as norm anomalies) for ``model``."""
    with urllib.request.urlopen(server.config.metrics_url, timeout=5) as response:  # noqa: S310
        text = response.read().decode("utf-8")
    recorded = off = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            if sample.name == "tritonhf_embedding_norm_count":
                recorded += sample.value
            elif sample.name == "tritonhf_embedding_anomalies_total":
                off += sample.value if sample.labels.get("kind") == "norm" else 0
    return recorded, off


def test_norms_off_one_are_anomalies_only_for_models_that_normalise(
    heads: dict[str, np.ndarray], server: TritonServer
) -> None:
    with TritonHFClient(server.config.grpc_url, timeout_s=60) as client:
        for name in ("st_dense_tanh", "st_concat_norm"):
            for text in TEXTS[:5]:
                client.embed([text], model=name)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
        anomalies(server, name)[0] < 5 for name in ("st_dense_tanh", "st_concat_norm")
    ):
        time.sleep(0.2)

    norms = np.linalg.norm(heads["st_dense_tanh"], axis=1)
    assert np.abs(norms - 1).min() > 1e-2  # really not unit length
    assert anomalies(server, "st_dense_tanh")[0] >= 5
    assert anomalies(server, "st_dense_tanh")[1] == 0
    assert anomalies(server, "st_concat_norm") >= (5, 0)
    assert anomalies(server, "st_concat_norm")[1] == 0
