"""`TritonHFClient`: embeddings, health and model queries over gRPC or HTTP."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonhf.client.connection import (
    GRPC_CHANNEL_OPTIONS,
    ConnectionEnd,
    Opened,
    Protocol,
    hub_end,
    reinit_gevent_in_forked_children,
    server_address,
)
from tritonhf.client.errors import map_error, one_line
from tritonhf.client.results import (
    Classification,
    EmbeddingResult,
    ModelState,
    Served,
    ServerHealth,
)
from tritonhf.client.texts import contradiction, encode_texts, new_request_id, text_list
from tritonhf.errors import (
    ClientError,
    ConfigError,
    DeployError,
    DeployPendingError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    PermissionDeniedError,
    ServerUnavailableError,
    WrongProtocolError,
)
from tritonhf.observability.client_metrics import ClientMetrics, Tracked
from tritonhf.observability.feedback import FeedbackError, check_rating, check_request_id
from tritonhf.server.admin import ENV_VAR as ADMIN_KEY_ENV
from tritonhf.server.admin import check_key, grpc_headers, http_headers
from tritonhf.spec import (
    CORRECTED_LABEL,
    DEFAULT_MODEL_NAME,
    DRIFT_PARAMETER,
    EMBEDDING,
    LABEL,
    NUM_TOKENS,
    POSITIVE,
    PROBABILITIES,
    REQUEST_ID,
    SCORE,
    TEXT,
    TRUNCATED,
    PipelineSpec,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of idempotent calls while the server is unreachable or its model reloads.

    Waits ``initial_backoff_s``, doubling up to ``max_backoff_s``, for at most ``attempts``
    tries in all. Overload and bad input are never retried.
    """

    attempts: int = 4
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.initial_backoff_s < 0 or self.max_backoff_s < 0:
            raise ConfigError(f"retry policy needs attempts >= 1 and backoffs >= 0, got {self}")

    def delays(self) -> Iterator[float]:
        """The waits between attempts (``attempts - 1`` of them)."""
        delay = self.initial_backoff_s
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_backoff_s)
            delay *= 2


NO_RETRY = RetryPolicy(attempts=1)
RETRYABLE = (ServerUnavailableError, ModelNotReadyError)
LOAD_WAIT_S = 600.0
"""How long `TritonHFClient.load_model` waits for Triton to end a load."""
MAX_TIMEOUT_S = 1_000_000.0
"""The longest ``timeout_s``: from ~1e12 s gRPC's deadline overflows (every call fails at once),
and from ~1e13 s Triton cannot read the queue timeout it is sent in microseconds."""


def check_timeout(timeout_s: object) -> None:
    """Raise `ConfigError` unless ``timeout_s`` is a number of seconds a request can wait.

    gRPC takes inf and nan as a deadline already past, and past `MAX_TIMEOUT_S` its deadline
    and Triton's queue timeout overflow.
    """
    if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool):
        raise ConfigError(f"timeout_s (--timeout) must be a number of seconds, got {timeout_s!r}")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ConfigError(
            f"timeout_s (--timeout) must be a finite number of seconds > 0, got {timeout_s}"
        )
    if timeout_s > MAX_TIMEOUT_S:
        raise ConfigError(
            f"timeout_s (--timeout) must be at most {MAX_TIMEOUT_S:,.0f} seconds (11.6 days), "
            f"got {timeout_s:g}"
        )


def ensemble_steps(config: Mapping[str, Any]) -> list[str]:
    """The models an ensemble's config (Triton's JSON form) runs, in order; [] for another model."""
    return [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]


CONFIG_TTL_S = 10.0
"""How long a client trusts a model config it read: a deploy elsewhere may replace it."""

_WIRE_DTYPES: dict[str, Any] = {
    EMBEDDING: np.float32,
    NUM_TOKENS: np.int32,
    LABEL: object,
    SCORE: np.float32,
    PROBABILITIES: np.float32,
    TRUNCATED: np.bool_,
}


class TritonHFClient:
    """Talk to a tritonhf pipeline served by Triton.

    >>> with TritonHFClient("127.0.0.1:8001") as client:  # doctest: +SKIP
    ...     vectors = client.embed(["a sentence", "another one"])  # (2, 384) float32

    ``timeout_s`` bounds each request sent: a call with more texts than the model's
    ``max_batch_size`` sends several requests, one after the other, and may take longer. It
    goes with each inference request as Triton's limit on queueing it, so the server drops the
    work of a request the client gave up on.

    One client serves many threads. A process forked from the one that made it (multiprocessing's
    ``fork``) opens connections of its own at its first call; a client cannot be pickled, so a
    ``spawn`` child makes its own.

    ``admin_key`` (default: ``$TRITONHF_ADMIN_KEY``; ``""`` for none) goes with the calls a
    server started with a key restricts: `models`, `load_model`, `unload_model`, and nothing
    else, so inference never carries it. Refused, they raise `PermissionDeniedError`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        protocol: Protocol | str = Protocol.GRPC,
        model: str = DEFAULT_MODEL_NAME,
        timeout_s: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        metrics: ClientMetrics | None = None,
        admin_key: str | None = None,
    ) -> None:
        try:
            self.protocol = Protocol(protocol)
        except ValueError:
            raise ConfigError(f"protocol must be 'grpc' or 'http', got {protocol!r}") from None
        check_timeout(timeout_s)
        self.url = server_address(self.protocol.default_url if url is None else url, self.protocol)
        self.model = model
        self.timeout_s = timeout_s
        self.retry = retry
        self.metrics = metrics
        # A key passed in is checked now; one from the environment at the first admin call,
        # so a bad $TRITONHF_ADMIN_KEY does not stop a client that only runs inference.
        if admin_key:
            check_key(admin_key)
        self._admin_key = os.environ.get(ADMIN_KEY_ENV) if admin_key is None else admin_key
        self._admin_key = self._admin_key or None
        self._configs: dict[str, tuple[float, dict[str, Any]]] = {}  # read at, config
        # tritonclient's HTTP client is gevent-based and not thread-safe: one per thread.
        # The gRPC client is thread-safe and shares one channel.
        self._local = threading.local()
        self._opened: list[Opened] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._inherited: list[Any] = []  # a forked child's copies of the parent's connections
        self._connection()

    def _connection(self) -> Any:
        if os.getpid() != self._pid:
            self._leave_to_parent()
        if self.protocol is Protocol.GRPC and self._opened:
            return self._opened[0].connection
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        hub = None
        try:
            if self.protocol is Protocol.GRPC:
                import tritonclient.grpc as grpcclient

                connection = grpcclient.InferenceServerClient(
                    self.url, channel_args=GRPC_CHANNEL_OPTIONS
                )
            else:
                import gevent
                import tritonclient.http as httpclient

                reinit_gevent_in_forked_children()
                connection = httpclient.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
                hub = gevent.get_hub()  # this thread's event loop, which the connection uses
        except Exception as exc:  # tritonclient validates the URL eagerly
            raise map_error(exc, model=None, url=self.url, protocol=self.protocol) from exc
        opened = Opened(threading.current_thread(), connection, hub)
        with self._lock:
            # Threads that have ended closed their own connections (`ConnectionEnd`).
            self._opened = [o for o in self._opened if o.thread.is_alive()]
            self._opened.append(opened)
        self._local.connection = connection
        if hub is not None:
            self._local.end = ConnectionEnd(opened)
            hub_end(hub).connections.add(opened)
        return connection

    def _leave_to_parent(self) -> None:
        """In a process forked from the one that opened them: open new connections.

        The parent's sockets (and its gRPC channel) are the parent's: a child that wrote on them
        read other processes' answers (a probe's children got each other's vectors). They are
        kept, never closed here (closing could shut the parent's connection down), and dropped.
        """
        self._inherited += [self._local, self._opened]
        self._local, self._opened = threading.local(), []
        self._lock = threading.Lock()  # the parent's may have been held by one of its threads
        self._pid = os.getpid()

    def _call_with_retry(
        self, model: str | None, method: str, *args: Any, row_offset: int = 0, **kwargs: Any
    ) -> Any:
        delays = self.retry.delays()
        while True:
            try:
                return self._call(model, method, *args, row_offset=row_offset, **kwargs)
            except RETRYABLE as exc:
                delay = next(delays, None)
                if delay is None or isinstance(exc, WrongProtocolError):
                    raise
                time.sleep(delay)

    def _call(
        self, model: str | None, method: str, *args: Any, row_offset: int = 0, **kwargs: Any
    ) -> Any:
        """Call ``method`` of the connection; a failure leaves as a typed `ClientError`.

        ``row_offset`` is the index of the request's first text in the caller's list, so a
        refusal naming a row (``TEXT[k]``) names the caller's index.
        """
        if self.protocol is Protocol.GRPC:
            kwargs["client_timeout"] = self.timeout_s  # HTTP sets its timeouts per connection
        try:
            return getattr(self._connection(), method)(*args, **kwargs)
        except Exception as exc:  # every failure leaves as a typed ClientError
            error = map_error(
                exc,
                model=model,
                url=self.url,
                protocol=self.protocol,
                row_offset=row_offset,
                timeout_s=self.timeout_s,
            )
            if isinstance(error, PermissionDeniedError) and kwargs.get("headers"):
                error = PermissionDeniedError(
                    f"Triton at {self.url} refused the admin key this client sent (from "
                    f"${ADMIN_KEY_ENV} or admin_key=): it is not the key the server was "
                    "started with"
                )
            raise error from exc

    # Health and models -------------------------------------------------------------------

    def health(self, model: str | None = None) -> ServerHealth:
        """Liveness, readiness and ``model``'s readiness; a server that is down is an answer."""
        name = model or self.model
        checks = {
            "live": ("is_server_live",),
            "ready": ("is_server_ready",),
            "model": ("is_model_ready", name),
        }
        answers = dict.fromkeys(checks, False)
        problems: list[str] = []
        for key, (method, *args) in checks.items():
            try:
                answers[key] = bool(self._call(name, method, *args))
            except ClientError as exc:
                problems.append(str(exc))
                break  # why: a server that cannot answer one check cannot answer the next
        if answers["ready"] and not answers["model"] and not problems:
            try:  # why: Triton answers "not ready" alike for a model it lacks and an unloaded one
                self._call(name, "get_model_metadata", name)
            except ClientError as exc:
                problems.append(str(exc))
        return ServerHealth(
            url=self.url,
            live=answers["live"],
            ready=answers["ready"],
            model=name,
            model_ready=answers["model"],
            problem=next(iter(problems), ""),
        )

    def is_model_ready(self, model: str | None = None) -> bool:
        """True when ``model`` (default: the client's model) is loaded and ready."""
        name = model or self.model
        return bool(self._call(name, "is_model_ready", name))

    def _admin_headers(self) -> dict[str, str] | None:
        """The admin key's header for a restricted call (None without a key)."""
        if self._admin_key is None:
            return None
        check_key(self._admin_key)
        if self.protocol is Protocol.GRPC:
            return grpc_headers(self._admin_key)
        return http_headers(self._admin_key)

    def models(self) -> list[ModelState]:
        """The server's repository index: every model, its version and state."""
        headers = self._admin_headers()
        if self.protocol is Protocol.GRPC:
            index = self._call(None, "get_model_repository_index", headers=headers, as_json=True)
            entries = index.get("models", [])
        else:
            entries = self._call(None, "get_model_repository_index", headers=headers)
        return [
            ModelState(
                name=e["name"],
                version=str(e.get("version", "")),
                state=e.get("state", "UNAVAILABLE") or "UNAVAILABLE",
                reason=e.get("reason", ""),
            )
            for e in entries
        ]

    def loaded_models(self) -> list[ModelState]:
        """The models loaded now (state READY), from the statistics API.

        Needs no admin key where `models` does; lists neither unloaded nor failed models.
        """
        if self.protocol is Protocol.GRPC:
            stats = self._call(None, "get_inference_statistics", as_json=True)
        else:
            stats = self._call(None, "get_inference_statistics")
        return [
            ModelState(name=s["name"], version=str(s.get("version", "")), state="READY")
            for s in stats.get("model_stats", [])
        ]

    def ready_models(self) -> list[ModelState]:
        """The models that serve: from the repository index, else (no admin key) the statistics.

        A key that cannot be sent (`ConfigError` for `models`) is not needed for these.
        """
        try:
            return [state for state in self.models() if state.ready]
        except (PermissionDeniedError, ConfigError):
            return self.loaded_models()

    def served(self) -> Served:
        """The ready tritonhf ensembles: those that embed and those that classify.

        An ensemble of the user's own with an ``EMBEDDING`` or ``LABEL`` output is not one:
        it lacks the rest of what tritonhf's pipelines answer (token counts, truncation, the
        labels), so it is only used when named.
        """
        embedders: set[str] = set()
        classifiers: set[str] = set()
        for name in {state.name for state in self.ready_models()}:
            config = self.model_config(name)
            if config.get("platform") != "ensemble":
                continue
            outputs = {o["name"] for o in config.get("output", [])}
            if LABEL in outputs and "labels" in config.get("parameters", {}):
                classifiers.add(name)
            elif {EMBEDDING, NUM_TOKENS, TRUNCATED} <= outputs:
                embedders.add(name)
        return Served(tuple(sorted(embedders)), tuple(sorted(classifiers)))

    def model_config(self, model: str | None = None, *, fresh: bool = False) -> dict[str, Any]:
        """The model's configuration as Triton reports it (JSON form).

        Cached for `CONFIG_TTL_S`, since a deploy from another client may replace the model
        (other labels, another task); ``fresh`` reads it again now.
        """
        name = model or self.model
        cached = self._configs.get(name)
        if fresh or cached is None or time.monotonic() - cached[0] > CONFIG_TTL_S:
            if self.protocol is Protocol.GRPC:
                config = self._call_with_retry(name, "get_model_config", name, as_json=True)
                config = config["config"]
            else:
                config = self._call_with_retry(name, "get_model_config", name)
            cached = (time.monotonic(), config)
            self._configs[name] = cached
        return cached[1]

    def token_limit(self, model: str | None = None) -> int:
        """The tokens per text the ensemble keeps before truncating (its export's max length).

        Read from the ensemble's first step, which tokenizes in both layouts.
        """
        name = model or self.model
        first = next(iter(ensemble_steps(self.model_config(name))), name)
        raw = self.model_config(first).get("parameters", {}).get("max_length", {})
        if not str(raw.get("string_value", "")).isdigit():
            raise ClientError(f"{name!r} declares no max_length: is it a tritonhf ensemble?")
        return int(raw["string_value"])

    def load_model(
        self,
        model: str,
        *,
        version: int | None = None,
        config: dict[str, Any] | None = None,
        wait_s: float = LOAD_WAIT_S,
    ) -> None:
        """Load (or reload) ``model`` in explicit model-control mode.

        Triton loads the new version beside the old one and switches when it is ready, so
        traffic keeps flowing; if loading fails, the old version (if any) keeps serving and
        this raises `DeployError`. ``version`` pins that version (``version_policy: specific``);
        ``config`` (as `model_config` returns it) replaces the one in the repository.
        Without either, the repository's config and newest version load, even after an earlier
        pin (Triton would otherwise keep the pinned config it was given). The load may take up
        to ``wait_s`` (not the client's ``timeout_s``); past that Triton goes on loading, and
        this raises `DeployPendingError`.
        """
        pinned = f" version {version}" if version is not None else ""
        try:
            if version is None and config is None:
                # The repository's config first: a pin's override must not outlive an export
                # that changed the config on disk. Triton reloads only a folder that changed,
                # so a pin it kept is then lifted with the served config.
                self._load(model, {}, wait_s)
                self._configs.pop(model, None)
                config = self._unpinned_config(model)
                if config is None:
                    return
            self._load(model, self._load_arguments(model, version, config), wait_s)
        except InferenceTimeoutError as exc:
            raise DeployPendingError(
                f"{model!r} was still loading after {wait_s:.0f} s; Triton goes on loading it "
                "and switches to it once it is ready (`tritonhf models` shows when); a load "
                "that never ends lost a stub while loading (the server log says so) and needs "
                "a server restart"
            ) from exc
        except PermissionDeniedError:  # a missing key, not a bad version
            raise
        except ModelNotReadyError as exc:  # only `model_config`: the load maps to DeployError
            raise DeployError(
                f"cannot pin {model!r} to{pinned}: it does not serve, so Triton has no config "
                "to pin; load it first (`tritonhf deploy` without --version), then pin"
            ) from exc
        except ClientError as exc:
            why = one_line(str(exc))
            if version is not None and "at least one version must be available" in why:
                why += f" (does the server's repository hold {model}/{version}/?)"
            if "failed to poll from model repository" in why:
                # Triton names the model it loaded, not the folder it could not read (an
                # ensemble's step's), nor whether that folder exists.
                why += (
                    f" (Triton could not read the folder {model}/ of its repository, or one of "
                    "the folders of the models it runs: one is missing, or its config.pbtxt does "
                    "not parse; the server log names it: `Poll failed for model directory`)"
                )
            raise DeployError(f"could not load {model!r}{pinned}: {why}") from exc
        finally:
            self._configs.pop(model, None)

    def _load_arguments(
        self, model: str, version: int | None, config: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The load request's ``config``: ``config``, or the served one pinned to ``version``."""
        config = dict(config if config is not None else self.model_config(model))
        if version is not None:
            config["version_policy"] = {"specific": {"versions": [version]}}
        return {"config": json.dumps(config)}

    def _load(self, model: str, kwargs: dict[str, Any], wait_s: float) -> None:
        """Ask Triton to load ``model``; wait up to ``wait_s`` for the answer, not ``timeout_s``.

        Triton answers once the load has ended, which for a Python step can take minutes; a
        request that gave up earlier would leave the load running, its outcome unknown.
        """
        kwargs = {**kwargs, "headers": self._admin_headers()}
        try:
            if self.protocol is Protocol.GRPC:
                self._connection().load_model(model, client_timeout=wait_s, **kwargs)
                return
            import tritonclient.http as httpclient

            patient = httpclient.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=wait_s
            )
            try:
                patient.load_model(model, **kwargs)
            finally:
                patient.close()
        except Exception as exc:  # every failure leaves as a typed ClientError
            raise map_error(exc, model=model, url=self.url, protocol=self.protocol) from exc

    def _unpinned_config(self, model: str) -> dict[str, Any] | None:
        """The served config with its newest-version policy back, if a load pinned one."""
        try:
            served = self.model_config(model)
        except ClientError:  # not loaded: the repository's config applies anyway
            return None
        if "specific" not in served.get("version_policy", {}):
            return None
        return {**served, "version_policy": {"latest": {"num_versions": 1}}}

    def unload_model(self, model: str) -> None:
        """Unload ``model`` in explicit model-control mode (in-flight requests finish)."""
        self._call(model, "unload_model", model, headers=self._admin_headers())
        self._configs.pop(model, None)

    # Inference ----------------------------------------------------------------------------

    def _tracked(self, model: str, operation: str) -> Any:
        """Time a call in the client metrics, when the client has them (yields a `Tracked`)."""
        if self.metrics is None:
            return contextlib.nullcontext(Tracked())
        return self.metrics.track(model, operation)

    def _run(
        self,
        texts: Sequence[str],
        model: str,
        outputs: tuple[str, ...],
        request_id: str,
        *,
        drift: bool = True,
    ) -> dict[str, Any]:
        """Send ``texts`` in chunks of the model's max batch; concatenate ``outputs``.

        Every chunk carries ``request_id``, so the steps' log lines of one call share it; a
        chunk's refusal names the row as the caller's index (``TEXT[70]``, not ``TEXT[6]``).
        """
        packed = encode_texts(texts)
        config = self.model_config(model)
        served = [o["name"] for o in config.get("output", [])]
        if missing := [name for name in outputs if name not in served]:
            classifier = LABEL in served and "labels" in config.get("parameters", {})
            kind = "a classifier (use classify)" if classifier else f"serving {served}"
            raise InvalidInputError(f"{model!r} has no {', '.join(missing)} output: it is {kind}")
        limit = int(config.get("max_batch_size", 0)) or max(len(packed), 1)
        if len(packed) == 0:
            dims = {o["name"]: [int(d) for d in o["dims"]] for o in config["output"]}
            return {n: np.empty((0, *dims[n]), _WIRE_DTYPES[n]) for n in outputs}
        parts = [
            self._infer(
                model, packed[i : i + limit], outputs, request_id, row_offset=i, drift=drift
            )
            for i in range(0, len(packed), limit)
        ]
        return {n: np.concatenate([p[n] for p in parts]) for n in outputs}

    def encode(
        self,
        texts: Iterable[str],
        *,
        model: str | None = None,
        request_id: str | None = None,
        drift: bool = True,
    ) -> EmbeddingResult:
        """Embed ``texts``; batches larger than the model's max batch are split transparently.

        ``request_id`` (default: a new uuid4 hex) is sent as Triton's request id.
        ``drift=False`` keeps the texts out of the server's drift windows: traffic that is not
        the users' (a corpus indexed at start, warm-up).
        """
        name = model or self.model
        with self._tracked(name, "encode") as tracked:
            texts = text_list(texts)
            tracked.texts = len(texts)
            request_id = new_request_id(request_id)
            found = self._run(
                texts, name, (EMBEDDING, NUM_TOKENS, TRUNCATED), request_id, drift=drift
            )
        return EmbeddingResult(
            embeddings=found[EMBEDDING],
            num_tokens=found[NUM_TOKENS].reshape(-1),
            request_id=request_id,
            truncated=found[TRUNCATED].reshape(-1).astype(np.bool_),
        )

    def embed(
        self, texts: Iterable[str], *, model: str | None = None, drift: bool = True
    ) -> NDArray[Any]:
        """Embed ``texts``: a float32 array ``(len(texts), dim)``, as the model's head makes them.

        L2-normalised when the head ends with Normalize (MiniLM, every plain HF export); a
        dot-product model's vectors keep their scale.

        Asks the server for the embeddings alone (`encode` adds token counts and truncation),
        so two outputs fewer are serialised, sent and parsed. ``drift`` as `encode` takes it.
        """
        name = model or self.model
        with self._tracked(name, "encode") as tracked:
            texts = text_list(texts)
            tracked.texts = len(texts)
            found = self._run(texts, name, (EMBEDDING,), new_request_id(None), drift=drift)
        embeddings: NDArray[Any] = found[EMBEDDING]
        return embeddings

    def labels(self, model: str | None = None) -> tuple[str, ...]:
        """A classifier's class names, in the column order of its probabilities."""
        return self._labels(model or self.model)

    def _labels(self, name: str, *, fresh: bool = False) -> tuple[str, ...]:
        """`labels`, read again before refusing a model that a deploy may have replaced."""
        raw = self.model_config(name, fresh=fresh).get("parameters", {}).get("labels", {})
        if raw.get("string_value"):
            return tuple(json.loads(raw["string_value"]))
        if not fresh:
            return self._labels(name, fresh=True)
        raise InvalidInputError(f"{name!r} is not a tritonhf classifier (it has no labels)")

    def classify(
        self,
        texts: Iterable[str],
        *,
        model: str | None = None,
        top_k: int | None = None,
        request_id: str | None = None,
        drift: bool = True,
    ) -> list[Classification]:
        """Classify ``texts``: the top label and score of each, and its ``top_k`` classes.

        ``top_k`` above the number of classes gives them all (as transformers' pipeline does);
        below 1 it is `InvalidInputError`. ``request_id`` (default: a new uuid4 hex) is sent as
        Triton's request id; ``drift`` as `encode` takes it.
        """
        name = model or self.model
        with self._tracked(name, "classify") as tracked:
            texts = text_list(texts)
            if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
                raise InvalidInputError(f"top_k must be an int, got {type(top_k).__name__}")
            if top_k is not None and top_k < 1:
                raise InvalidInputError(f"top_k (--top-k) must be >= 1, got {top_k}")
            tracked.texts = len(texts)
            request_id = new_request_id(request_id)
            labels = self.labels(name)
            for delay in [*self.retry.delays(), None]:
                found = self._run(
                    texts,
                    name,
                    (LABEL, SCORE, PROBABILITIES, NUM_TOKENS, TRUNCATED),
                    request_id,
                    drift=drift,
                )
                chosen = [bytes(label).decode("utf-8") for label in found[LABEL].reshape(-1)]
                if contradiction(labels, chosen, found[PROBABILITIES]) is None:
                    break
                # A deploy renamed, reordered or replaced the classes since they were read.
                labels = self._labels(name, fresh=True)
                why = contradiction(labels, chosen, found[PROBABILITIES])
                if why is None:
                    break
                if delay is None:  # the new model step already answers under the old ensemble
                    raise ModelNotReadyError(
                        f"{name!r} is switching to other classes (a deploy is loading them): "
                        f"{why}; try again"
                    )
                time.sleep(delay)
        results = []
        for label, score, probabilities, tokens, truncated in zip(
            chosen,
            found[SCORE].reshape(-1),
            found[PROBABILITIES],
            found[NUM_TOKENS].reshape(-1),
            found[TRUNCATED].reshape(-1),
            strict=True,
        ):
            order = np.argsort(-probabilities, kind="stable")[: top_k or len(labels)]
            results.append(
                Classification(
                    label=label,
                    score=float(score),
                    top=tuple((labels[i], float(probabilities[i])) for i in order),
                    num_tokens=int(tokens),
                    request_id=request_id,
                    truncated=bool(truncated),
                )
            )
        return results

    def feedback(
        self,
        *,
        request_id: str,
        positive: bool,
        corrected_label: str | None = None,
        model: str | None = None,
    ) -> None:
        """Record a user's rating of the request ``request_id`` on the server.

        Sent to the pipeline's feedback model (``<model>_feedback``), which counts it in
        ``tritonhf_feedback_total`` and logs it. ``corrected_label`` (classifiers) must be one
        of the model's labels and comes with ``positive=False`` (``""`` is no correction, as
        None); a bad id or label, or a thumbs-up with a correction, raises
        `InvalidInputError`. Not retried, so one rating is counted once.
        """
        name = model or self.model
        with self._tracked(name, "feedback"):
            # Types first: bool("no") would be a thumbs-up, and None a thumbs-down.
            for argument, value, kinds, wanted in (
                ("request_id", request_id, (str,), "a str"),
                ("positive", positive, (bool, np.bool_), "True or False"),
                ("corrected_label", corrected_label, (str, type(None)), "a str or None"),
            ):
                if not isinstance(value, kinds):
                    raise InvalidInputError(
                        f"{argument} must be {wanted}, got {type(value).__name__} {value!r:.40}"
                    )
            corrected_label = corrected_label or None  # "" is no correction, as on the server
            try:
                check_request_id(request_id)
                check_rating(positive=positive, corrected_label=corrected_label)
            except FeedbackError as exc:
                raise InvalidInputError(str(exc)) from None
            feedback_model = PipelineSpec(name=name).feedback_name
            module = self._module()
            tensors = [
                (REQUEST_ID, np.array([request_id.encode("utf-8")], dtype=object), "BYTES"),
                (POSITIVE, np.array([bool(positive)], dtype=np.bool_), "BOOL"),
            ]
            if corrected_label is not None:
                tensors.append(
                    (
                        CORRECTED_LABEL,
                        np.array([corrected_label.encode("utf-8", "replace")], dtype=object),
                        "BYTES",
                    )
                )
            inputs = []
            for tensor_name, array, wire in tensors:
                item = module.InferInput(tensor_name, list(array.shape), wire)
                item.set_data_from_numpy(array)
                inputs.append(item)
            self._call(feedback_model, "infer", feedback_model, inputs, request_id=request_id)

    def _infer(
        self,
        model: str,
        packed: NDArray[Any],
        outputs: tuple[str, ...],
        request_id: str,
        *,
        row_offset: int = 0,
        drift: bool = True,
    ) -> dict[str, NDArray[Any]]:
        """Infer ``packed``, the caller's texts from index ``row_offset`` on; read ``outputs``."""
        module = self._module()
        text = module.InferInput(TEXT, list(packed.shape), "BYTES")
        text.set_data_from_numpy(packed)
        requested = [module.InferRequestedOutput(n) for n in outputs]
        result = self._call_with_retry(
            model,
            "infer",
            model,
            [text],
            outputs=requested,
            request_id=request_id,
            row_offset=row_offset,
            # The server's limit on queueing it (microseconds; each step's queue takes the
            # smaller of this and its own): work for a client that gave up is dropped, not
            # run ahead of the requests that came after it.
            timeout=math.ceil(self.timeout_s * 1_000_000),
            # Sent only to leave the drift windows: no parameter, no cost.
            **({} if drift else {"parameters": {DRIFT_PARAMETER: False}}),
        )
        return {name: result.as_numpy(name) for name in outputs}

    def _module(self) -> Any:
        if self.protocol is Protocol.GRPC:
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        return module

    # Lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection this client opened.

        Calls still running in other threads then fail (over gRPC, `InferenceError`: cancelled);
        a later call opens a new connection.
        """
        with self._lock:
            opened, self._opened = self._opened, []
        for stale in opened:
            # A live thread's hub may serve its other connections: gevent keeps it.
            stale.hub = None
            stale.close()
        self._local = threading.local()

    def __enter__(self) -> TritonHFClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
