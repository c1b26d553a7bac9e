"""How closely a candidate (a quantized graph, a served ensemble) agrees with the reference.

Pure numpy: the export uses it in-process on ONNX Runtime outputs, ``tritonhf validate`` on
what a running server returns. Thresholds depend on the precision: an fp32 variant must be
numerically the reference, an int8 one may move embeddings a little but not the answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonhf.errors import ConfigError, ValidationError
from tritonhf.spec import Precision

NEIGHBOURS = 5


@dataclass(frozen=True)
class Thresholds:
    """The acceptance bounds; ``None`` reports a figure without gating on it."""

    label_agreement: float
    """Fraction of texts whose top label matches the reference (classifiers)."""
    max_probability_diff: float | None
    """Largest |candidate - reference| over all class probabilities (classifiers)."""
    min_cosine: float
    """Worst cosine similarity between a text's candidate and reference embedding."""
    mean_cosine: float
    top5_agreement: float
    """Mean overlap of each text's 5 nearest neighbours (within the set), candidate vs reference."""

    def __post_init__(self) -> None:
        for name in ("label_agreement", "min_cosine", "mean_cosine", "top5_agreement"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"threshold {name} must be in [0, 1], got {value}")
        if self.max_probability_diff is not None and self.max_probability_diff < 0:
            raise ConfigError(
                f"threshold max_probability_diff must be >= 0, got {self.max_probability_diff}"
            )

    @classmethod
    def for_precision(cls, precision: Precision) -> Thresholds:
        """The defaults: fp32 is the reference, fp16 nearly so, int8 keeps the answers."""
        return _DEFAULTS[precision]

    def with_overrides(self, **overrides: float | None) -> Thresholds:
        """These thresholds with the given fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_DEFAULTS = {
    Precision.FP32: Thresholds(
        label_agreement=1.0,
        max_probability_diff=1e-3,
        min_cosine=0.9999,
        mean_cosine=0.9999,
        top5_agreement=0.98,
    ),
    Precision.FP16: Thresholds(
        label_agreement=0.99,
        max_probability_diff=1e-2,
        min_cosine=0.999,
        mean_cosine=0.9995,
        top5_agreement=0.97,
    ),
    Precision.INT8: Thresholds(
        label_agreement=0.99,
        max_probability_diff=None,
        min_cosine=0.98,
        mean_cosine=0.99,
        top5_agreement=0.95,
    ),
}


@dataclass(frozen=True)
class Criterion:
    """One measured figure and its bound."""

    name: str
    value: float
    bound: float | None
    higher_is_better: bool = True

    @property
    def passed(self) -> bool:
        """True when the figure is within its bound (always, without one)."""
        if self.bound is None:
            return True
        return self.value >= self.bound if self.higher_is_better else self.value <= self.bound


def shown_bound(bound: float) -> str:
    """A bound as short as it reads (``0.9999``, ``1e-05``), never rounded."""
    short = f"{bound:g}"
    return short if float(short) == bound else repr(bound)


def shown_figure(value: float, bound: float | None, *, style: str = "f", digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, or more where fewer would misplace it.

    Printed next to its bound, a figure must compare with the bound as the value itself
    does: 0.99989 against ``>= 0.9999`` fails, so it is not shown as ``0.9999``, and 3e-5
    against ``<= 0`` is not shown as ``0.0000``. ``style`` is a float format type
    (``f``, ``e``).
    """
    if bound is None or not math.isfinite(value):
        return f"{value:.{digits}{style}}"
    for places in range(digits, 18):
        text = f"{value:.{places}{style}}"
        if _side(float(text), bound) == _side(value, bound):
            return text
    return repr(value)


def _side(value: float, bound: float) -> int:
    return (value > bound) - (value < bound)


@dataclass(frozen=True)
class GateReport:
    """The verdict on one candidate."""

    subject: str
    precision: Precision
    num_texts: int
    criteria: tuple[Criterion, ...]

    @property
    def passed(self) -> bool:
        """True when every criterion holds."""
        return all(c.passed for c in self.criteria)

    @property
    def failures(self) -> tuple[Criterion, ...]:
        """The criteria that do not hold."""
        return tuple(c for c in self.criteria if not c.passed)

    def table(self) -> str:
        """A printable table: one line per criterion, and the verdict."""
        lines = [
            f"acceptance gate: {self.subject} ({self.precision.value}, {self.num_texts} texts)",
            f"  {'criterion':<22} {'measured':>10} {'bound':>12}  ok",
        ]
        for c in self.criteria:
            sign = ">=" if c.higher_is_better else "<="
            bound = "-" if c.bound is None else f"{sign} {shown_bound(c.bound)}"
            lines.append(
                f"  {c.name:<22} {shown_figure(c.value, c.bound):>10} {bound:>12}  "
                f"{'yes' if c.passed else 'NO'}"
            )
        lines.append(f"  verdict: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for manifests and ``--json``)."""
        return {
            "subject": self.subject,
            "precision": self.precision.value,
            "num_texts": self.num_texts,
            "passed": self.passed,
            "criteria": {
                c.name: {"value": c.value, "bound": c.bound, "passed": c.passed}
                for c in self.criteria
            },
        }

    def raise_if_failed(self, advice: str = "") -> None:
        """Raise `ValidationError` carrying the measured table when the gate fails."""
        if not self.passed:
            names = ", ".join(c.name for c in self.failures)
            raise ValidationError(
                f"{self.subject} failed the acceptance gate ({names}):\n{self.table()}"
                + (f"\n{advice}" if advice else "")
            )


def _checked(candidate: NDArray[Any], reference: NDArray[Any], what: str) -> None:
    if candidate.shape != reference.shape:
        raise ValidationError(
            f"{what}: candidate has shape {candidate.shape}, reference {reference.shape}"
        )
    if len(reference) == 0:
        raise ValidationError(f"{what}: no texts to compare; give at least one")
    if not (np.isfinite(candidate).all() and np.isfinite(reference).all()):
        raise ValidationError(f"{what}: NaN or infinite values in the outputs")


def cosine_similarities(candidate: NDArray[Any], reference: NDArray[Any]) -> NDArray[Any]:
    """Row-wise cosine similarity of two ``(n, dim)`` arrays."""
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.asarray((a * b).sum(axis=1) / np.maximum(norms, 1e-12))


def neighbour_agreement(
    candidate: NDArray[Any], reference: NDArray[Any], k: int = NEIGHBOURS
) -> float:
    """Mean fraction of each text's ``k`` nearest neighbours (cosine, itself excluded) shared.

    With fewer than ``k + 1`` texts, ``k`` shrinks to ``n - 1``; a single text agrees with
    itself (1.0).
    """
    n = len(reference)
    k = min(k, n - 1)
    if k <= 0:
        return 1.0

    def neighbours(vectors: NDArray[Any]) -> NDArray[Any]:
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        similarity = unit @ unit.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argsort(-similarity, axis=1, kind="stable")[:, :k]

    ours = neighbours(np.asarray(candidate, dtype=np.float64))
    theirs = neighbours(np.asarray(reference, dtype=np.float64))
    shared = [len(set(a) & set(b)) for a, b in zip(ours.tolist(), theirs.tolist(), strict=True)]
    return float(np.mean(shared) / k)


def embedding_gate(
    candidate: NDArray[Any],
    reference: NDArray[Any],
    *,
    thresholds: Thresholds,
    precision: Precision,
    subject: str,
) -> GateReport:
    """Min and mean cosine and top-5 neighbour agreement of candidate vs reference embeddings."""
    _checked(candidate, reference, subject)
    cosines = cosine_similarities(candidate, reference)
    return GateReport(
        subject=subject,
        precision=precision,
        num_texts=len(reference),
        criteria=(
            Criterion("min cosine", float(cosines.min()), thresholds.min_cosine),
            Criterion("mean cosine", float(cosines.mean()), thresholds.mean_cosine),
            Criterion(
                f"top-{NEIGHBOURS} agreement",
                neighbour_agreement(candidate, reference),
                thresholds.top5_agreement,
            ),
        ),
    )


def classifier_gate(
    candidate: NDArray[Any],
    reference: NDArray[Any],
    *,
    thresholds: Thresholds,
    precision: Precision,
    subject: str,
    candidate_labels: NDArray[Any] | None = None,
    labels: tuple[str, ...] = (),
) -> GateReport:
    """Label agreement and max probability difference of candidate vs reference probabilities.

    ``candidate_labels`` (the served LABEL strings) are checked against the reference's top
    class when given, so a wrong id2label in the graph fails even with equal probabilities.
    """
    _checked(candidate, reference, subject)
    expected = reference.argmax(axis=1)
    if candidate_labels is not None:
        if len(labels) != reference.shape[1]:
            raise ValidationError(
                f"{subject}: {len(labels)} label names for {reference.shape[1]} classes"
            )
        got = [str(x) for x in np.asarray(candidate_labels).reshape(-1)]
        agree = np.array([g == labels[i] for g, i in zip(got, expected, strict=True)])
    else:
        agree = candidate.argmax(axis=1) == expected
    return GateReport(
        subject=subject,
        precision=precision,
        num_texts=len(reference),
        criteria=(
            Criterion("label agreement", float(agree.mean()), thresholds.label_agreement),
            Criterion(
                "max probability diff",
                float(np.abs(candidate.astype(np.float64) - reference).max()),
                thresholds.max_probability_diff,
                higher_is_better=False,
            ),
        ),
    )
