"""Triton Python-backend model: record user feedback (a rating of one request).

Served as ``<name>_feedback/1/model.py`` (a one-line shim that imports this module). Each
request carries a REQUEST_ID (the id of the inference it rates), POSITIVE (thumbs up or down)
and, optionally, CORRECTED_LABEL (a classifier's right answer). Valid feedback is counted in
``tritonhf_feedback_total`` (and ``tritonhf_feedback_corrections_total``) and logged as a JSON
line; invalid feedback gets an INVALID_ARG error naming the problem.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside the server, by the unit tests
    pb_utils = None

from tritonhf.backends import refusal_message, string_parameters
from tritonhf.backends.execute_clock import clocked
from tritonhf.backends.loads import counted
from tritonhf.observability import metrics as m
from tritonhf.observability.feedback import Feedback, FeedbackError, make_feedback
from tritonhf.observability.logs import (
    configure_json_logging,
    elapsed_ms,
    log_event,
    log_recording_error,
)


def first_text(array: Any) -> str:
    """The single string of a ``[1]`` BYTES tensor; `FeedbackError` if it is not UTF-8."""
    item = np.asarray(array, dtype=object).reshape(-1)
    if item.size != 1:
        raise FeedbackError(f"expected one value per feedback, got {item.size}", "bad_shape")
    value = item[0]
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise FeedbackError("feedback strings must be UTF-8", "not_utf8") from None


def parse_request(
    request_id: Any, positive: Any, corrected: Any | None, labels: list[str]
) -> Feedback:
    """Turn the request's tensors into validated `Feedback`."""
    flag = np.asarray(positive).reshape(-1)
    if flag.size != 1:
        raise FeedbackError(f"POSITIVE must hold one value, got {flag.size}", "bad_shape")
    return make_feedback(
        request_id=first_text(request_id),
        positive=bool(flag[0]),
        # Empty: no correction (a client may always send the optional tensor).
        corrected_label=None if corrected is None else first_text(corrected) or None,
        labels=labels,
    )


@counted
@clocked
class TritonPythonModel:
    """The feedback model as Triton's Python backend sees it."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the ensemble name and labels from the config; set up logs and metrics."""
        config = json.loads(args["model_config"])
        params = string_parameters(config)
        self.model = params.get("pipeline") or str(config["name"]).removesuffix("_feedback")
        self.labels = [str(label) for label in json.loads(params.get("labels", "[]"))]
        self.metrics = m.TritonMetrics(pb_utils, self.model)
        self.log = configure_json_logging()
        self._warned = False

    def execute(self, requests: list[Any]) -> list[Any]:
        """Validate, count and log each piece of feedback."""
        responses = []
        for request in requests:
            started = time.perf_counter()
            corrected = pb_utils.get_input_tensor_by_name(request, "CORRECTED_LABEL")
            try:
                feedback = parse_request(
                    pb_utils.get_input_tensor_by_name(request, "REQUEST_ID").as_numpy(),
                    pb_utils.get_input_tensor_by_name(request, "POSITIVE").as_numpy(),
                    None if corrected is None else corrected.as_numpy(),
                    self.labels,
                )
            except FeedbackError as exc:
                self._safely(self.metrics.increment, m.INVALID, 1, exc.reason)
                log_event(
                    self.log,
                    "feedback",
                    model=self.model,
                    step="feedback",
                    request_id=request.request_id(),
                    outcome="error",
                    error_type=type(exc).__name__,
                    reason=exc.reason,
                    error=str(exc),
                    latency_ms=elapsed_ms(started),
                )
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(
                            refusal_message(request.request_id(), exc),
                            pb_utils.TritonError.INVALID_ARG,
                        ),
                    )
                )
                continue
            self._safely(self.metrics.increment, m.FEEDBACK, 1, feedback.rating)
            if feedback.corrected_label is not None:
                self._safely(self.metrics.increment, m.CORRECTIONS, 1, feedback.corrected_label)
            log_event(
                self.log,
                "feedback",
                model=self.model,
                step="feedback",
                request_id=feedback.request_id,
                rating=feedback.rating,
                corrected_label=feedback.corrected_label,
                outcome="ok",
                latency_ms=elapsed_ms(started),
            )
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("ACCEPTED", np.array([True], dtype=np.bool_))]
                )
            )
        return responses

    def _safely(self, record: Any, *args: Any) -> None:
        try:
            record(*args)
        except Exception as exc:  # noqa: BLE001  # a metric never fails the feedback
            if not self._warned:  # once per load, as the other steps: no log flood
                self._warned = True
                log_recording_error(self.log, model=self.model, step="feedback", error=exc)
