"""User feedback on a request: validation shared by the feedback step and the client."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from tritonhf.observability.metrics import RefusedInput
from tritonhf.spec import shown_label

REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""What a request id may look like: the client's uuid4 hex, or any short token like it."""


class FeedbackError(RefusedInput):
    """Feedback that cannot be recorded; ``reason`` is the invalid-input metric's label."""


@dataclass(frozen=True)
class Feedback:
    """One user rating of one request."""

    request_id: str
    positive: bool
    corrected_label: str | None = None

    @property
    def rating(self) -> str:
        """``positive`` or ``negative`` (the ``rating`` label of ``tritonhf_feedback_total``)."""
        return "positive" if self.positive else "negative"


def check_request_id(request_id: str) -> str:
    """Return ``request_id`` if it is usable; raise `FeedbackError` otherwise."""
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise FeedbackError(
            f"request id {request_id[:40]!r} is not valid: use 1-128 letters, digits, '_', '.', "
            "':' or '-' (the request_id of an EmbeddingResult or Classification)",
            "bad_request_id",
        )
    return request_id


def check_rating(*, positive: bool, corrected_label: str | None) -> None:
    """Refuse a thumbs-up that also corrects the label: the two say opposite things."""
    if positive and corrected_label is not None:
        raise FeedbackError(
            f"a positive rating says the prediction was right, so it takes no corrected label "
            f"(got {corrected_label[:40]!r}); send the correction with positive=False",
            "contradictory",
        )


def make_feedback(
    *,
    request_id: str,
    positive: bool,
    corrected_label: str | None,
    labels: Sequence[str],
) -> Feedback:
    """Validate one piece of feedback against the model's labels (none for an embedder)."""
    check_request_id(request_id)
    if corrected_label is not None and corrected_label not in labels:
        # The model's own spelling of a label written in another Unicode form (NFD "é").
        same = {unicodedata.normalize("NFC", label): label for label in labels}
        corrected_label = same.get(unicodedata.normalize("NFC", corrected_label), corrected_label)
    if corrected_label is not None and corrected_label not in labels:
        known = ", ".join(map(shown_label, labels)) if labels else "none: it is not a classifier"
        raise FeedbackError(
            f"corrected label {corrected_label[:40]!r} is not one of the model's labels ({known})",
            "unknown_label",
        )
    check_rating(positive=positive, corrected_label=corrected_label)
    return Feedback(request_id=request_id, positive=positive, corrected_label=corrected_label)
