"""Client-side Prometheus metrics: request latency (a histogram) and errors by type.

``prometheus-client`` (the ``metrics`` extra) is imported only when a `ClientMetrics` is
created, so the plain client does not need it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tritonhf.errors import ConfigError

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUEST_DURATION = "tritonhf_client_request_duration_seconds"
REQUESTS = "tritonhf_client_requests_total"
ERRORS = "tritonhf_client_errors_total"
TEXTS = "tritonhf_client_texts_total"


@dataclass
class Tracked:
    """What a tracked call reports beyond its outcome."""

    texts: int = 0


class ClientMetrics:
    """Prometheus metrics of one or more `TritonHFClient` objects.

    ``registry`` defaults to prometheus-client's global one (what ``start_http_server`` and
    most web frameworks expose); pass a ``CollectorRegistry`` to keep them apart. Series are
    labelled by ``model`` and ``operation`` (``encode``, ``classify``, ``feedback``); errors
    also by ``error``, the client error's class name (``OverloadedError``, ...).
    """

    def __init__(self, registry: Any = None, *, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        try:
            import prometheus_client
        except ImportError:
            raise ConfigError(
                "client metrics need prometheus-client: pip install 'tritonhf[metrics]'"
            ) from None
        registry = prometheus_client.REGISTRY if registry is None else registry
        self.registry = registry
        self.latency = prometheus_client.Histogram(
            REQUEST_DURATION,
            "Time from sending a request to Triton to its answer, retries included.",
            ("model", "operation"),
            buckets=buckets,
            registry=registry,
        )
        self.requests = prometheus_client.Counter(
            REQUESTS.removesuffix("_total"),
            "Requests by outcome (ok or error).",
            ("model", "operation", "outcome"),
            registry=registry,
        )
        self.errors = prometheus_client.Counter(
            ERRORS.removesuffix("_total"),
            "Failed requests by error type.",
            ("model", "operation", "error"),
            registry=registry,
        )
        self.texts = prometheus_client.Counter(
            TEXTS.removesuffix("_total"),
            "Texts sent.",
            ("model", "operation"),
            registry=registry,
        )

    @contextmanager
    def track(self, model: str, operation: str, texts: int = 0) -> Iterator[Tracked]:
        """Time the block; count it as ok, or as an error of the raised exception's type.

        The texts counted on success are ``texts``, or what the block sets on the `Tracked`
        it gets (once it has checked them: a refused input is an error of the call too).
        """
        started = time.perf_counter()
        tracked = Tracked(texts)
        try:
            yield tracked
        except BaseException as exc:
            self.latency.labels(model, operation).observe(time.perf_counter() - started)
            self.requests.labels(model, operation, "error").inc()
            self.errors.labels(model, operation, type(exc).__name__).inc()
            raise
        self.latency.labels(model, operation).observe(time.perf_counter() - started)
        self.requests.labels(model, operation, "ok").inc()
        if tracked.texts:
            self.texts.labels(model, operation).inc(tracked.texts)
