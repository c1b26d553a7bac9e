"""Hostile and malformed requests get clear, typed errors, and the server keeps serving."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import CLASSIFIER
from tests.integration.models import SENTIMENT_LABELS
from tritonhf.client import InvalidInputError, ModelNotFoundError, TritonHFClient
from tritonhf.errors import ClientError
from tritonhf.server.launcher import TritonServer

BYTES_REFUSAL = "class result not available for output due to unsupported type 'BYTES'"


@pytest.fixture(autouse=True)
def server_still_serves_afterwards(client: TritonHFClient) -> Iterator[None]:
    yield
    health = client.health()
    assert health.live
    assert health.ready
    assert health.model_ready
    assert client.embed(["still serving"]).shape == (1, 384)


def raw_infer(
    client: TritonHFClient, rows: list[Any], *, dtype: str = "BYTES", model: str = "minilm"
) -> Any:
    """Send a TEXT tensor exactly as given, bypassing the client's own validation."""
    module = client._module()
    array = np.array(rows, dtype=object if dtype == "BYTES" else dtype.lower())
    tensor = module.InferInput("TEXT", list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return client._call(model, "infer", model, [tensor])


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ([[b""]], "has no tokens"),
        ([[b"   \t\n "]], "has no tokens"),
        ([["\u200b\u200b".encode()]], "has no tokens"),
        ([[b"fine"], [b"\xff\xfe broken"]], "TEXT[1] is not valid UTF-8"),
        ([[b"\xc3"]], "not valid UTF-8"),
    ],
    ids=["empty", "whitespace", "zero-width", "invalid-utf8-row-1", "truncated-utf8"],
)
def test_bad_text_is_rejected_with_a_message_naming_the_row(
    client: TritonHFClient, rows: list[list[bytes]], fragment: str
) -> None:
    with pytest.raises(InvalidInputError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        raw_infer(client, rows)


def test_a_refusal_names_the_request_it_refuses(client: TritonHFClient) -> None:
    module = client._module()
    tensor = module.InferInput("TEXT", [2, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"fine"], [b"\xff"]], dtype=object))

    refused = r"\[request id: bad-text-7\] TEXT\[1\] is not valid UTF-8"
    with pytest.raises(InvalidInputError, match=refused):
        client._call("minilm", "infer", "minilm", [tensor], request_id="bad-text-7")


def test_the_client_rejects_empty_text_before_sending(client: TritonHFClient) -> None:
    with pytest.raises(InvalidInputError, match=r"texts\[1\] is empty"):
        client.embed(["ok", "  "])


def test_a_batch_over_max_batch_size_is_refused_by_the_server(client: TritonHFClient) -> None:
    with pytest.raises(InvalidInputError, match="batch-size must be <= 64"):
        raw_infer(client, [[b"a"]] * 65)


def test_a_wrong_dtype_is_refused(client: TritonHFClient) -> None:
    with pytest.raises(InvalidInputError, match=r"(?i)data-?type"):
        raw_infer(client, [[1]], dtype="INT32")


def test_a_wrong_shape_is_refused(client: TritonHFClient) -> None:
    with pytest.raises(InvalidInputError, match=r"(?i)shape"):
        raw_infer(client, [[b"a", b"b"]])


def test_an_unknown_model_is_a_typed_not_found_error(client: TritonHFClient) -> None:
    with pytest.raises(ModelNotFoundError, match="no_such_model"):
        client.embed(["hello"], model="no_such_model")


def test_health_of_an_unknown_model_says_the_server_has_none(client: TritonHFClient) -> None:
    health = client.health("no_such_model")

    assert (health.live, health.ready, health.model_ready) == (True, True, False)
    assert "has no model 'no_such_model'" in health.problem


def test_one_bad_request_does_not_fail_its_neighbours_in_the_batch(
    client: TritonHFClient,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def send(index: int) -> str:
        try:
            raw_infer(client, [[b"\xff"]] if index % 4 == 0 else [[f"text {index}".encode()]])
        except ClientError as exc:
            return type(exc).__name__
        return "ok"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(send, range(32)))
    assert outcomes.count("InvalidInputError") == 8
    assert outcomes.count("ok") == 24


def post_json(
    server: TritonServer, path: str, body: bytes, *, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://{server.config.http_url}{path}", data=body, method="POST"
    )
    request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.parametrize("protocol", ["http"], indirect=True)
def test_raw_http_json_requests_work_and_malformed_ones_get_an_error(server: TritonServer) -> None:
    good = {
        "inputs": [{"name": "TEXT", "shape": [2, 1], "datatype": "BYTES", "data": ["hi", "yo"]}]
    }
    status, body = post_json(server, "/v2/models/minilm/infer", json.dumps(good).encode())
    assert status == 200
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["EMBEDDING"]["shape"] == [2, 384]
    assert outputs["NUM_TOKENS"]["data"] == [3, 3]

    for broken in (
        b"{not json",
        b'{"inputs": [',
        json.dumps({"inputs": []}).encode(),
        json.dumps({"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES"}]}).encode(),
        json.dumps(
            {"inputs": [{"name": "NOPE", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]}
        ).encode(),
    ):
        status, body = post_json(server, "/v2/models/minilm/infer", broken)
        assert status == 400, body
        assert body.get("error")


TEXT_INPUT = {"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["hi"]}


@pytest.mark.parametrize("protocol", ["http"], indirect=True)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "Unable to parse 'inputs'"),
        (b"null", "Unable to parse 'inputs'"),
        (b'{"inputs": 3}', "Unable to parse 'inputs'"),
        (b'{"inputs": NaN}', "Unable to parse 'inputs'"),
        ({"inputs": [{**TEXT_INPUT, "shape": ["1", "1"]}]}, "Unable to parse 'shape'"),
        ({"inputs": [{**TEXT_INPUT, "data": [1]}]}, "JSON bytes array"),
        ({"id": 3, "inputs": [TEXT_INPUT]}, "Unable to parse 'id'"),
        ({"parameters": 3, "inputs": [TEXT_INPUT]}, "request params"),
        ({"outputs": 3, "inputs": [TEXT_INPUT]}, "Unable to parse 'outputs'"),
    ],
)
def test_a_request_of_the_wrong_json_shape_is_the_clients_error_not_the_servers(
    server: TritonServer, body: bytes | dict[str, Any], message: str
) -> None:
    """Triton 2.51 answers these with 500 (its JSON reader's errors are INTERNAL); the guard
    makes them 400, with Triton's message."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = post_json(server, "/v2/models/minilm/infer", raw)
    assert status == 400, answer
    assert message in answer["error"]


@pytest.mark.parametrize("protocol", ["http"], indirect=True)
@pytest.mark.parametrize("path", ["/v2/repository/index", "/v2/logging", "/v2/trace/setting"])
def test_a_body_that_is_not_json_is_a_400_at_every_endpoint(
    server: TritonServer, path: str
) -> None:
    status, answer = post_json(server, path, b"{not json")
    assert status == 400, answer
    assert "failed to parse the request JSON buffer" in answer["error"]


@pytest.mark.parametrize("step", [CLASSIFIER, f"{CLASSIFIER}_model"])
def test_the_classification_extension_on_a_text_output_is_refused_not_a_crash(
    server: TritonServer, client: TritonHFClient, step: str
) -> None:
    """Triton 2.51 divides by the byte size of BYTES (0) here and dies of SIGFPE; the guard
    tritonhf preloads (tritonhf/server/request_guard/) makes it a refusal."""
    module = client._module()
    if step == CLASSIFIER:
        tensor = module.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"great service"]], dtype=object))
        inputs = [tensor]
    else:
        inputs = []
        for name, row in (("input_ids", [1, 2, 3]), ("attention_mask", [1, 1, 1])):
            tensor = module.InferInput(name, [1, 3], "INT64")
            tensor.set_data_from_numpy(np.array([row], dtype=np.int64))
            inputs.append(tensor)
    asked = module.InferRequestedOutput("LABEL", class_count=1)
    with pytest.raises(InvalidInputError, match="unsupported type 'BYTES'"):
        client._call(step, "infer", step, inputs, outputs=[asked])


@pytest.mark.parametrize("protocol", ["http"], indirect=True)
def test_the_classification_extension_answers_on_probabilities(server: TritonServer) -> None:
    text = {"name": "TEXT", "shape": [2, 1], "datatype": "BYTES", "data": ["good", "bad"]}
    asked = [
        {"name": "PROBABILITIES", "parameters": {"classification": 2}},
        {"name": "LABEL", "parameters": {"classification": 1}},
    ]
    body = json.dumps({"inputs": [text], "outputs": asked}).encode()
    status, answer = post_json(server, f"/v2/models/{CLASSIFIER}/infer", body)
    assert (status, answer) == (400, {"error": BYTES_REFUSAL})

    status, answer = post_json(
        server,
        f"/v2/models/{CLASSIFIER}/infer",
        json.dumps({"inputs": [text], "outputs": asked[:1]}).encode(),
    )
    assert status == 200
    (probabilities,) = answer["outputs"]
    assert probabilities["shape"] == [2, 2]
    for entry in probabilities["data"]:  # "<score>:<class index>", best first per text
        score, index = entry.split(":")
        assert 0 <= float(score) <= 1
        assert int(index) in range(len(SENTIMENT_LABELS))


@pytest.mark.parametrize("protocol", ["http"], indirect=True)
def test_a_large_form_encoded_body_is_read_as_the_request_not_a_crash(server: TritonServer) -> None:
    """Triton 2.51's HTTP frontend (libevhtp) parsed a form-encoded body as query arguments on
    its thread's stack, and from ~4.2 MB that overflowed (SIGSEGV, on any path: a probe's
    finding). curl -d and Python's urllib send that type by default. The guard tritonhf
    preloads (tritonhf/server/request_guard/) keeps evhtp from reading the body as a form."""
    form = "application/x-www-form-urlencoded"
    status, answer = post_json(server, "/v2/no-such-path", b"a=b&" * 1_250_000, content_type=form)
    assert (status, answer) == (404, {"error": "Not Found"})

    texts = ["word " * 14_000] * 64  # 4.5 MB of JSON; each text under max_text_bytes
    rows = {"name": "TEXT", "shape": [64, 1], "datatype": "BYTES", "data": texts}
    body = json.dumps({"inputs": [rows]}).encode()
    status, answer = post_json(server, "/v2/models/minilm/infer", body, content_type=form)
    assert status == 200
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["EMBEDDING"]["shape"] == [64, 384]


@pytest.mark.parametrize("protocol", ["http"], indirect=True)
def test_a_deeply_nested_json_body_is_refused_not_a_crash(server: TritonServer) -> None:
    """Triton 2.51's HTTP frontend parses JSON recursively, then walks "data" recursively:
    "data" nested 60,000 deep (120 KB) or "inputs" 250,000 deep overflowed its thread's stack
    (SIGSEGV: a probe's finding). The guard refuses such a body before the parser sees it;
    brackets and quotes inside strings are text, not nesting."""
    nested_data = "[" * 60_000 + '"hi"' + "]" * 60_000
    deep_bodies = [
        f'{{"inputs":[{{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":{nested_data}}}]}}',
        '{"inputs":' + "[" * 250_000 + "]" * 250_000 + "}",
        '{"inputs":' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}",
    ]
    for body in deep_bodies:
        status, answer = post_json(server, "/v2/models/minilm/infer", body.encode())
        assert status == 400
        assert "the request's JSON nests deeper than 1024 levels" in answer["error"]
    assert server.is_ready()

    texts = ['[[[{{ "a quoted \\" [[[ {{ in text' * 2_000, "}}]] plain"]  # unbalanced, in strings
    rows = {"name": "TEXT", "shape": [2, 1], "datatype": "BYTES", "data": texts}
    status, answer = post_json(
        server, "/v2/models/minilm/infer", json.dumps({"inputs": [rows]}).encode()
    )
    assert status == 200
    assert {o["name"]: o for o in answer["outputs"]}["EMBEDDING"]["shape"] == [2, 384]


@pytest.mark.parametrize("protocol", ["http"], indirect=True)
def test_an_object_of_thousands_of_members_is_refused_before_triton_searches_it(
    server: TritonServer,
) -> None:
    """Triton 2.51 looks each request parameter up with a linear search: 100,000 top-level
    "parameters" (1.7 MB) held an HTTP thread 27.7 s, and a dozen such requests held the health
    endpoint 14.6 s (a probe's finding). The guard refuses an object of more than 1,024."""
    text = {"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["hi"]}
    many = {f"p{i}": i for i in range(100_000)}
    for body in (
        {"parameters": many, "inputs": [text]},
        {"inputs": [{**text, "parameters": many}]},
    ):
        status, answer = post_json(server, "/v2/models/minilm/infer", json.dumps(body).encode())
        assert status == 400, answer
        assert "the request's JSON has an object of more than 1024 members" in answer["error"]
    few = {f"p{i}": i for i in range(1_000)}
    status, answer = post_json(
        server,
        "/v2/models/minilm/infer",
        json.dumps({"parameters": few, "inputs": [text]}).encode(),
    )
    assert status == 200, answer


@pytest.mark.parametrize("protocol", ["http"], indirect=True)
def test_an_inference_header_length_that_is_not_a_number_is_refused_not_misread(
    server: TritonServer,
) -> None:
    """Triton 2.51 read "abc" or an empty value as 0, a raw binary request: the client's JSON
    header was embedded as text, HTTP 200 (a probe's finding); 2**32 + N wrapped to N."""
    text = b"hello world"
    data = len(text).to_bytes(4, "little") + text
    parameters = {"binary_data_size": len(data)}
    inputs = [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "parameters": parameters}]
    header = json.dumps({"inputs": inputs, "outputs": [{"name": "NUM_TOKENS"}]}).encode()

    def post(length: str) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://{server.config.http_url}/v2/models/minilm/infer",
            data=header + data,
            method="POST",
            headers={"Inference-Header-Content-Length": length},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    status, answer = post(str(len(header)))
    assert status == 200, answer
    assert answer["outputs"][0]["data"] == [4]  # [CLS] hello world [SEP]
    for length in ("abc", "12abc", "0x10", str(2**32 + len(header))):
        status, answer = post(length)
        assert status == 400, (length, answer)
        assert (
            f"inference header size should be in range (0, {len(header + data)}), got: {length}"
            in answer["error"]
        )


def resident_mb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
        // 1024
    )


@pytest.mark.parametrize("protocol", ["http"], indirect=True)
def test_a_refused_compressed_request_leaves_no_memory_behind(server: TritonServer) -> None:
    """Triton 2.51 freed a gzip body's inflated copy only once the request reached the core:
    every refusal before that kept it for good (a probe's 51 KB body, 50 MB inflated, left
    48 MB per request). The guard frees what no request took."""
    spaces = b" " * 20_000_000  # JSON whitespace: 20 MB inflated, ~20 KB sent
    text = {"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["hello world"]}
    refused = [
        (gzip.compress(body + spaces), headers)
        for body, headers in (
            (b"{not json", {}),
            (json.dumps({"inputs": 3}).encode(), {}),
            (json.dumps({"inputs": [text]}).encode(), {"Inference-Header-Content-Length": "abc"}),
        )
    ]
    assert server.pid is not None
    before = resident_mb(server.pid)
    for _ in range(4):
        for body, headers in refused:
            request = urllib.request.Request(
                f"http://{server.config.http_url}/v2/models/minilm/infer",
                data=body,
                method="POST",
                headers={"Content-Encoding": "gzip", **headers},
            )
            with pytest.raises(urllib.error.HTTPError) as refusal:
                urllib.request.urlopen(request, timeout=60)  # noqa: S310
            assert refusal.value.code == 400
    grown = resident_mb(server.pid) - before
    assert grown < 80, f"Triton grew {grown} MB over 12 refused 20 MB bodies (kept: 240 MB)"

    status, answer = post_json(
        server, "/v2/models/minilm/infer", json.dumps({"inputs": [text]}).encode()
    )
    assert status == 200, answer


@pytest.mark.parametrize(
    ("dimension", "why"),
    [(2**61 + 4, "more elements than bytes hold"), (2**63 + 4, "a negative dimension")],
    ids=["wraps-to-32-bytes", "negative"],
)
def test_a_shape_that_overflows_its_bytes_is_refused_not_a_dead_stub(
    server: TritonServer, client: TritonHFClient, dimension: int, why: str
) -> None:
    """Triton 2.51 multiplies the dimensions without an overflow check, so [1, 2**61 + 4]
    INT64 tensors with 32 bytes each passed, and the model step's stub aborted building them
    (a probe's finding); the guard refuses them (tritonhf/server/request_guard/)."""
    if client.protocol.value == "grpc":
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        request = service_pb2.ModelInferRequest(model_name="minilm_model")
        for name in ("input_ids", "attention_mask"):
            tensor = request.inputs.add(name=name, datatype="INT64")
            tensor.shape.extend([1, dimension - 2**64 if dimension >= 2**63 else dimension])
            request.raw_input_contents.append(np.ones(4, dtype="<i8").tobytes())
        channel = grpc.insecure_channel(server.config.grpc_url)
        with pytest.raises(grpc.RpcError, match=f"does not fit its 32 bytes of data \\({why}\\)"):
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        channel.close()
        return
    header = {
        "inputs": [
            {
                "name": name,
                "shape": [1, dimension],
                "datatype": "INT64",
                "parameters": {"binary_data_size": 32},
            }
            for name in ("input_ids", "attention_mask")
        ]
    }
    head = json.dumps(header).encode()
    request = urllib.request.Request(
        f"http://{server.config.http_url}/v2/models/minilm_model/infer",
        data=head + np.ones(8, dtype="<i8").tobytes(),
        method="POST",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310
    assert refused.value.code == 400
    assert f"does not fit its 32 bytes of data ({why})" in refused.value.read().decode()
