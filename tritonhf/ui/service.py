"""The demo's requests to Triton, all through `TritonHFClient`, with timing and metrics.

`DemoService` is what the Gradio callbacks call; it raises the client's typed errors and
leaves presenting them to `tritonhf.ui.logic.error_markdown`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from tritonhf.client import (
    Classification,
    ModelState,
    Protocol,
    RetryPolicy,
    Served,
    TritonHFClient,
)
from tritonhf.client.client import check_timeout, ensemble_steps
from tritonhf.client.connection import server_address
from tritonhf.data import sentences
from tritonhf.errors import (
    ClientError,
    ConfigError,
    InvalidInputError,
    ModelNotFoundError,
    PermissionDeniedError,
)
from tritonhf.observability.client_metrics import ClientMetrics
from tritonhf.spec import DEFAULT_MODEL_NAME
from tritonhf.ui.logic import (
    RequestInfo,
    SearchIndex,
    pipeline_version,
    split_lines,
    with_sentence_number,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

# One quick retry covers a model that is reloading; a server that is down is reported at once.
UI_RETRY = RetryPolicy(attempts=2, initial_backoff_s=0.2)
CORPUS_CHUNK = 16  # texts per request while embedding the search corpus


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo finds Triton and where it listens."""

    grpc_url: str = "127.0.0.1:8001"
    http_url: str = "127.0.0.1:8000"
    protocol: Protocol = Protocol.GRPC
    model: str = DEFAULT_MODEL_NAME
    classifier: str | None = None  # default: the first classifier the server lists
    timeout_s: float = 10.0
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be in 1..65535, got {self.port}")
        check_timeout(self.timeout_s)  # nan, inf and 2e6 started a page that then failed
        server_address(self.grpc_url, Protocol.GRPC)  # ConfigError now, not at first use
        server_address(self.http_url, Protocol.HTTP)

    def url(self, protocol: Protocol) -> str:
        """The server address for ``protocol``."""
        return self.grpc_url if protocol is Protocol.GRPC else self.http_url


@dataclass(frozen=True)
class Compared:
    """Several sentences embedded together."""

    texts: tuple[str, ...]
    embeddings: Any
    info: RequestInfo


@dataclass(frozen=True)
class Searched:
    """A query's nearest corpus sentences."""

    hits: list[Any]
    info: RequestInfo


@dataclass(frozen=True)
class Classified:
    """One text classified."""

    result: Classification
    labels: tuple[str, ...]
    info: RequestInfo


class DemoService:
    """The demo's client side: one `TritonHFClient` per protocol, created on first use."""

    def __init__(self, config: DemoConfig, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        # The client's own latency/error metrics, on the same registry the UI serves.
        self.client_metrics = ClientMetrics(self.registry)
        self._clients: dict[Protocol, TritonHFClient] = {}
        self._indexes: dict[tuple[str, str], SearchIndex] = {}
        self._lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._requests = Counter(
            "tritonhf_ui_requests",
            "Demo requests by action, protocol and outcome (ok or the error type).",
            ["action", "protocol", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "tritonhf_ui_request_seconds",
            "Client-side latency of the demo's inference requests, seconds.",
            ["action", "protocol"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )

    def client(self, protocol: Protocol | str) -> TritonHFClient:
        """The client for ``protocol`` (``"grpc"`` or ``"http"``)."""
        chosen = Protocol(protocol)
        with self._lock:
            if chosen not in self._clients:
                self._clients[chosen] = TritonHFClient(
                    self.config.url(chosen),
                    protocol=chosen,
                    model=self.config.model,
                    timeout_s=self.config.timeout_s,
                    retry=UI_RETRY,
                    metrics=self.client_metrics,
                )
            return self._clients[chosen]

    def close(self) -> None:
        """Close every client."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # Discovery and status ------------------------------------------------------------------

    def states(self, protocol: Protocol | str) -> list[ModelState] | None:
        """The server's repository index; None when it needs an admin key the demo lacks."""
        try:
            return self.client(protocol).models()
        except PermissionDeniedError:
            return None

    def _version(self, client: TritonHFClient, model: str) -> str:
        """The version(s) that answer for ``model``: its steps' for an ensemble."""
        steps = ensemble_steps(client.model_config(model)) or [model]
        return pipeline_version(client.ready_models(), steps)

    def served(self, protocol: Protocol | str) -> Served:
        """Ready ensembles that produce embeddings, and those that classify.

        The demo needs no admin key: without one the client reads the statistics instead.
        """
        return self.client(protocol).served()

    def default_classifier(self, served: Served) -> str | None:
        """The configured classifier unless others are served and it is not, else the first."""
        wanted = self.config.classifier
        if wanted and (wanted in served.classifiers or not served.classifiers):
            return wanted
        return served.classifiers[0] if served.classifiers else None

    # Requests -----------------------------------------------------------------------------

    @contextmanager
    def _counted(self, action: str, protocol: Protocol | str) -> Iterator[Protocol]:
        """Count one demo action by outcome, whatever step of it fails (checks included)."""
        chosen = Protocol(protocol)
        try:
            yield chosen
        except Exception as exc:
            self._requests.labels(action, chosen.value, type(exc).__name__).inc()
            raise
        self._requests.labels(action, chosen.value, "ok").inc()

    def _timed(self, action: str, protocol: Protocol, call: Callable[[], T]) -> tuple[T, float]:
        start = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - start
        self._latency.labels(action, protocol.value).observe(seconds)
        return value, seconds * 1000.0

    def _max_length(self, client: TritonHFClient, model: str) -> int | None:
        # The token limit the export chose; it only sharpens the truncation warning's wording.
        try:
            return client.token_limit(model)
        except Exception:  # noqa: BLE001
            return None

    def _info(
        self,
        client: TritonHFClient,
        model: str,
        latency_ms: float,
        num_tokens: Iterable[Any],
        truncated: Iterable[Any],
        request_id: str,
    ) -> RequestInfo:
        return RequestInfo(
            model=model,
            version=self._version(client, model),
            protocol=client.protocol.value,
            latency_ms=latency_ms,
            num_tokens=tuple(int(n) for n in num_tokens),
            truncated=tuple(bool(t) for t in truncated),
            request_id=request_id,
            max_length=self._max_length(client, model),
        )

    def compare(self, text: str, *, protocol: Protocol | str, model: str) -> Compared:
        """Embed the lines of ``text`` in one request (a refused text is counted too)."""
        with self._counted("compare", protocol) as chosen:
            texts = split_lines(text)
            client = self.client(chosen)
            try:
                result, ms = self._timed(
                    "compare", chosen, lambda: client.encode(list(texts), model=model)
                )
            except InvalidInputError as exc:
                raise InvalidInputError(with_sentence_number(str(exc), texts)) from exc
        info = self._info(client, model, ms, result.num_tokens, result.truncated, result.request_id)
        return Compared(tuple(texts), result.embeddings, info)

    def index(self, *, protocol: Protocol | str, model: str) -> SearchIndex:
        """The built-in corpus embedded by ``model``: once per model version, then cached."""
        client = self.client(protocol)
        key = (model, self._version(client, model))
        with self._index_lock:
            if key not in self._indexes:
                corpus = tuple(sentences())
                # Small requests: each stays well inside the timeout on a busy CPU, and
                # interactive requests from other users are not stuck behind one big batch.
                # Not users' traffic: kept out of the server's drift windows.
                parts = [
                    client.embed(corpus[i : i + CORPUS_CHUNK], model=model, drift=False)
                    for i in range(0, len(corpus), CORPUS_CHUNK)
                ]
                self._indexes[key] = SearchIndex(corpus, np.concatenate(parts))
            return self._indexes[key]

    def warm(self) -> None:
        """Check the configured models and embed the corpus now (best effort).

        Run in the background at start, so the first search does not wait for 260 sentences
        and a ``--model`` or ``--classifier`` the server does not serve is named in the log
        at once, not at the first click. The page reports the same when it is used.
        """
        config, protocol = self.config, self.config.protocol
        try:
            served = self.served(protocol)
        except ClientError as exc:
            log.warning("Triton is not reachable yet at %s: %s", config.url(protocol), exc)
            return
        if config.classifier and config.classifier not in served.classifiers:
            log.warning(
                "--classifier %s is not a classifier served here (served: %s)%s",
                config.classifier,
                ", ".join(served.classifiers) or "none",
                f"; the page starts with {served.classifiers[0]}" if served.classifiers else "",
            )
        if config.model not in served.embedders:
            log.warning(
                "--model %s is not an embedding model served here (served: %s)",
                config.model,
                ", ".join(served.embedders) or "none",
            )
            return
        try:
            self.index(protocol=protocol, model=config.model)
        except ClientError as exc:  # the page reports it too, when someone searches
            log.warning("search corpus not embedded yet (%s): %s", config.model, exc)

    def search(self, query: str, *, k: int, protocol: Protocol | str, model: str) -> Searched:
        """The ``k`` corpus sentences nearest to ``query``."""
        with self._counted("search", protocol) as chosen:
            if not query.strip():
                raise InvalidInputError("type a query to search the corpus with")
            client = self.client(chosen)
            # The query first: a model that cannot answer it is refused before the corpus
            # (260 sentences) is sent to it.
            result, ms = self._timed(
                "search", chosen, lambda: client.encode([query.strip()], model=model)
            )
            index = self.index(protocol=chosen, model=model)
        info = self._info(client, model, ms, result.num_tokens, result.truncated, result.request_id)
        return Searched(index.search(result.embeddings[0], k=k), info)

    def classify(self, text: str, *, protocol: Protocol | str, model: str | None) -> Classified:
        """Classify ``text`` with every class's probability.

        Without ``model`` (the page loaded while no classifier was served) the server is asked
        again, so a classifier that is served now is found without reloading the page.
        """
        with self._counted("classify", protocol) as chosen:
            if not text.strip():
                raise InvalidInputError("type a text to classify")
            client = self.client(chosen)
            model = model or self.default_classifier(self.served(chosen))
            if not model:
                raise ModelNotFoundError(
                    "no classifier is served now: if the status panel lists one as not ready, "
                    "load it (ops console or `tritonhf deploy`); otherwise `make run` trains and "
                    "serves the demo sentiment classifier, or export one with `tritonhf export "
                    "MODEL --task classification`"
                )
            labels = client.labels(model)
            results, ms = self._timed(
                "classify", chosen, lambda: client.classify([text.strip()], model=model)
            )
        result = results[0]
        info = self._info(
            client, model, ms, (result.num_tokens,), (result.truncated,), result.request_id
        )
        return Classified(result, labels, info)

    def feedback(
        self,
        *,
        request_id: str,
        positive: bool,
        corrected_label: str | None,
        model: str,
        protocol: Protocol | str,
        rated: str | None = None,
    ) -> None:
        """Record a user's verdict on an earlier request (the client's feedback path).

        ``rated``: the verdict the request already has (a result is rated once).
        """
        with self._counted("feedback", protocol) as chosen:
            if not request_id:
                raise InvalidInputError("send a request first, then rate its result")
            if rated:
                raise InvalidInputError(
                    f"request `{request_id}` is already rated ({rated}); send a new request to "
                    "rate again"
                )
            self.client(chosen).feedback(
                request_id=request_id,
                positive=positive,
                corrected_label=corrected_label or None,
                model=model,
            )
