"""Texts and request ids as the ensemble takes them, checked before anything is sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonhf.errors import InvalidInputError
from tritonhf.observability.feedback import FeedbackError, check_request_id


def text_list(texts: Iterable[str]) -> list[str]:
    """``texts`` as a list (a generator is read once); one string or a non-iterable is refused."""
    if isinstance(texts, str | bytes):
        raise InvalidInputError("pass a sequence of strings, e.g. ['hello'], not one string")
    if isinstance(texts, Mapping | AbstractSet):  # results come back in the texts' order
        raise InvalidInputError(
            f"pass a sequence of strings, e.g. embed(['hello']), not a {type(texts).__name__}: "
            "its order is not the one you would read the results in"
        )
    try:
        return list(texts)
    except TypeError:
        raise InvalidInputError(
            f"pass a sequence of strings, e.g. embed(['hello']), not {type(texts).__name__}"
        ) from None


def encode_texts(texts: Sequence[str]) -> NDArray[Any]:
    """Validate texts and pack them as the ``[n, 1]`` BYTES tensor the ensemble takes."""
    texts = text_list(texts)
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


def contradiction(
    labels: tuple[str, ...], chosen: list[str], probabilities: NDArray[Any]
) -> str | None:
    """How a classifier's answer contradicts the ``labels`` it was read with, or None."""
    for label, row in zip(chosen, probabilities, strict=True):
        if len(row) != len(labels):
            return f"it answers {len(row)} probabilities for {len(labels)} labels"
        if labels[int(np.argmax(row))] != label:
            return f"it names {label!r} the class its labels call {labels[int(np.argmax(row))]!r}"
    return None


def new_request_id(request_id: str | None) -> str:
    """The caller's request id, checked; a new uuid4 hex when None."""
    if request_id is None:
        return uuid.uuid4().hex
    try:
        return check_request_id(request_id)
    except FeedbackError as exc:
        raise InvalidInputError(str(exc)) from None
