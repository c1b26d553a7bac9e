"""What the demo computes and shows, as plain functions (no Gradio, no server).

The Gradio app in `tritonhf.ui.app` only wires these to widgets, so everything it displays
is unit-tested here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonhf.errors import (
    ClientError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    PermissionDeniedError,
    ServerUnavailableError,
)

MAX_TEXTS = 16  # sentences compared at once: the heatmap stays readable


_ROW = re.compile(r"\b(?:TEXT|texts)\[(\d+)\]")


def with_sentence_number(message: str, texts: list[str]) -> str:
    """``message`` led by the sentence it is about, counted from 1 as the page counts them.

    The server and the client name a refused text by its 0-based row (``TEXT[4]``).
    """
    row = _ROW.search(message)
    if row is None or int(row.group(1)) >= len(texts):
        return message
    index = int(row.group(1))
    return f"sentence {index + 1} ({texts[index][:40]!r}): {message}"


def split_lines(text: str, *, limit: int = MAX_TEXTS) -> list[str]:
    """The non-empty lines of ``text`` (stripped), at most ``limit`` of them.

    Raises `InvalidInputError` with what to type when there is nothing to send or too much.
    """
    # Only line breaks a user types; U+2028, NEL and the like stay inside their sentence.
    lines = [line.strip() for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    if not lines:
        raise InvalidInputError("type at least one sentence (one per line)")
    if len(lines) > limit:
        raise InvalidInputError(f"compare at most {limit} sentences at once, got {len(lines)}")
    return lines


def unit_rows(vectors: NDArray[Any]) -> NDArray[np.float32]:
    """``vectors`` (one per row) scaled to L2 norm 1, as float32; zero rows stay zero."""
    rows = np.asarray(vectors, dtype=np.float32)
    unit: NDArray[np.float32] = rows / np.maximum(
        np.linalg.norm(rows, axis=1, keepdims=True), 1e-12
    )
    return unit


def similarity_matrix(embeddings: NDArray[Any]) -> NDArray[np.float32]:
    """Cosine similarities between the rows of ``embeddings`` (re-normalised defensively)."""
    unit = unit_rows(embeddings)
    matrix: NDArray[np.float32] = np.clip(unit @ unit.T, -1.0, 1.0).astype(np.float32)
    return matrix


def _cell_colour(value: float) -> str:
    """White at 0 (or below) to deep blue at 1, with a text colour that stays readable."""
    strength = float(np.clip(value, 0.0, 1.0))
    red, green = int(255 - 205 * strength), int(255 - 155 * strength)
    text = "#ffffff" if strength > 0.55 else "#1f2937"
    return f"background:rgb({red},{green},255);color:{text}"


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def heatmap_html(texts: Sequence[str], matrix: NDArray[Any]) -> str:
    """The similarity matrix as an HTML table whose cells are coloured by similarity."""
    if matrix.shape != (len(texts), len(texts)):
        raise ValueError(f"matrix shape {matrix.shape} does not match {len(texts)} texts")
    header = "".join(f'<th title="{html.escape(t)}">{i + 1}</th>' for i, t in enumerate(texts))
    rows = []
    for i, text in enumerate(texts):
        cells = "".join(
            f'<td style="{_cell_colour(float(v))}">{_two_places(float(v))}</td>' for v in matrix[i]
        )
        rows.append(
            f'<tr><th class="row" title="{html.escape(text)}">{i + 1}. '
            f"{html.escape(_short(text))}</th>{cells}</tr>"
        )
    caption = f"Cosine similarity of {len(texts)} sentences (1.00: the same meaning)"
    return (  # in a box that scrolls sideways: 16 columns are wider than half a page
        '<div class="tritonhf-heatmap-box"><table class="tritonhf-heatmap">'
        f"<caption>{caption}</caption><thead><tr><th></th>"
        f"{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _two_places(value: float) -> str:
    """``value`` to 2 decimals, without the ``-0.00`` of a tiny negative."""
    shown = f"{value:.2f}"
    return "0.00" if shown == "-0.00" else shown


@dataclass(frozen=True)
class Hit:
    """One semantic-search result."""

    rank: int
    score: float
    text: str


@dataclass(frozen=True)
class SearchIndex:
    """A corpus embedded once, searched by cosine similarity.

    Rows are L2-normalised here: a dot-product model's embeddings keep their scale when served.
    """

    texts: tuple[str, ...]
    embeddings: NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.embeddings.shape[0] != len(self.texts):
            raise ValueError(
                f"{len(self.texts)} texts but {self.embeddings.shape[0]} embeddings in the index"
            )
        object.__setattr__(self, "embeddings", unit_rows(self.embeddings))

    def search(self, query: NDArray[Any], *, k: int = 5) -> list[Hit]:
        """The ``k`` corpus texts closest to ``query`` (one vector), best first."""
        if k < 1:
            raise InvalidInputError(f"top-k must be >= 1, got {k}")
        scores = self.embeddings @ unit_rows(np.reshape(query, (1, -1)))[0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [
            Hit(rank=rank, score=float(scores[i]), text=self.texts[i])
            for rank, i in enumerate(order, start=1)
        ]


def hit_rows(hits: Sequence[Hit]) -> list[list[Any]]:
    """Search hits as table rows: rank, score (3 decimals, as text: 0.580 stays 0.580), text."""
    return [[hit.rank, f"{hit.score:.3f}", hit.text] for hit in hits]


@dataclass(frozen=True)
class RequestInfo:
    """What one request did, shown under every result."""

    model: str
    version: str
    protocol: str
    latency_ms: float
    num_tokens: tuple[int, ...]
    truncated: tuple[bool, ...]
    request_id: str
    max_length: int | None = None

    def markdown(self) -> str:
        """One line of facts, plus a warning line when a text was truncated."""
        tokens = ", ".join(str(n) for n in self.num_tokens)
        version = f" v{self.version}" if self.version else ""
        line = (
            f"**model** `{self.model}`{version} · **protocol** {self.protocol_label} · "
            f"**latency** {self.latency_ms:.1f} ms (client-side) · "
            f"**tokens** {tokens} · **request id** `{self.request_id}`"
        )
        cut = [i + 1 for i, flag in enumerate(self.truncated) if flag]
        if cut:
            limit = f" to {self.max_length} tokens" if self.max_length else ""
            which = ", ".join(str(i) for i in cut)
            texts, were, its = (
                ("text", "was", "its") if len(cut) == 1 else ("texts", "were", "their")
            )
            line += (
                f"\n\n⚠ **truncated**: {texts} {which} {were} longer than the model reads and "
                f"{were} cut{limit}; the result only reflects {its} beginning."
            )
        return line

    @property
    def protocol_label(self) -> str:
        """``gRPC`` or ``HTTP``."""
        return "gRPC" if self.protocol.lower() == "grpc" else "HTTP"


def served_version(states: Sequence[Any], model: str) -> str:
    """The READY version(s) of ``model`` in a repository index (``""`` when none is ready)."""
    versions = sorted(
        {s.version for s in states if s.name == model and s.ready and s.version},
        key=lambda v: (len(v), v),
    )
    return ",".join(versions)


def pipeline_version(states: Sequence[Any], steps: Sequence[str]) -> str:
    """The ready version(s) of the models that answer for a pipeline: its ``steps``.

    A deploy loads new versions of an ensemble's steps, never of the ensemble itself, so its
    own version says nothing of what answers. One version when every step serves the same.
    """
    versions = {step: served_version(states, step) for step in steps}
    if len(set(versions.values())) == 1:
        return next(iter(versions.values()))
    return ", ".join(f"{step} {version or '-'}" for step, version in versions.items())


def confidences(top: Sequence[tuple[str, float]]) -> dict[str, float]:
    """A classification's (label, probability) pairs as the mapping Gradio's Label shows."""
    return {label: float(p) for label, p in top}


def probabilities_markdown(top: Sequence[tuple[str, float]]) -> str:
    """The probabilities to 3 places, as the CLI prints them (Gradio's Label rounds to 1%)."""
    shown = " · ".join(f"<code>{html.escape(label)}</code> {float(p):.3f}" for label, p in top)
    return f"**probabilities** {shown}"


_TITLES: tuple[tuple[type[ClientError], str, str], ...] = (
    (
        ServerUnavailableError,
        "Triton is not reachable",
        "Start it with `make run` (or `tritonhf serve`), or check the URL and protocol.",
    ),
    (
        ModelNotFoundError,
        "Model not served",
        "Pick a model the server lists in the status panel, or export and serve it.",
    ),
    (
        ModelNotReadyError,
        "Model not ready",
        "It may be loading or unloaded: load it (ops console or `tritonhf deploy`) and retry.",
    ),
    (OverloadedError, "Server overloaded", "The queue is full: wait a moment and retry."),
    (
        PermissionDeniedError,
        "Admin key needed",
        "The server restricts this call: start the demo with TRITONHF_ADMIN_KEY set.",
    ),
    (InferenceTimeoutError, "Request timed out", "The server is slow or stuck: retry later."),
    (InvalidInputError, "Input refused", "Fix what the message names and try again."),
)


def error_markdown(exc: BaseException) -> str:
    """A clear message for a failed request: what happened and what to do, no stack trace."""
    title, hint = "Request failed", "Check the server log; the status panel shows its state."
    for kind, kind_title, kind_hint in _TITLES:
        if isinstance(exc, kind):
            title, hint = kind_title, kind_hint
            break
    else:
        if not isinstance(exc, ClientError):
            title = f"Unexpected error ({type(exc).__name__})"
    # Escaped: a message can quote what the user typed (a model name), and Markdown renders HTML.
    detail = html.escape(str(exc).strip(), quote=False) or type(exc).__name__
    return f"⚠ **{title}**: {detail}\n\n{hint}"


def health_markdown(health: Any) -> str:
    """The status panel's headline from a `ServerHealth`.

    Marks are plain glyphs that fonts on any system have (emoji show as boxes on a bare Linux).
    """
    if not health.live:
        return (
            f"✗ **Server down**: nothing answers at `{health.url}`. "
            "Start it with `make run` (or `tritonhf serve`)."
        )
    ready = "ready" if health.ready else "live but **not ready** (a model failed to load?)"
    return f"✓ **Server** `{health.url}` is {ready}."


RESTRICTED_INDEX = (
    "**Note**: the table lists the models that serve; the server shows its full index "
    "(unloaded and failed models too) only to callers with its admin key "
    "(`TRITONHF_ADMIN_KEY`)."
)
"""The status panel's note when the server refuses its repository index to the demo."""


def model_rows(states: Sequence[Any]) -> list[list[str]]:
    """The repository index as table rows: model, version, state (✓ when READY), reason."""
    return [
        [s.name, s.version or "-", ("✓ " if s.ready else "✗ ") + s.state, s.reason or ""]
        for s in sorted(states, key=lambda s: (s.name, s.version))
    ]
