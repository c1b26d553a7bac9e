from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from tritonhf.client import (
    ClientError,
    DeployError,
    DeployPendingError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ModelState,
    PermissionDeniedError,
    Protocol,
    RetryPolicy,
    ServerUnavailableError,
    TritonHFClient,
)
from tritonhf.client.client import RETRYABLE
from tritonhf.client.connection import server_address
from tritonhf.client.deploy import _roll_back, deploy_pipeline
from tritonhf.client.texts import encode_texts
from tritonhf.errors import ConfigError
from tritonhf.server import admin
from tritonhf.spec import EMBEDDING

PROTOCOLS = ["grpc", "http"]


@pytest.fixture(params=PROTOCOLS)
def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def unreachable(closed_port: int, wire: str) -> Iterator[TritonHFClient]:
    """A client pointed at a port where no server listens, for each protocol."""
    with TritonHFClient(f"127.0.0.1:{closed_port}", protocol=wire, timeout_s=2) as client:
        yield client


# encode_texts -------------------------------------------------------------------------------


def test_encode_texts_packs_utf8_bytes_as_an_n_by_1_object_array() -> None:
    packed = encode_texts(["hello", "café", "日本"])

    assert packed.shape == (3, 1)
    assert packed.dtype == np.dtype(object)
    assert packed[:, 0].tolist() == [b"hello", "café".encode(), "日本".encode()]


def test_encode_texts_accepts_any_sequence_and_an_empty_one() -> None:
    assert encode_texts(("a", "b")).shape == (2, 1)
    assert encode_texts([]).shape == (0, 1)


def test_encode_texts_reads_a_generator_once() -> None:
    assert encode_texts(text for text in ("a", "b", "c")).shape == (3, 1)


@pytest.mark.parametrize(
    ("texts", "type_name"),
    [(None, "NoneType"), (5, "int"), ({"a": 1}, "a dict"), ({"a", "b"}, "a set")],
)
def test_texts_that_are_not_iterable_are_invalid_input_naming_the_type(
    unreachable: TritonHFClient, texts: object, type_name: str
) -> None:
    for call in (unreachable.embed, unreachable.encode, unreachable.classify):
        with pytest.raises(InvalidInputError, match=f"not {type_name}"):
            call(texts)  # type: ignore[operator]


@pytest.mark.parametrize("top_k", [1.5, "2", True])
def test_a_top_k_that_is_not_an_int_is_invalid_input_before_any_request(
    unreachable: TritonHFClient, top_k: object
) -> None:
    with pytest.raises(InvalidInputError, match="top_k must be an int"):
        unreachable.classify(["a"], top_k=top_k)  # type: ignore[arg-type]


@pytest.mark.parametrize("top_k", [0, -1])
def test_a_top_k_below_one_is_invalid_input_before_any_request(
    unreachable: TritonHFClient, top_k: int
) -> None:
    with pytest.raises(InvalidInputError, match=r"top_k \(--top-k\) must be >= 1"):
        unreachable.classify(["a"], top_k=top_k)


@pytest.mark.parametrize("single", ["hello", b"hello"], ids=["str", "bytes"])
def test_encode_texts_rejects_a_bare_string(single: str) -> None:
    with pytest.raises(InvalidInputError, match="not one string"):
        encode_texts(single)


@pytest.mark.parametrize(
    ("item", "type_name"), [(b"bytes", "bytes"), (None, "NoneType"), (42, "int")]
)
def test_encode_texts_rejects_items_that_are_not_str_naming_the_index(
    item: object, type_name: str
) -> None:
    with pytest.raises(InvalidInputError, match=rf"texts\[1\] is {type_name}, expected str"):
        encode_texts(["ok", item])  # type: ignore[list-item]


@pytest.mark.parametrize("blank", ["", " ", "\t\n  "], ids=repr)
def test_encode_texts_rejects_empty_or_whitespace_texts_naming_the_index(blank: str) -> None:
    with pytest.raises(InvalidInputError, match=r"texts\[2\] is empty or whitespace only"):
        encode_texts(["a", "b", blank])


@pytest.mark.parametrize("text", ["\ud800", "ok \udfff ok"], ids=["lone-high", "lone-low"])
def test_encode_texts_rejects_lone_surrogates_naming_the_index(text: str) -> None:
    with pytest.raises(InvalidInputError, match=r"texts\[1\] cannot be encoded as UTF-8"):
        encode_texts(["fine", text])


def test_invalid_input_error_is_a_value_error_and_a_client_error() -> None:
    with pytest.raises(ValueError, match="texts"):
        encode_texts([""])
    assert issubclass(InvalidInputError, ClientError)


# construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "url"), [("grpc", "127.0.0.1:8001"), ("http", "127.0.0.1:8000")]
)
def test_protocols_default_to_tritons_local_ports(protocol: str, url: str) -> None:
    assert Protocol(protocol).default_url == url
    with TritonHFClient(protocol=protocol) as client:
        assert client.url == url
        assert client.protocol is Protocol(protocol)
        assert client.model == "minilm"


@pytest.mark.parametrize(
    ("given", "protocol", "url"),
    [
        ("http://127.0.0.1:8000/", "http", "127.0.0.1:8000"),
        ("https://triton.internal:443", "http", "triton.internal:443"),
        ("grpc://127.0.0.1:9001", "grpc", "127.0.0.1:9001"),
        ("localhost:9001", "grpc", "localhost:9001"),
    ],
)
def test_urls_are_used_without_their_scheme(given: str, protocol: str, url: str) -> None:
    with TritonHFClient(given, protocol=protocol) as client:
        assert client.url == url


@pytest.mark.parametrize(
    ("url", "protocol"),
    [
        ("127.0.0.1:99999", "grpc"),  # tritonclient would wrap it around to another port
        ("127.0.0.1:0", "http"),
        ("localhost", "grpc"),  # no port: tritonclient would try 443
        ("not a url", "http"),
        (":8001", "grpc"),
        ("127.0.0.1:80a", "http"),
        ("127.0.0.1:8001/base", "grpc"),  # a base path is HTTP's only
        ("", "grpc"),  # not the default: `--url ''` is a mistake, not a wish for 127.0.0.1
    ],
)
def test_a_url_that_is_not_host_and_port_is_a_config_error(url: str, protocol: str) -> None:
    with pytest.raises(ConfigError, match=r"is not host:port with a port in 1-65535"):
        TritonHFClient(url, protocol=protocol)


@pytest.mark.parametrize(
    ("url", "protocol"),
    [("[::1]:8001", "grpc"), ("triton:8000/base", "http"), ("grpc://triton.svc:8001", "grpc")],
)
def test_ipv6_hosts_and_http_base_paths_are_urls(url: str, protocol: str) -> None:
    assert server_address(url, Protocol(protocol)) == url.removeprefix("grpc://")


@pytest.mark.parametrize("protocol", ["websocket", "GRPC ", ""])
def test_an_unknown_protocol_is_a_config_error(protocol: str) -> None:
    with pytest.raises(ConfigError, match="protocol must be 'grpc' or 'http'"):
        TritonHFClient(protocol=protocol)


@pytest.mark.parametrize("timeout", [0, -1, -0.5, float("inf"), float("nan")])
def test_a_timeout_that_is_not_a_positive_finite_number_is_a_config_error(timeout: float) -> None:
    # gRPC would take inf and nan as a deadline already past: every request would time out.
    with pytest.raises(
        ConfigError, match=f"timeout_s \\(--timeout\\) must be a finite .* > 0, got {timeout}"
    ):
        TritonHFClient(timeout_s=timeout)


@pytest.mark.parametrize("timeout", [1e6 + 1, 1e12, 1e15])
def test_a_timeout_too_long_for_grpc_and_triton_is_a_config_error(timeout: float) -> None:
    with pytest.raises(
        ConfigError, match=r"timeout_s \(--timeout\) must be at most 1,000,000 seconds"
    ):
        TritonHFClient(timeout_s=timeout)


@pytest.mark.parametrize("timeout", ["5", None, True])
def test_a_timeout_that_is_not_a_number_is_a_config_error(timeout: object) -> None:
    with pytest.raises(ConfigError, match=r"timeout_s \(--timeout\) must be a number of seconds"):
        TritonHFClient(timeout_s=timeout)  # type: ignore[arg-type]


def test_model_state_is_ready_only_when_triton_says_ready() -> None:
    assert ModelState("minilm", "1", "READY").ready
    assert not ModelState("minilm", "1", "UNAVAILABLE", "load failed").ready


# no server -----------------------------------------------------------------------------------


def test_embed_without_a_server_raises_server_unavailable_quickly(
    unreachable: TritonHFClient,
) -> None:
    started = time.monotonic()

    with pytest.raises(ServerUnavailableError, match=r"cannot reach Triton at 127\.0\.0\.1:"):
        unreachable.embed(["x"])

    assert time.monotonic() - started < 5


def test_invalid_input_is_rejected_before_contacting_the_server(
    unreachable: TritonHFClient,
) -> None:
    with pytest.raises(InvalidInputError, match=r"texts\[0\]"):
        unreachable.embed(["   "])


def test_health_without_a_server_is_an_answer_not_an_error(
    unreachable: TritonHFClient,
) -> None:
    health = unreachable.health()

    assert (health.live, health.ready, health.model_ready) == (False, False, False)
    assert health.model == "minilm"
    assert health.url == unreachable.url


def test_health_reports_the_model_asked_for(unreachable: TritonHFClient) -> None:
    assert unreachable.health("bge").model == "bge"


@pytest.mark.parametrize("call", ["models", "is_model_ready", "model_config"])
def test_queries_without_a_server_raise_server_unavailable(
    unreachable: TritonHFClient, call: str
) -> None:
    with pytest.raises(ServerUnavailableError):
        getattr(unreachable, call)()


def test_http_requests_to_a_silent_server_time_out_after_timeout_s(silent_port: int) -> None:
    client = TritonHFClient(f"127.0.0.1:{silent_port}", protocol="http", timeout_s=0.3)
    started = time.monotonic()

    with pytest.raises(
        InferenceTimeoutError, match=r"timed out after 0\.3 s \(timeout_s; --timeout\)"
    ):
        client.is_model_ready()

    assert time.monotonic() - started < 3
    client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_health_of_a_silent_server_waits_one_timeout_not_one_per_check(
    silent_port: int, protocol: str
) -> None:
    client = TritonHFClient(
        f"127.0.0.1:{silent_port}", protocol=protocol, timeout_s=1.0, retry=RetryPolicy(attempts=1)
    )
    started = time.monotonic()
    health = client.health()
    waited = time.monotonic() - started
    client.close()

    assert (health.live, health.ready, health.model_ready) == (False, False, False)
    assert health.problem
    assert waited < 2.0, f"health() took {waited:.1f} s with a 1 s timeout (3 checks: 3 s)"


def test_grpc_requests_to_a_silent_server_time_out_after_timeout_s(silent_port: int) -> None:
    """A port that accepts and never speaks HTTP/2 (a stopped or hung Triton) gets the call's
    whole timeout, as over HTTP: gRPC gave up after 0.1 s ("timed out before receiving SETTINGS
    frame") whatever the timeout, so a health check of a server stalled for a second said "not
    live" (a probe's finding)."""
    client = TritonHFClient(
        f"127.0.0.1:{silent_port}", protocol="grpc", timeout_s=0.6, retry=RetryPolicy(attempts=1)
    )
    errors: list[ClientError] = []

    def embed() -> None:
        try:
            client.embed(["x"])
        except ClientError as exc:
            errors.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=embed, daemon=True)
    worker.start()
    worker.join(timeout=3)
    waited = time.monotonic() - started
    finished_in_time = not worker.is_alive()
    client.close()  # cancels a call still waiting, so the thread ends either way
    worker.join(timeout=5)

    assert finished_in_time, "embed() was still waiting 3 s after a 0.6 s timeout"
    assert [type(e) for e in errors] == [InferenceTimeoutError]
    assert "timed out after 0.6 s (timeout_s; --timeout)" in str(errors[0])
    assert waited >= 0.5


def test_retry_delays_double_up_to_the_cap_and_stop_after_the_attempts() -> None:
    from tritonhf.client import RetryPolicy

    policy = RetryPolicy(attempts=5, initial_backoff_s=0.2, max_backoff_s=0.5)

    assert list(policy.delays()) == [0.2, 0.4, 0.5, 0.5]
    assert list(RetryPolicy(attempts=1).delays()) == []


@pytest.mark.parametrize("bad", [{"attempts": 0}, {"initial_backoff_s": -1}, {"max_backoff_s": -1}])
def test_a_retry_policy_out_of_range_is_a_config_error(bad: dict[str, float]) -> None:
    from tritonhf.client import RetryPolicy
    from tritonhf.errors import ConfigError

    with pytest.raises(ConfigError, match="retry policy"):
        RetryPolicy(**bad)  # type: ignore[arg-type]


def test_retries_give_up_on_a_dead_server_after_the_configured_attempts() -> None:
    import socket
    import time

    from tritonhf.client import RetryPolicy, ServerUnavailableError, TritonHFClient

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = RetryPolicy(attempts=3, initial_backoff_s=0.1, max_backoff_s=0.1)
    client = TritonHFClient(f"127.0.0.1:{port}", protocol="http", retry=policy, timeout_s=2)
    started = time.perf_counter()
    with pytest.raises(ServerUnavailableError):
        client.embed(["x"])
    assert 0.2 <= time.perf_counter() - started < 5
    client.close()


# the admin key ------------------------------------------------------------------------------

KEY = "0123456789abcdef-admin"
RESTRICTED = {
    "grpc": InferenceServerException(
        "This protocol is restricted, expecting header 'triton-grpc-protocol-tritonhf-admin-key'",
        status="StatusCode.UNAVAILABLE",
    ),
    "http": InferenceServerException(
        "This API is restricted, expecting header 'tritonhf-admin-key'", status="403"
    ),
}
CONFIG = {"max_batch_size": 8, "output": [{"name": EMBEDDING, "dims": ["384"]}]}


class FakeTriton:
    """Stands in for tritonclient's client: records each call's headers, refuses as told."""

    def __init__(self, wire: str, refuse: frozenset[str] = frozenset()) -> None:
        self.wire = wire
        self.refuse = refuse
        self.calls: list[tuple[str, dict[str, str] | None]] = []

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((method, kwargs.get("headers")))
            if method in self.refuse:
                raise RESTRICTED[self.wire]
            return self._answer(method)

        return call

    def _answer(self, method: str) -> Any:
        grpc = self.wire == "grpc"
        if method == "get_model_repository_index":
            models = [{"name": "minilm", "version": "1", "state": "READY"}]
            return {"models": models} if grpc else models
        if method == "get_model_config":
            return {"config": CONFIG} if grpc else CONFIG
        if method == "get_inference_statistics":
            return {"model_stats": [{"name": "minilm", "version": "1"}]}
        if method == "infer":
            return SimpleNamespace(as_numpy=lambda name: np.zeros((1, 384), np.float32))
        return True

    def headers_of(self, method: str) -> list[dict[str, str] | None]:
        return [headers for name, headers in self.calls if name == method]


def fake_client(
    monkeypatch: pytest.MonkeyPatch, wire: str, *, refuse: frozenset[str] = frozenset(), **kw: Any
) -> tuple[TritonHFClient, FakeTriton]:
    fake = FakeTriton(wire, refuse)
    for module in ("tritonclient.grpc", "tritonclient.http"):
        monkeypatch.setattr(f"{module}.InferenceServerClient", lambda *a, **k: fake)
    return TritonHFClient(protocol=wire, retry=RetryPolicy(attempts=1), **kw), fake


def test_the_admin_key_goes_with_the_index_load_and_unload_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, wire: str
) -> None:
    client, fake = fake_client(monkeypatch, wire, admin_key=KEY)
    expected = admin.grpc_headers(KEY) if wire == "grpc" else admin.http_headers(KEY)

    client.models()
    client.load_model("minilm_model")
    client.unload_model("minilm_model")
    client.embed(["a sentence"])
    client.health()
    client.loaded_models()

    restricted = {"get_model_repository_index", "load_model", "unload_model"}
    assert {method for method, _ in fake.calls} > restricted | {"infer", "get_model_config"}
    for method, headers in fake.calls:
        assert headers == (expected if method in restricted else None), method


def test_without_a_key_no_call_carries_the_header(
    monkeypatch: pytest.MonkeyPatch, wire: str
) -> None:
    monkeypatch.delenv(admin.ENV_VAR, raising=False)
    client, fake = fake_client(monkeypatch, wire)

    client.models()
    client.load_model("minilm_model")
    client.unload_model("minilm_model")

    assert [headers for _, headers in fake.calls] == [None] * len(fake.calls)


def test_the_key_defaults_to_the_environment_and_an_empty_one_sends_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(admin.ENV_VAR, KEY)
    from_env, fake = fake_client(monkeypatch, "grpc")
    without, bare = fake_client(monkeypatch, "grpc", admin_key="")

    from_env.models()
    without.models()

    assert fake.headers_of("get_model_repository_index")[0] == admin.grpc_headers(KEY)
    assert bare.headers_of("get_model_repository_index")[-1] is None


def test_an_unusable_admin_key_is_a_config_error_before_any_request() -> None:
    with pytest.raises(ConfigError, match="TRITONHF_ADMIN_KEY must be at least 16"):
        TritonHFClient(admin_key="short")


def test_an_unusable_key_in_the_environment_stops_only_the_admin_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(admin.ENV_VAR, "short")
    client, fake = fake_client(monkeypatch, "grpc")

    client.embed(["inference never carries the key"])
    with pytest.raises(ConfigError, match="TRITONHF_ADMIN_KEY must be at least 16"):
        client.models()
    assert fake.headers_of("get_model_repository_index") == []


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.models(),
        lambda c: c.load_model("minilm_model"),
        lambda c: c.unload_model("minilm_model"),
    ],
    ids=["index", "load", "unload"],
)
def test_a_call_refused_for_the_key_is_permission_denied_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, wire: str, call: Any
) -> None:
    refuse = frozenset({"get_model_repository_index", "load_model", "unload_model"})
    client, _ = fake_client(monkeypatch, wire, refuse=refuse, admin_key="")

    with pytest.raises(PermissionDeniedError, match="set TRITONHF_ADMIN_KEY") as raised:
        call(client)

    assert not isinstance(raised.value, DeployError), "a missing key is not a bad version"
    assert not isinstance(raised.value, RETRYABLE), "waiting does not bring a key"


def test_a_deploy_without_the_key_is_permission_denied_before_any_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refuse = frozenset({"get_model_repository_index", "load_model"})
    client, fake = fake_client(monkeypatch, "grpc", refuse=refuse, admin_key="")

    with pytest.raises(PermissionDeniedError):
        deploy_pipeline(client, model="minilm")
    assert fake.headers_of("load_model") == []


def test_deploying_a_model_that_is_no_tritonhf_pipeline_names_what_it_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model of the user's own has no steps: the deploy said its config did not parse."""
    client, fake = fake_client(monkeypatch, "grpc")  # the repository holds "minilm" alone

    with pytest.raises(DeployError, match=r"'minilm' is not a tritonhf pipeline: .*'minilm_model'"):
        deploy_pipeline(client, model="minilm")
    assert fake.headers_of("load_model") == []


def test_loaded_models_need_no_key_and_read_the_statistics(
    monkeypatch: pytest.MonkeyPatch, wire: str
) -> None:
    client, _ = fake_client(monkeypatch, wire, admin_key="")

    assert client.loaded_models() == [ModelState(name="minilm", version="1", state="READY")]


# a refusal of one chunk of a call over the max batch ----------------------------------------

NO_TOKENS = (
    "in ensemble 'minilm', [request id: r] TEXT[{row}] has no tokens: it is empty, whitespace "
    "only, or only characters the tokenizer drops; send some visible text"
)


class RefusingChunk(FakeTriton):
    """Refuses the ``chunk``-th infer call (from 0) as the tokenizer step refuses ``row``."""

    def __init__(self, wire: str, *, chunk: int, row: int) -> None:
        super().__init__(wire)
        self.chunk, self.row, self.infers = chunk, row, 0

    def _answer(self, method: str) -> Any:
        if method == "infer":
            self.infers += 1
            if self.infers - 1 == self.chunk:
                status = "StatusCode.INVALID_ARGUMENT" if self.wire == "grpc" else "400"
                raise InferenceServerException(NO_TOKENS.format(row=self.row), status=status)
        return super()._answer(method)


@pytest.mark.parametrize(("chunk", "row", "index"), [(0, 6, 6), (1, 6, 14), (2, 3, 19)])
def test_a_refused_row_of_a_chunk_is_named_by_its_index_in_the_callers_texts(
    monkeypatch: pytest.MonkeyPatch, wire: str, chunk: int, row: int, index: int
) -> None:
    fake = RefusingChunk(wire, chunk=chunk, row=row)
    for module in ("tritonclient.grpc", "tritonclient.http"):
        monkeypatch.setattr(f"{module}.InferenceServerClient", lambda *a, **k: fake)
    client = TritonHFClient(protocol=wire, retry=RetryPolicy(attempts=1))

    with pytest.raises(InvalidInputError, match=rf"\] TEXT\[{index}\] has no tokens") as raised:
        client.embed([f"text {i}" for i in range(20)])  # chunks of 8 (CONFIG's max batch)

    assert str(raised.value).count("TEXT[") == 1
    assert fake.infers == chunk + 1, "no chunk is sent after a refused one"


def test_a_rollback_that_outlasts_the_wait_stays_pending_not_a_failed_rollback() -> None:
    class StillLoading:
        def load_model(self, name: str, **_: object) -> None:
            raise DeployPendingError(f"{name!r} was still loading after 120 s")

    with pytest.raises(DeployPendingError, match="rolling back 'minilm_model' is still loading"):
        _roll_back(
            StillLoading(),  # type: ignore[arg-type]
            ["minilm_model"],
            {"minilm_model": "1"},
            {},
            pipeline="minilm",
        )


def test_a_config_is_read_again_once_it_is_older_than_the_ttl(
    monkeypatch: pytest.MonkeyPatch, wire: str
) -> None:
    from tritonhf.client import client as module

    client, fake = fake_client(monkeypatch, wire)
    for _ in range(3):
        client.embed(["a sentence"])
    assert len(fake.headers_of("get_model_config")) == 1

    monkeypatch.setattr(module, "CONFIG_TTL_S", -1.0)  # every config read is already too old
    for _ in range(3):
        client.embed(["a sentence"])
    assert len(fake.headers_of("get_model_config")) == 4


def test_an_embedder_is_asked_again_before_labels_are_refused(
    monkeypatch: pytest.MonkeyPatch, wire: str
) -> None:
    client, fake = fake_client(monkeypatch, wire)
    client.embed(["a sentence"])  # reads the config: no labels

    with pytest.raises(InvalidInputError, match="not a tritonhf classifier"):
        client.labels()
    assert len(fake.headers_of("get_model_config")) == 2


@pytest.mark.parametrize(
    ("index", "version"),
    [
        ([("minilm", "1", "UNAVAILABLE"), ("minilm_model", "2", "READY")], None),  # drained
        ([("minilm", "1", "READY"), ("minilm_model", "2", "UNAVAILABLE")], None),
        ([("minilm", "1", "READY"), ("minilm_model", "1", "READY")], 2),  # another pin won
    ],
    ids=["ensemble-gone", "step-gone", "other-version"],
)
def test_a_deploy_that_does_not_end_serving_what_it_loaded_is_an_error(
    monkeypatch: pytest.MonkeyPatch, index: list[tuple[str, str, str]], version: int | None
) -> None:
    from tritonhf.client import deploy

    pinned: list[tuple[str, int | None]] = []

    class Index:
        def models(self) -> list[ModelState]:
            return [ModelState(name=n, version=v, state=s) for n, v, s in index]

        def load_model(self, name: str, *, version: int | None = None) -> None:
            pinned.append((name, version))  # a pin that does not hold: loaded elsewhere

    monkeypatch.setattr(deploy, "SETTLE_S", 0.0)
    with pytest.raises(DeployError, match=r"does not serve what was deployed \(.*stopping"):
        deploy._settled(
            Index(),  # type: ignore[arg-type]
            "minilm",
            ["minilm_model"],
            feedback="minilm_feedback",
            version=version,
        )
    # Triton reloading a step's newest version on its own is pinned back once, not fought.
    assert pinned == ([("minilm_model", 2)] if version else [])


def _answer(label: str, probabilities: list[float]) -> dict[str, Any]:
    return {
        "LABEL": np.array([[label.encode()]], dtype=object),
        "SCORE": np.array([[max(probabilities)]], dtype=np.float32),
        "PROBABILITIES": np.array([probabilities], dtype=np.float32),
        "NUM_TOKENS": np.array([[3]], dtype=np.int32),
        "TRUNCATED": np.array([[False]]),
    }


@pytest.mark.parametrize("switched_after", [1, None], ids=["switches", "stays-mixed"])
def test_a_classifier_answering_under_labels_it_contradicts_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, switched_after: int | None
) -> None:
    """While a deploy renames classes, the new model step answers under the old ensemble's
    labels (a probe saw `label='agood'` with `top=[('negative', 0.68), ...]` for ~5 s)."""
    client = TritonHFClient(retry=RetryPolicy(attempts=3, initial_backoff_s=0.01))
    answers = []

    def config(name: str | None = None, *, fresh: bool = False) -> dict[str, Any]:
        labels = (
            ["good", "bad"]
            if switched_after and len(answers) > switched_after
            else ["negative", "positive"]
        )
        return {"parameters": {"labels": {"string_value": json.dumps(labels)}}}

    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        answers.append(1)
        return _answer("good", [0.7, 0.3])  # the new step: class 0 is "good"

    monkeypatch.setattr(client, "model_config", config)
    monkeypatch.setattr(client, "_run", run)
    if switched_after is None:
        with pytest.raises(ModelNotReadyError, match=r"switching to other classes.*'good'"):
            client.classify(["a text"], top_k=2)
        assert len(answers) == 3
        return
    (result,) = client.classify(["a text"], top_k=2)
    assert result.label == "good"
    assert [label for label, _ in result.top] == ["good", "bad"]


def test_only_ensembles_that_answer_what_tritonhfs_pipelines_do_are_discovered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A user's own ensemble with a LABEL output became the default classifier, then was
    refused as one ("it has no labels"); one with EMBEDDING alone, an embedder `compare` failed on.
    """
    outputs = {
        "minilm": ["EMBEDDING", "NUM_TOKENS", "TRUNCATED"],
        "sentiment": ["LABEL", "SCORE", "PROBABILITIES", "NUM_TOKENS", "TRUNCATED"],
        "aaa_labels": ["LABEL", "SCORE"],
        "my_vectors": ["EMBEDDING"],
        "minilm_model": ["EMBEDDING"],
    }
    configs = {
        name: {
            "platform": "python" if name.endswith("_model") else "ensemble",
            "output": [{"name": output} for output in names],
            "parameters": {"labels": {"string_value": "[]"}} if name == "sentiment" else {},
        }
        for name, names in outputs.items()
    }
    client = TritonHFClient("127.0.0.1:1")
    monkeypatch.setattr(
        client, "ready_models", lambda: [ModelState(name, "1", "READY") for name in configs]
    )
    monkeypatch.setattr(client, "model_config", lambda name: configs[name])

    served = client.served()

    assert (served.embedders, served.classifiers) == (("minilm",), ("sentiment",))
    with pytest.raises(InvalidInputError, match=r"no EMBEDDING output: it is serving \['LABEL'"):
        client.embed(["named, it is still no classifier to send to classify"], model="aaa_labels")
