"""`TritonHFClient`: embeddings, health and model queries over gRPC or HTTP."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonhf.client.errors import map_error
from tritonhf.errors import ClientError, ConfigError, InvalidInputError
from tritonhf.spec import DEFAULT_MODEL_NAME, EMBEDDING, NUM_TOKENS, TEXT


class Protocol(str, Enum):
    """Wire protocol to Triton."""

    GRPC = "grpc"
    HTTP = "http"

    @property
    def default_url(self) -> str:
        """Triton's usual local endpoint for this protocol."""
        return "127.0.0.1:8001" if self is Protocol.GRPC else "127.0.0.1:8000"


@dataclass(frozen=True)
class EmbeddingResult:
    """Embeddings with the token count each text used (after truncation)."""

    embeddings: NDArray[Any]  # float32 [n, dim], L2-normalised
    num_tokens: NDArray[Any]  # int32 [n]


@dataclass(frozen=True)
class ServerHealth:
    """Liveness and readiness of the server."""

    url: str
    live: bool
    ready: bool
    model: str
    model_ready: bool


@dataclass(frozen=True)
class ModelState:
    """One entry of the server's repository index."""

    name: str
    version: str
    state: str
    reason: str = ""

    @property
    def ready(self) -> bool:
        """True when the model is loaded and serving."""
        return self.state == "READY"


def _strip_scheme(url: str) -> str:
    for scheme in ("http://", "https://", "grpc://"):
        if url.startswith(scheme):
            return url.removeprefix(scheme).rstrip("/")
    return url


def encode_texts(texts: Sequence[str]) -> NDArray[Any]:
    """Validate texts and pack them as the ``[n, 1]`` BYTES tensor the ensemble takes."""
    if isinstance(texts, str | bytes):
        raise InvalidInputError("pass a sequence of strings, e.g. embed(['hello']), not one string")
    packed = np.empty((len(texts), 1), dtype=object)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{index}] is {type(text).__name__}, expected str")
        if not text.strip():
            raise InvalidInputError(f"texts[{index}] is empty or whitespace only; send some text")
        try:
            packed[index, 0] = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(
                f"texts[{index}] cannot be encoded as UTF-8 ({exc.reason} at {exc.start}); "
                "remove lone surrogate characters"
            ) from None
    return packed


class TritonHFClient:
    """Talk to a tritonhf pipeline served by Triton.

    >>> with TritonHFClient("127.0.0.1:8001") as client:  # doctest: +SKIP
    ...     vectors = client.embed(["a sentence", "another one"])  # (2, 384) float32
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        protocol: Protocol | str = Protocol.GRPC,
        model: str = DEFAULT_MODEL_NAME,
        timeout_s: float = 30.0,
    ) -> None:
        try:
            self.protocol = Protocol(protocol)
        except ValueError:
            raise ConfigError(f"protocol must be 'grpc' or 'http', got {protocol!r}") from None
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        self.url = _strip_scheme(url or self.protocol.default_url)
        self.model = model
        self.timeout_s = timeout_s
        self._configs: dict[str, dict[str, Any]] = {}
        # tritonclient's HTTP client is gevent-based and not thread-safe: one per thread.
        # The gRPC client is thread-safe and shares one channel.
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()
        self._connection()

    def _connection(self) -> Any:
        if self.protocol is Protocol.GRPC and self._opened:
            return self._opened[0]
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        try:
            if self.protocol is Protocol.GRPC:
                import tritonclient.grpc as grpcclient

                connection = grpcclient.InferenceServerClient(self.url)
            else:
                import tritonclient.http as httpclient

                connection = httpclient.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
        except Exception as exc:  # tritonclient validates the URL eagerly
            raise map_error(exc, model=None, url=self.url) from exc
        with self._lock:
            self._opened.append(connection)
        self._local.connection = connection
        return connection

    def _call(self, model: str | None, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.protocol is Protocol.GRPC:
            kwargs["client_timeout"] = self.timeout_s  # HTTP sets its timeouts per connection
        try:
            return getattr(self._connection(), method)(*args, **kwargs)
        except Exception as exc:  # every failure leaves as a typed ClientError
            raise map_error(exc, model=model, url=self.url) from exc

    # Health and models -------------------------------------------------------------------

    def health(self, model: str | None = None) -> ServerHealth:
        """Liveness, readiness and ``model``'s readiness; a server that is down is an answer."""
        name = model or self.model
        checks = {
            "live": ("is_server_live",),
            "ready": ("is_server_ready",),
            "model": ("is_model_ready", name),
        }
        answers = {}
        for key, (method, *args) in checks.items():
            try:
                answers[key] = bool(self._call(name, method, *args))
            except ClientError:
                answers[key] = False
        return ServerHealth(
            url=self.url,
            live=answers["live"],
            ready=answers["ready"],
            model=name,
            model_ready=answers["model"],
        )

    def is_model_ready(self, model: str | None = None) -> bool:
        """True when ``model`` (default: the client's model) is loaded and ready."""
        name = model or self.model
        return bool(self._call(name, "is_model_ready", name))

    def models(self) -> list[ModelState]:
        """The server's repository index: every model, its version and state."""
        if self.protocol is Protocol.GRPC:
            entries = self._call(None, "get_model_repository_index", as_json=True).get("models", [])
        else:
            entries = self._call(None, "get_model_repository_index")
        return [
            ModelState(
                name=e["name"],
                version=str(e.get("version", "")),
                state=e.get("state", "UNAVAILABLE") or "UNAVAILABLE",
                reason=e.get("reason", ""),
            )
            for e in entries
        ]

    def model_config(self, model: str | None = None) -> dict[str, Any]:
        """The model's configuration as Triton reports it (JSON form), cached."""
        name = model or self.model
        if name not in self._configs:
            if self.protocol is Protocol.GRPC:
                config = self._call(name, "get_model_config", name, as_json=True)["config"]
            else:
                config = self._call(name, "get_model_config", name)
            self._configs[name] = config
        return self._configs[name]

    # Inference ----------------------------------------------------------------------------

    def encode(self, texts: Sequence[str], *, model: str | None = None) -> EmbeddingResult:
        """Embed ``texts``; batches larger than the model's max batch are split transparently."""
        name = model or self.model
        packed = encode_texts(texts)
        config = self.model_config(name)
        limit = int(config.get("max_batch_size", 0)) or max(len(packed), 1)
        if len(packed) == 0:
            dim = int(next(o for o in config["output"] if o["name"] == EMBEDDING)["dims"][0])
            return EmbeddingResult(np.empty((0, dim), np.float32), np.empty((0,), np.int32))
        parts = [self._infer(name, packed[i : i + limit]) for i in range(0, len(packed), limit)]
        return EmbeddingResult(
            embeddings=np.concatenate([p[EMBEDDING] for p in parts]),
            num_tokens=np.concatenate([p[NUM_TOKENS] for p in parts]).reshape(-1),
        )

    def embed(self, texts: Sequence[str], *, model: str | None = None) -> NDArray[Any]:
        """Embed ``texts``: a float32 array ``(len(texts), dim)`` of L2-normalised vectors."""
        return self.encode(texts, model=model).embeddings

    def _infer(self, model: str, packed: NDArray[Any]) -> dict[str, NDArray[Any]]:
        module = self._module()
        text = module.InferInput(TEXT, list(packed.shape), "BYTES")
        text.set_data_from_numpy(packed)
        outputs = [module.InferRequestedOutput(n) for n in (EMBEDDING, NUM_TOKENS)]
        result = self._call(model, "infer", model, [text], outputs=outputs)
        return {name: result.as_numpy(name) for name in (EMBEDDING, NUM_TOKENS)}

    def _module(self) -> Any:
        if self.protocol is Protocol.GRPC:
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        return module

    # Lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection this client opened."""
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()
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
