"""Property-based hostile input against the real server: it never crashes and never answers
with malformed output; every refusal is a clear, typed error."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import series_total
from tritonhf.client import InvalidInputError, TritonHFClient
from tritonhf.export.pipeline import ExportResult
from tritonhf.server.launcher import TritonServer

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Arbitrary Unicode, control characters and surrogates included.
TEXTS = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)


@pytest.fixture(scope="module")
def tokenizer(exported: ExportResult) -> Any:
    from tokenizers import Tokenizer

    folder = exported.folders[0]
    loaded = Tokenizer.from_file(str(folder / "1" / "tokenizer.json"))
    loaded.no_padding()
    loaded.enable_truncation(exported.spec.max_length)
    return loaded


def expected_valid(text: str, tokenizer: Any) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not all(tokenizer.encode(text).special_tokens_mask)


def raw_infer(client: TritonHFClient, rows: np.ndarray) -> Any:
    module = client._module()
    tensor = module.InferInput("TEXT", list(rows.shape), "BYTES")
    tensor.set_data_from_numpy(rows)
    return client._call("minilm", "infer", "minilm", [tensor])


def check_well_formed(result: Any, count: int, max_length: int) -> None:
    embedding, tokens = result.as_numpy("EMBEDDING"), result.as_numpy("NUM_TOKENS")
    assert embedding.shape == (count, 384)
    assert embedding.dtype == np.float32
    assert np.isfinite(embedding).all()
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-4)
    assert tokens.shape == (count, 1)
    assert ((tokens >= 3) & (tokens <= max_length)).all()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_arbitrary_unicode_batches_give_embeddings_or_a_typed_error(
    server: TritonServer, exported: ExportResult, tokenizer: Any, protocol: str
) -> None:
    url = server.config.grpc_url if protocol == "grpc" else server.config.http_url
    client = TritonHFClient(url, protocol=protocol)

    @SETTINGS
    @given(st.lists(TEXTS, min_size=1, max_size=6))
    def check(texts: list[str]) -> None:
        rows = np.array(
            [[t.encode("utf-8", "surrogatepass")] for t in texts], dtype=object
        ).reshape(-1, 1)
        if all(expected_valid(t, tokenizer) for t in texts):
            check_well_formed(raw_infer(client, rows), len(texts), exported.spec.max_length)
        else:
            with pytest.raises(InvalidInputError, match=r"TEXT\[\d+\]"):
                raw_infer(client, rows)

    try:
        check()
        assert client.health().ready
    finally:
        client.close()


def test_text_over_the_byte_limit_is_refused_naming_the_limit(server: TritonServer) -> None:
    with TritonHFClient(server.config.grpc_url) as client:
        with pytest.raises(InvalidInputError, match=r"over the limit of 1,048,576 bytes"):
            client.embed(["ok", "x" * (1 << 20 + 1)])
        assert client.embed(["é" * 100_000]).shape == (1, 384)  # 200,000 bytes: allowed


def test_a_degenerate_megabyte_text_is_read_only_to_the_read_limit(server: TritonServer) -> None:
    # One huge word tokenizes slowly (~0.7 s a MiB): the step reads 32,768 characters of it.
    with TritonHFClient(server.config.grpc_url) as client:
        result = client.encode(["a" * (1 << 20), "word " * 200_000, "fine"])
        assert result.truncated.tolist() == [True, True, False]
        assert result.num_tokens.tolist() == [3, 256, 3]
        with pytest.raises(InvalidInputError, match=r"TEXT\[0\] has no tokens in the 32,768"):
            client.embed(["\u200b" * 100_000 + " hello"])  # zero-width spaces, then a word


def test_an_empty_batch_sent_raw_is_refused_cleanly(server: TritonServer) -> None:
    with TritonHFClient(server.config.grpc_url) as client:
        with pytest.raises(InvalidInputError):
            raw_infer(client, np.empty((0, 1), dtype=object))
        assert client.health().ready


def post(server: TritonServer, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://{server.config.http_url}/v2/models/minilm/infer", data=body, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(
    shape=st.lists(st.integers(min_value=-2, max_value=3), min_size=0, max_size=3),
    datatype=st.sampled_from(["BYTES", "INT32", "FP32", "BOOL", "FP16", "NOPE"]),
    values=JSON_VALUES,
)
def test_raw_http_json_with_arbitrary_shapes_and_dtypes_never_breaks_the_server(
    server: TritonServer, shape: list[int], datatype: str, values: Any
) -> None:
    body = {"inputs": [{"name": "TEXT", "shape": shape, "datatype": datatype, "data": values}]}
    status, payload = post(server, json.dumps(body).encode())
    assert status in (200, 400), payload  # never a server error: the request is the client's
    if status == 200:
        assert {o["name"] for o in payload["outputs"]} == {"EMBEDDING", "NUM_TOKENS"}
    else:
        assert payload.get("error")
    health = urllib.request.urlopen(f"http://{server.config.http_url}/v2/health/ready", timeout=10)
    assert health.status == 200


def post_tokens(server: TritonServer, ids: list[list[int]]) -> tuple[int, dict[str, Any]]:
    """Token tensors sent straight to the model step, past the tokenizer."""
    shape = [len(ids), len(ids[0])]
    body = {
        "inputs": [
            {"name": "input_ids", "shape": shape, "datatype": "INT64", "data": ids},
            {
                "name": "attention_mask",
                "shape": shape,
                "datatype": "INT64",
                "data": [1] * len(ids[0]),
            },
        ]
    }
    request = urllib.request.Request(
        f"http://{server.config.http_url}/v2/models/minilm_model/infer",
        data=json.dumps(body).encode(),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


def invalid_count(server: TritonServer, reason: str) -> float:
    return series_total(
        server, f'tritonhf_invalid_inputs_total{{model="minilm",reason="{reason}"}}'
    )


@pytest.mark.parametrize(
    ("ids", "reason", "message"),
    [
        ([[101, 30522, 102]], "bad_token_id", r"must lie in \[0, 30522\)"),
        ([[101, -3, 102]], "bad_token_id", "must lie in"),
        ([[101] + [1000] * 300 + [102]], "bad_shape", "more than the pipeline's max_length 256"),
    ],
    ids=["past-the-vocabulary", "negative", "too-long"],
)
def test_token_tensors_the_model_cannot_run_are_refused_and_counted(
    server: TritonServer, ids: list[list[int]], reason: str, message: str
) -> None:
    before = invalid_count(server, reason)

    status, payload = post_tokens(server, ids)

    assert status == 400, payload
    assert re.search(message, payload["error"]), payload["error"]
    assert post_tokens(server, [[101, 7592, 102]])[0] == 200  # the step still serves
    deadline = time.monotonic() + 10  # the step records after it has responded
    while invalid_count(server, reason) <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert invalid_count(server, reason) == before + 1
