"""What the Python-backend steps record per batch: JSON log lines, metrics, drift.

The steps hand over plain numpy results and return; the recording runs on the observer's own
thread (`BackgroundRecorder`), off the request path. Everything here is best effort: a
failure to record is logged once per model load and never fails a request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonhf.observability import metrics as m
from tritonhf.observability.background import RECORDING_NICE, BackgroundRecorder
from tritonhf.observability.drift import (
    EMBEDDING_SIMILARITY,
    LABEL,
    TOKEN_LENGTH,
    DriftWindow,
    ReferenceProfile,
)
from tritonhf.observability.logs import (
    TextLogging,
    configure_json_logging,
    elapsed_ms,
    log_event,
    log_recording_error,
    text_fields,
)


@dataclass
class RequestOutcome:
    """One request of a batch, as the tokenizer step saw it."""

    request_id: str
    texts: list[str] = field(default_factory=list)
    num_tokens: NDArray[Any] | None = None
    truncated: NDArray[Any] | None = None
    error: Exception | None = None
    sent: int = 0
    """How many texts the request carried, when they could not be decoded into ``texts``."""
    drift: bool = True
    """The request's texts count in the drift window (`tritonhf.spec.DRIFT_PARAMETER`)."""

    def succeed(self, texts: list[str], num_tokens: NDArray[Any], truncated: NDArray[Any]) -> None:
        """The request was tokenized."""
        self.texts, self.num_tokens, self.truncated = texts, num_tokens, truncated

    def fail(self, error: Exception, texts: list[str] | None = None, *, sent: int = 0) -> None:
        """The request was rejected with ``error`` (``sent``: its texts, if none decoded)."""
        self.error, self.texts, self.sent = error, texts or [], sent

    @property
    def reason(self) -> str:
        """The invalid-input reason of a rejected request."""
        return str(getattr(self.error, "reason", "invalid"))


class _NoMetrics:
    """Stands in for `TritonMetrics` outside Triton (no ``pb_utils``)."""

    def increment(self, metric: m.MetricDef, amount: float = 1.0, *labels: str) -> None:
        """Record nothing."""

    def set(self, metric: m.MetricDef, value: float, *labels: str) -> None:
        """Record nothing."""

    def observe(self, metric: m.MetricDef, value: float, *labels: str) -> None:
        """Record nothing."""


def _recorder(pb_utils: Any, model: str) -> m.TritonMetrics | _NoMetrics:
    return _NoMetrics() if pb_utils is None else m.TritonMetrics(pb_utils, model)


def _window(profile: ReferenceProfile | None, feature: str) -> DriftWindow | None:
    if profile is None or feature not in profile.features:
        return None
    return DriftWindow(profile.features[feature], profile.window, profile.min_samples)


class _Observer:
    """Shared set-up: the JSON logger (configured here, at the step's load), metrics, drift.

    ``record`` queues a batch for the recording thread; `flush` waits for it and `close`
    (from the step's ``finalize``) records what is queued and stops the thread.
    """

    step = ""
    feature = ""
    """The drift feature this step scores (`tritonhf.observability.drift`)."""

    def __init__(
        self,
        metrics: m.TritonMetrics | _NoMetrics,
        model: str,
        profile: ReferenceProfile | None,
        text_logging: TextLogging,
    ) -> None:
        self.metrics = metrics
        self.model = model
        self.profile = profile
        self.feature = self.drift_feature(profile)
        self.text_logging = text_logging
        self.log = configure_json_logging()
        self._warned = False
        self.drift = _window(profile, self.feature)
        self.recorder = BackgroundRecorder(
            f"tritonhf-{self.step}-recorder", on_error=self._recording_failed, nice=RECORDING_NICE
        )
        self._clear_drift()

    def drift_feature(self, profile: ReferenceProfile | None) -> str:
        """The feature this step scores against ``profile``: `feature`, unless a step says."""
        return self.feature

    def _submit(self, record: Any, *args: Any) -> None:
        try:
            self.recorder.submit(record, *args)
        except RuntimeError as exc:  # the thread is gone: recording never fails a request
            self._recording_failed(exc)

    def flush(self) -> None:
        """Wait until every batch queued so far is recorded."""
        self.recorder.flush()

    def close(self) -> None:
        """Record what is queued, stop the recording thread, withdraw the drift score."""
        self.recorder.close()
        self._clear_drift()

    def _clear_drift(self) -> None:
        """No drift score (NaN) while this instance has no window to score: at load, unload.

        Triton keeps a Python step's series after the model unloads, so without this an
        unloaded model (or a reloaded one, until its new window fills) would keep showing
        its last score, and keep `TritonHFInputDrift` firing.
        """
        if self.drift is None:
            return
        try:
            self.metrics.set(m.DRIFT_SAMPLES, 0, self.feature)
            self.metrics.set(m.DRIFT, math.nan, self.feature)
        except Exception as exc:  # noqa: BLE001  # recording never fails a load or unload
            self._recording_failed(exc)

    def _update_drift(self) -> None:
        """Publish the window's size and, once it holds enough observations, its score."""
        if self.drift is None:
            return
        self.metrics.set(m.DRIFT_SAMPLES, len(self.drift), self.feature)
        score = self.drift.score()
        if score is not None:
            self.metrics.set(m.DRIFT, score, self.feature)

    def _recording_failed(self, exc: Exception) -> None:
        if not self._warned:  # once per model load: a broken metric must not flood the log
            self._warned = True
            log_recording_error(self.log, model=self.model, step=self.step, error=exc)


class TokenizerObserver(_Observer):
    """Tokenizer step: tokens, truncation, invalid inputs, token-length drift."""

    step = "tokenizer"
    feature = TOKEN_LENGTH

    @classmethod
    def create(cls, pb_utils: Any, model: str, profile_path: Path) -> TokenizerObserver:
        """The observer for a step loaded from ``profile_path``'s folder."""
        return cls(
            _recorder(pb_utils, model),
            model,
            ReferenceProfile.load(profile_path),
            TextLogging.from_env(),
        )

    def record(self, outcomes: Sequence[RequestOutcome], started: float) -> None:
        """Queue the batch: each request is logged and the metrics updated off the request path."""
        self._submit(self._record, outcomes, elapsed_ms(started))

    def _record(self, outcomes: Sequence[RequestOutcome], latency_ms: float) -> None:
        texts = tokens = truncated = 0
        lengths: list[NDArray[Any]] = []
        for outcome in outcomes:
            fields: dict[str, Any] = {
                "model": self.model,
                "step": self.step,
                "request_id": outcome.request_id,
                "texts": outcome.sent or len(outcome.texts),
                "batch_requests": len(outcomes),
                "latency_ms": latency_ms,
            }
            if outcome.error is not None:
                self.metrics.increment(m.INVALID, 1, outcome.reason)
                fields.update(
                    outcome="error",
                    error_type=type(outcome.error).__name__,
                    reason=outcome.reason,
                    error=str(outcome.error),
                )
            elif outcome.num_tokens is not None and outcome.truncated is not None:
                counts = outcome.num_tokens.reshape(-1)
                cut = int(outcome.truncated.sum())
                texts, tokens, truncated = (
                    texts + counts.size,
                    tokens + int(counts.sum()),
                    truncated + cut,
                )
                if outcome.drift:
                    lengths.append(counts)
                self.metrics.observe(m.REQUEST_TOKENS, int(counts.sum()))
                self.metrics.increment(m.TRUNCATED_REQUESTS, 1 if cut else 0)
                fields.update(
                    outcome="ok",
                    tokens=counts.tolist(),
                    tokens_total=int(counts.sum()),
                    truncated=cut,
                )
            fields.update(text_fields(outcome.texts, self.text_logging))
            log_event(self.log, "tokenize", **fields)
        self.metrics.increment(m.TEXTS, texts)
        self.metrics.increment(m.TOKENS, tokens)
        self.metrics.increment(m.TRUNCATED, truncated)
        if self.drift is not None and lengths:
            self.drift.add_values(np.concatenate(lengths))
            self._update_drift()


class ModelObserver(_Observer):
    """Model step: labels and confidence, or embedding health; their drift.

    The drift feature is a classifier's predicted labels, or an embedder's similarities to its
    reference centroid.
    """

    step = "model"

    def __init__(self, *args: Any, unit_norm: bool = True) -> None:
        super().__init__(*args)
        self.unit_norm = unit_norm
        """The model normalises its embeddings: a norm off 1 counts as an anomaly."""

    def drift_feature(self, profile: ReferenceProfile | None) -> str:
        """A classifier's profile has labels; an embedder's, similarities (older exports: none)."""
        return EMBEDDING_SIMILARITY if profile and LABEL not in profile.features else LABEL

    @classmethod
    def create(
        cls, pb_utils: Any, model: str, profile_path: Path, *, unit_norm: bool = True
    ) -> ModelObserver:
        """The observer for a step loaded from ``profile_path``'s folder."""
        return cls(
            _recorder(pb_utils, model),
            model,
            ReferenceProfile.load(profile_path),
            TextLogging.OFF,
            unit_norm=unit_norm,
        )

    def record(
        self,
        request_ids: Sequence[str],
        outputs: Sequence[dict[str, NDArray[Any]]],
        errors: Sequence[tuple[str, Exception]],
        started: float,
        drift: Sequence[bool] | None = None,
    ) -> None:
        """Queue the batch: each request (answered or rejected) is logged, the metrics updated.

        ``drift``: per answered request, whether its labels count in the drift window (all
        when None).
        """
        counted = [True] * len(request_ids) if drift is None else list(drift)
        self._submit(self._record, request_ids, outputs, errors, elapsed_ms(started), counted)

    def _record(
        self,
        request_ids: Sequence[str],
        outputs: Sequence[dict[str, NDArray[Any]]],
        errors: Sequence[tuple[str, Exception]],
        latency_ms: float,
        counted: Sequence[bool],
    ) -> None:
        batch = len(request_ids) + len(errors)
        predicted: list[str] = []
        drifting: list[str] = []
        similar: list[NDArray[Any]] = []
        for request_id, found, counts in zip(request_ids, outputs, counted, strict=True):
            fields: dict[str, Any] = {
                "model": self.model,
                "step": self.step,
                "request_id": request_id,
                "batch_requests": batch,
                "latency_ms": latency_ms,
                "outcome": "ok",
            }
            if "LABEL" in found:
                labels = [_text(v) for v in found["LABEL"].reshape(-1)]
                scores = found["SCORE"].reshape(-1).astype(float)
                predicted.extend(labels)
                if counts:
                    drifting.extend(labels)
                for score in scores:
                    self.metrics.observe(m.CONFIDENCE, float(score))
                fields.update(
                    texts=len(labels), labels=labels, confidence=[round(s, 4) for s in scores]
                )
            elif "EMBEDDING" in found:
                mean, nonfinite, off = m.embedding_health(
                    found["EMBEDDING"], unit_norm=self.unit_norm
                )
                if np.isfinite(mean):
                    self.metrics.observe(m.EMBEDDING_NORM, mean)
                self.metrics.increment(m.EMBEDDING_ANOMALIES, nonfinite, "nonfinite")
                self.metrics.increment(m.EMBEDDING_ANOMALIES, off, "norm")
                if counts and self.drift is not None:
                    similar.append(self.drift.profile.similarities(found["EMBEDDING"]))
                fields.update(
                    texts=len(found["EMBEDDING"]),
                    embedding_norm_mean=round(mean, 6) if np.isfinite(mean) else None,
                    nonfinite=nonfinite,
                )
            log_event(self.log, "infer", **fields)
        for request_id, error in errors:
            reason = str(getattr(error, "reason", "bad_shape"))
            self.metrics.increment(m.INVALID, 1, reason)
            log_event(
                self.log,
                "infer",
                model=self.model,
                step=self.step,
                request_id=request_id,
                batch_requests=batch,
                latency_ms=latency_ms,
                outcome="error",
                error_type=type(error).__name__,
                reason=reason,
                error=str(error),
            )
        for label, count in m.label_counts(predicted).items():
            self.metrics.increment(m.PREDICTIONS, count, label)
        if self.drift is not None and drifting:
            self.drift.add_categories(drifting)
            self._update_drift()
        if self.drift is not None and similar:
            self.drift.add_values(np.concatenate(similar))
            self._update_drift()


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def now() -> float:
    """The clock the steps pass as ``started`` (`time.perf_counter`)."""
    return time.perf_counter()
