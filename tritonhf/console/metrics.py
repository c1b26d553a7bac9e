"""Triton's Prometheus metrics: scrape, parse, and turn two scrapes into per-model rates.

Triton's latency metrics are cumulative counters (``*_duration_us``), so rates and mean
latencies over an interval come from the difference of two scrapes.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

from tritonhf.errors import ClientError, ConfigError, ServerUnavailableError

SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
INFERENCES = "nv_inference_count"
EXECUTIONS = "nv_inference_exec_count"
REQUEST_US = "nv_inference_request_duration_us"
QUEUE_US = "nv_inference_queue_duration_us"
COMPUTE_US = "nv_inference_compute_infer_duration_us"
PENDING = "nv_inference_pending_request_count"

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scrape:
    """One scrape: when it was taken (monotonic seconds) and every sample in it."""

    at: float
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def by_model(self, name: str, **where: str) -> dict[tuple[str, str], float]:
        """``name``'s samples summed per (model, version), over any other labels.

        ``where`` keeps only the samples with those label values (``reason="OTHER"``).
        """
        totals: dict[tuple[str, str], float] = {}
        for (metric, labels), value in self.samples.items():
            if metric != name:
                continue
            found = dict(labels)
            if "model" not in found or any(found.get(k) != v for k, v in where.items()):
                continue
            key = (found["model"], found.get("version", ""))
            totals[key] = totals.get(key, 0.0) + value
        return totals


def parse_metrics(text: str, *, at: float | None = None) -> Scrape:
    """Parse the Prometheus text format into a `Scrape`.

    Raises `ClientError` naming the problem when the text is not Prometheus' format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, Labels], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                # The parser names counter samples ``<family>_total`` whether or not the text
                # did (Triton's counters have no suffix): key counters by the family name.
                name = sample.name
                if family.type == "counter" and name == f"{family.name}_total":
                    name = family.name
                labels = tuple(sorted(sample.labels.items()))
                samples[(name, labels)] = float(sample.value)
    except ValueError as exc:
        raise ClientError(
            f"the metrics endpoint did not answer in Prometheus text format ({exc}); "
            "is --metrics-url Triton's metrics port (default :8002/metrics)?"
        ) from None
    return Scrape(at=time.monotonic() if at is None else at, samples=samples)


def scrape(url: str, *, timeout_s: float = 5.0) -> Scrape:
    """Fetch and parse ``url`` (Triton's ``/metrics``)."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"metrics URL must start with http:// or https://, got {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310  # nosec B310
            text = response.read().decode("utf-8")
    # Not HTTP at all (the gRPC port, say) or not text: not Triton's metrics endpoint either.
    except (urllib.error.URLError, OSError, http.client.HTTPException, UnicodeDecodeError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerUnavailableError(
            f"cannot read Triton's metrics at {url} ({reason}); is the server running with "
            "metrics enabled, and is --metrics-url right?"
        ) from None
    return parse_metrics(text)


@dataclass(frozen=True)
class ModelRates:
    """One model version's traffic between two scrapes."""

    model: str
    version: str
    requests_per_s: float
    failures_per_s: float
    inferences_per_s: float
    mean_batch: float | None  # inferences per execution (how well dynamic batching works)
    latency_ms: float | None  # mean end-to-end request time in the server
    queue_ms: float | None  # mean time queued
    compute_ms: float | None  # mean compute (inference) time
    pending: float


def _delta(
    new: dict[tuple[str, str], float], old: dict[tuple[str, str], float], key: tuple[str, str]
) -> float:
    # A counter that went down means the server restarted: count from zero.
    now, before = new.get(key, 0.0), old.get(key, 0.0)
    return now - before if now >= before else now


def _mean(total: float, count: float, scale: float = 1.0) -> float | None:
    return total / count * scale if count > 0 else None


def model_rates(previous: Scrape, current: Scrape) -> list[ModelRates]:
    """Request rate, failures, mean latency and queue time per model between two scrapes.

    As the Prometheus rules do: an ensemble counts a request that failed inside it twice,
    with reason ``OTHER``, so those count half; and Triton adds request, queue and compute
    time for successful requests only, so the means are per success.
    """
    seconds = current.at - previous.at
    if seconds <= 0:
        raise ValueError(f"scrapes must be in time order, got {seconds:.3f} s between them")
    series = {
        name: (current.by_model(name), previous.by_model(name))
        for name in (SUCCESS, FAILURE, INFERENCES, EXECUTIONS, REQUEST_US, QUEUE_US, COMPUTE_US)
    }
    counted_twice = (
        current.by_model(FAILURE, reason="OTHER"),
        previous.by_model(FAILURE, reason="OTHER"),
    )
    pending = current.by_model(PENDING)
    rates = []
    for key in sorted(series[SUCCESS][0]):
        delta = {name: _delta(new, old, key) for name, (new, old) in series.items()}
        failures = delta[FAILURE] - _delta(*counted_twice, key) / 2
        successes = delta[SUCCESS]
        rates.append(
            ModelRates(
                model=key[0],
                version=key[1],
                requests_per_s=(successes + failures) / seconds,
                failures_per_s=failures / seconds,
                inferences_per_s=delta[INFERENCES] / seconds,
                mean_batch=_mean(delta[INFERENCES], delta[EXECUTIONS]),
                latency_ms=_mean(delta[REQUEST_US], successes, 1e-3),
                queue_ms=_mean(delta[QUEUE_US], successes, 1e-3),
                compute_ms=_mean(delta[COMPUTE_US], successes, 1e-3),
                pending=pending.get(key, 0.0),
            )
        )
    return rates


# An en dash, not "-": Streamlit tables render cells as markdown, where "-" is a list item.
NO_VALUE = "\u2013"


def _fmt(value: float | None, digits: int = 1) -> str:
    return NO_VALUE if value is None else f"{value:.{digits}f}"


def rate_rows(rates: Sequence[ModelRates]) -> list[dict[str, str]]:
    """Rates as table rows (strings, `NO_VALUE` where an interval had no requests)."""
    return [
        {
            "model": r.model,
            "version": r.version,
            "requests/s": _fmt(r.requests_per_s, 2),
            "failures/s": _fmt(r.failures_per_s, 2),
            "inferences/s": _fmt(r.inferences_per_s, 2),
            "mean batch": _fmt(r.mean_batch, 2),
            "latency ms": _fmt(r.latency_ms),
            "queue ms": _fmt(r.queue_ms),
            "compute ms": _fmt(r.compute_ms),
            "pending": _fmt(r.pending, 0),
        }
        for r in rates
    ]
