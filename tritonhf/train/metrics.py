"""Classification metrics (accuracy, precision, recall, F1, confusion matrix) in plain numpy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonhf.spec import columns, left_aligned, right_aligned, shown_label


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall and F1 of one label; ``support`` is how many rows truly have it."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class SplitMetrics:
    """How the classifier did on one split."""

    split: str
    examples: int
    accuracy: float
    macro_f1: float
    """Mean F1 over the labels that occur in the split or in its predictions (as scikit-learn)."""
    classes: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]
    """``confusion[i][j]``: rows whose true label is ``labels[i]``, predicted ``labels[j]``."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels, in id order."""
        return tuple(c.label for c in self.classes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``metrics.json``)."""
        return {
            "examples": self.examples,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "classes": {
                c.label: {
                    "precision": c.precision,
                    "recall": c.recall,
                    "f1": c.f1,
                    "support": c.support,
                }
                for c in self.classes
            },
            "confusion": {
                "labels": list(self.labels),
                "rows_true_columns_predicted": [list(row) for row in self.confusion],
            },
        }

    def table(self) -> str:
        """Per-class figures and the confusion matrix, as printable text."""
        shown = {label: shown_label(label) for label in self.labels}
        width = max(10, *(columns(label) for label in shown.values())) + 2
        lines = [f"{self.split:<{width}}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>10}"]
        for c in self.classes:
            # No rows of the class in this split: its recall and F1 are undefined, not 0.
            rest = f"{c.recall:>10.3f}{c.f1:>10.3f}" if c.support else f"{'-':>10}{'-':>10}"
            lines.append(
                f"{left_aligned(shown[c.label], width)}{c.precision:>10.3f}{rest}{c.support:>10d}"
            )
        lines.append("")
        lines.append(f"{self.split} confusion matrix (rows: true label, columns: predicted)")
        lines.append(
            " " * width + "".join(right_aligned(shown[label], width) for label in self.labels)
        )
        for label, row in zip(self.labels, self.confusion, strict=True):
            lines.append(left_aligned(shown[label], width) + "".join(f"{n:>{width}d}" for n in row))
        return "\n".join(lines)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def classification_metrics(
    *, split: str, labels: Sequence[str], true_ids: Sequence[int], predicted_ids: Sequence[int]
) -> SplitMetrics:
    """Compare predicted label ids with the true ones (both index ``labels``)."""
    truth = np.asarray(true_ids, dtype=np.int64)
    predicted = np.asarray(predicted_ids, dtype=np.int64)
    if truth.shape != predicted.shape or truth.ndim != 1 or truth.size == 0:
        raise ValueError(
            f"need two equally long, non-empty id lists; got {truth.shape} and {predicted.shape}"
        )
    size = len(labels)
    confusion = np.zeros((size, size), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    classes = []
    present = []
    for i, label in enumerate(labels):
        hits = int(confusion[i, i])
        precision = _ratio(hits, confusion[:, i].sum())
        recall = _ratio(hits, confusion[i, :].sum())
        f1 = _ratio(2 * precision * recall, precision + recall)
        classes.append(
            ClassMetrics(
                label=label,
                precision=precision,
                recall=recall,
                f1=f1,
                support=int(confusion[i, :].sum()),
            )
        )
        if confusion[i, :].sum() or confusion[:, i].sum():
            present.append(f1)
    return SplitMetrics(
        split=split,
        examples=int(truth.size),
        accuracy=_ratio(np.trace(confusion), truth.size),
        macro_f1=float(np.mean(present)),
        classes=tuple(classes),
        confusion=tuple(tuple(int(n) for n in row) for row in confusion),
    )
