"""What a `TritonHFClient` answers: embeddings, classifications, health and model states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class EmbeddingResult:
    """Embeddings with the token count each text used (after truncation)."""

    embeddings: NDArray[Any]  # float32 [n, dim]; L2-normalised if the model normalises
    num_tokens: NDArray[Any]  # int32 [n]
    request_id: str
    """Triton's request id, in every step's log lines; pass it to `TritonHFClient.feedback`."""
    truncated: NDArray[np.bool_]  # bool [n]: the text was cut to the model's max_length


@dataclass(frozen=True)
class Classification:
    """One text's prediction."""

    label: str
    score: float  # probability of ``label`` (softmax; a multi-label model's sigmoid)
    top: tuple[tuple[str, float], ...]  # (label, probability), best first (top_k of them)
    num_tokens: int
    request_id: str
    """Triton's request id (shared by the texts of one call); for `TritonHFClient.feedback`."""
    truncated: bool  # the text was cut to the model's max_length


@dataclass(frozen=True)
class ServerHealth:
    """Liveness and readiness of the server."""

    url: str
    live: bool
    ready: bool
    model: str
    model_ready: bool
    problem: str = ""  # the first check that failed to get an answer, or why the model is not ready


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


@dataclass(frozen=True)
class Served:
    """The tritonhf ensembles a server has ready, by what they answer."""

    embedders: tuple[str, ...]
    classifiers: tuple[str, ...]
