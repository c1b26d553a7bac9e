"""The application metrics the Python-backend steps export through Triton's metrics API.

Every name, description and bucket list lives here, so the steps, the Prometheus rules, the
Grafana dashboards, the docs and the tests agree. Recording goes through ``pb_utils``
(``MetricFamily``), handed in by the step, so this module imports nothing from Triton.
Each ``observe``/``increment`` is a message to the server process: the steps record per
request (or per label per batch), never per token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray


class Kind(str, Enum):
    """A metric family's kind, named as ``pb_utils.MetricFamily`` names it."""

    COUNTER = "COUNTER"
    GAUGE = "GAUGE"
    HISTOGRAM = "HISTOGRAM"


@dataclass(frozen=True)
class MetricDef:
    """One metric family: name, kind, help text, label names, histogram buckets."""

    name: str
    kind: Kind
    description: str
    labels: tuple[str, ...] = ("model",)
    buckets: tuple[float, ...] = ()


# Up to 64 texts x 512 tokens, the largest request the default max batch size lets through.
TOKEN_BUCKETS = tuple(float(2**k) for k in range(2, 16))  # 4 ... 32768
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
NORM_BUCKETS = (0.5, 0.9, 0.99, 0.999, 1.001, 1.01, 1.1, 2.0)

TEXTS = MetricDef(
    "tritonhf_texts_total",
    Kind.COUNTER,
    "Texts the tokenizer step accepted, whether or not a later step then served the request.",
)
TOKENS = MetricDef("tritonhf_tokens_total", Kind.COUNTER, "Tokens produced, special ones included.")
REQUEST_TOKENS = MetricDef(
    "tritonhf_request_tokens",
    Kind.HISTOGRAM,
    "Tokens per request (sum over the request's texts, after truncation).",
    buckets=TOKEN_BUCKETS,
)
TRUNCATED = MetricDef(
    "tritonhf_truncated_texts_total",
    Kind.COUNTER,
    "Texts longer than the model's max_length, cut to it, or not read whole (degenerate).",
)
TRUNCATED_REQUESTS = MetricDef(
    "tritonhf_truncated_requests_total",
    Kind.COUNTER,
    "Requests with at least one truncated text.",
)


class RefusedInput(ValueError):
    """A request refused for its input; ``reason`` is its label in `INVALID`."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


INVALID = MetricDef(
    "tritonhf_invalid_inputs_total",
    Kind.COUNTER,
    "Requests rejected for their input, by reason (empty, not_utf8, too_large, bad_shape, "
    "bad_token_id, bad_mask, bad_request_id, unknown_label, contradictory).",
    labels=("model", "reason"),
)
PREDICTIONS = MetricDef(
    "tritonhf_predictions_total",
    Kind.COUNTER,
    "Predicted labels of a classifier.",
    labels=("model", "label"),
)
CONFIDENCE = MetricDef(
    "tritonhf_prediction_confidence",
    Kind.HISTOGRAM,
    "Softmax probability of each predicted label.",
    buckets=CONFIDENCE_BUCKETS,
)
EMBEDDING_NORM = MetricDef(
    "tritonhf_embedding_norm",
    Kind.HISTOGRAM,
    "Mean L2 norm of a request's embeddings (1.0 for a normalised embedder).",
    buckets=NORM_BUCKETS,
)
EMBEDDING_ANOMALIES = MetricDef(
    "tritonhf_embedding_anomalies_total",
    Kind.COUNTER,
    "Embeddings with a non-finite value, or (models that normalise) a norm off 1 by > 1e-3 (kind).",
    labels=("model", "kind"),
)
DRIFT = MetricDef(
    "tritonhf_drift_psi",
    Kind.GAUGE,
    "PSI of the last window of live traffic against the export-time reference, per feature.",
    labels=("model", "feature"),
)
DRIFT_SAMPLES = MetricDef(
    "tritonhf_drift_window_samples",
    Kind.GAUGE,
    "Observations in the drift window, per feature.",
    labels=("model", "feature"),
)
FEEDBACK = MetricDef(
    "tritonhf_feedback_total",
    Kind.COUNTER,
    "User feedback on a request: rating positive/negative.",
    labels=("model", "rating"),
)
CORRECTIONS = MetricDef(
    "tritonhf_feedback_corrections_total",
    Kind.COUNTER,
    "Feedback that carried a corrected label, by that label.",
    labels=("model", "label"),
)

STEP_LOADS = MetricDef(
    "tritonhf_step_loads_total",
    Kind.COUNTER,
    "Loads of a Python step (its first instance started): at the server's start, a deploy, or "
    "a reload after its stub died; model is the step's Triton model name.",
)

ALL_METRICS = (
    TEXTS,
    TOKENS,
    REQUEST_TOKENS,
    TRUNCATED,
    TRUNCATED_REQUESTS,
    INVALID,
    PREDICTIONS,
    CONFIDENCE,
    EMBEDDING_NORM,
    EMBEDDING_ANOMALIES,
    DRIFT,
    DRIFT_SAMPLES,
    FEEDBACK,
    CORRECTIONS,
    STEP_LOADS,
)


def exposed_names(metric: MetricDef) -> tuple[str, ...]:
    """The series names Prometheus sees for ``metric`` (a histogram has three)."""
    if metric.kind is Kind.HISTOGRAM:
        return tuple(f"{metric.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return (metric.name,)


class TritonMetrics:
    """Record `MetricDef` series through ``pb_utils`` for one served model.

    ``pb_utils`` is the module the step imported; the families and their labelled metrics
    are created on first use and kept, as Triton's Python backend expects.
    """

    def __init__(self, pb_utils: Any, model: str) -> None:
        self._pb = pb_utils
        self.model = model
        self._families: dict[str, Any] = {}
        self._metrics: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._gauges: dict[tuple[str, tuple[str, ...]], float] = {}

    def _metric(self, metric: MetricDef, values: Sequence[str]) -> Any:
        key = (metric.name, tuple(values))
        found = self._metrics.get(key)
        if found is None:
            family = self._families.get(metric.name)
            if family is None:
                kind = getattr(self._pb.MetricFamily, metric.kind.value)
                family = self._pb.MetricFamily(
                    name=metric.name, description=metric.description, kind=kind
                )
                self._families[metric.name] = family
            labels = dict(zip(metric.labels, (self.model, *values), strict=True))
            if metric.kind is Kind.HISTOGRAM:
                found = family.Metric(labels=labels, buckets=list(metric.buckets))
            else:
                found = family.Metric(labels=labels)
            self._metrics[key] = found
        return found

    def increment(self, metric: MetricDef, amount: float = 1.0, *labels: str) -> None:
        """Add ``amount`` to a counter; 0 only creates the series (so rates read 0, not absent)."""
        counter = self._metric(metric, labels)
        if amount:
            counter.increment(float(amount))

    def set(self, metric: MetricDef, value: float, *labels: str) -> None:
        """Set a gauge; a value equal to the last one set costs no message."""
        key = (metric.name, labels)
        if self._gauges.get(key) == float(value):
            return
        self._metric(metric, labels).set(float(value))
        self._gauges[key] = float(value)

    def observe(self, metric: MetricDef, value: float, *labels: str) -> None:
        """Observe one histogram value."""
        self._metric(metric, labels).observe(float(value))


def label_counts(labels: Sequence[str]) -> dict[str, int]:
    """How often each label occurs, so a batch costs one increment per distinct label."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return counts


def embedding_health(embeddings: NDArray[Any], *, unit_norm: bool = True) -> tuple[float, int, int]:
    """Mean L2 norm of the finite rows, rows with a non-finite value, rows with norm off 1.

    ``unit_norm=False`` (a model without Normalize): no row counts as off.
    """
    rows = embeddings.reshape(len(embeddings), -1).astype(np.float64)
    finite = np.isfinite(rows).all(axis=1)
    norms = np.linalg.norm(rows[finite], axis=1)
    off = int(np.sum(np.abs(norms - 1.0) > 1e-3)) if unit_norm else 0
    mean = float(norms.mean()) if norms.size else float("nan")
    return mean, int((~finite).sum()), off
