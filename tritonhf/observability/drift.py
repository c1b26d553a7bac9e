"""Input drift: a reference profile recorded at export, PSI of a sliding window against it.

Features: every model's token lengths, a classifier's predicted labels, and an embedder's
similarity to its reference centroid (the cosine of each embedding with the mean direction
of the reference set's embeddings): traffic on other subjects than the reference's moves
that distribution even when its lengths do not.

The Population Stability Index of a live distribution ``a`` against the reference ``e``
(both proportions over the same bins) is ``sum((a_i - e_i) * ln(a_i / e_i))``. The usual
reading: below 0.1 no shift, 0.1 to 0.25 a moderate shift, above 0.25 (`ALERT_THRESHOLD`,
used by the ``TritonHFInputDrift`` alert) a significant one.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonhf.errors import ConfigError

ALERT_THRESHOLD = 0.25
"""PSI above which the ``TritonHFInputDrift`` alert fires (kept in sync with the rules file)."""
PROFILE_FILE = "drift_reference.json"
"""The reference profile's file name inside a step's version folder."""
TOKEN_LENGTH = "token_length"  # noqa: S105  # nosec B105  # a feature name
LABEL = "label"
EMBEDDING_SIMILARITY = "embedding_similarity"
MAX_EMBEDDED_REFERENCE = 2000
"""The most reference texts an export embeds for `EMBEDDING_SIMILARITY` (a fixed sample):
enough for decile bins, and seconds of work for a small model."""
MIN_EMBEDDED_REFERENCE = 200
"""The fewest distinct reference texts `EMBEDDING_SIMILARITY` is scored with: new texts like
the reference scored PSI 0.38 against 20 texts, 0.31 against 50, 0.17 against 100 and 0.05
against 300 (a centroid of few texts is a noisy one); below it the feature is left out."""
DEFAULT_WINDOW = 500
DEFAULT_MIN_SAMPLES = 100
PROPORTION_FLOOR = 1e-4
"""Empty bins count as this proportion, so PSI stays finite (a common choice)."""
_QUANTILES = np.linspace(0.1, 0.9, 9)


def psi(actual: NDArray[Any] | Sequence[float], expected: NDArray[Any] | Sequence[float]) -> float:
    """Population Stability Index of ``actual`` against ``expected`` (counts or proportions)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape or a.ndim != 1 or a.size < 2:
        raise ConfigError(
            f"PSI needs two 1-D distributions over the same >= 2 bins, got {a.shape} and {e.shape}"
        )
    if a.sum() <= 0 or e.sum() <= 0 or (a < 0).any() or (e < 0).any():
        raise ConfigError("PSI needs non-negative counts with a positive total in both")
    a = np.maximum(a / a.sum(), PROPORTION_FLOOR)
    e = np.maximum(e / e.sum(), PROPORTION_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class FeatureProfile:
    """The reference distribution of one feature.

    Numeric features have ``edges``: bin ``i`` holds values ``edges[i-1] < v <= edges[i]``
    and the last bin every value above ``edges[-1]``. Categorical features have
    ``categories``, one bin each. ``anchor``: the unit vector a numeric feature's values are
    cosines with (`EMBEDDING_SIMILARITY`'s reference centroid).
    """

    name: str
    proportions: tuple[float, ...]
    count: int
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    anchor: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        bins = len(self.categories) if self.categories else len(self.edges) + 1
        if bool(self.edges) == bool(self.categories):
            raise ConfigError(f"feature {self.name!r} needs either edges or categories")
        if len(self.proportions) != bins or bins < 2:
            raise ConfigError(
                f"feature {self.name!r} has {len(self.proportions)} proportions for {bins} bins"
            )

    @property
    def num_bins(self) -> int:
        """How many bins the feature has."""
        return len(self.proportions)

    def bin_numbers(self, values: Iterable[float]) -> NDArray[np.int64]:
        """Numeric feature: the bin of each value."""
        array = np.fromiter(values, dtype=np.float64)
        return np.searchsorted(np.asarray(self.edges), array, side="left").astype(np.int64)

    def bin_categories(self, values: Iterable[str]) -> NDArray[np.int64]:
        """Categorical feature: the bin of each value; unknown categories are dropped."""
        index = {c: i for i, c in enumerate(self.categories)}
        return np.fromiter((index[v] for v in values if v in index), dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data: dict[str, Any] = {"proportions": list(self.proportions), "count": self.count}
        if self.edges:
            data["edges"] = list(self.edges)
        else:
            data["categories"] = list(self.categories)
        if self.anchor:
            data["anchor"] = list(self.anchor)
        return data

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> FeatureProfile:
        """Read the form written by `to_dict`."""
        return cls(
            name=name,
            proportions=tuple(float(p) for p in data["proportions"]),
            count=int(data["count"]),
            edges=tuple(float(e) for e in data.get("edges", ())),
            categories=tuple(str(c) for c in data.get("categories", ())),
            anchor=tuple(float(a) for a in data.get("anchor", ())),
        )

    def similarities(self, embeddings: NDArray[Any]) -> NDArray[np.float64]:
        """Cosine of each finite, non-zero row of ``embeddings`` with the ``anchor``."""
        rows = np.asarray(embeddings, dtype=np.float64).reshape(-1, len(self.anchor))
        norms = np.linalg.norm(rows, axis=1)
        usable = np.isfinite(norms) & (norms > 0)
        return np.asarray(rows[usable] @ np.asarray(self.anchor) / norms[usable])


def token_length_profile(lengths: Sequence[int], *, max_length: int) -> FeatureProfile:
    """Decile bins of the reference token lengths, plus one bin of truncated texts.

    Values at ``max_length`` (truncated) get a bin of their own, so long inputs show up as
    drift even when the reference has none.
    """
    array = np.asarray(lengths, dtype=np.float64)
    if array.size == 0:
        raise ConfigError("the drift reference set is empty; give it at least one text")
    cuts = np.unique(np.floor(np.quantile(array, _QUANTILES)))
    edges = sorted({*(float(c) for c in cuts if c < max_length - 1), float(max_length - 1)})
    counts = np.bincount(np.searchsorted(edges, array, side="left"), minlength=len(edges) + 1)
    return FeatureProfile(
        name=TOKEN_LENGTH,
        proportions=tuple(float(c) for c in counts / counts.sum()),
        count=int(array.size),
        edges=tuple(edges),
    )


def embedding_similarity_profile(embeddings: NDArray[Any]) -> FeatureProfile | None:
    """Decile bins of the reference's similarities to its centroid, or None if too few.

    None for fewer than `MIN_EMBEDDED_REFERENCE` usable rows. Pass those of distinct texts: a
    copy of a text left in the mean it is compared with reads closer, as the text itself would.
    Each reference text is compared with the centroid of the *other* texts (leave one out):
    with itself in the mean, a text of a 130-text set read ~0.03 closer than a new text of
    the same kind does, and traffic like the reference would read as drift.
    """
    rows = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    usable = (np.isfinite(norms) & (norms > 0)).reshape(-1)
    units = rows[usable] / norms[usable]
    total = units.sum(axis=0)
    if len(units) < MIN_EMBEDDED_REFERENCE or not np.linalg.norm(total) > 0:
        return None
    others = total - units
    others /= np.maximum(np.linalg.norm(others, axis=1, keepdims=True), 1e-12)
    values = np.sum(units * others, axis=1)
    edges = tuple(float(e) for e in np.unique(np.quantile(values, _QUANTILES)))
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return FeatureProfile(
        name=EMBEDDING_SIMILARITY,
        proportions=tuple(float(c) for c in counts / counts.sum()),
        count=int(values.size),
        edges=edges,
        anchor=tuple(float(a) for a in total / np.linalg.norm(total)),
    )


def label_profile(predicted: Sequence[str], labels: Sequence[str]) -> FeatureProfile:
    """The share of each class among the reference set's predicted labels."""
    if not predicted:
        raise ConfigError("the drift reference set is empty; give it at least one text")
    index = {label: i for i, label in enumerate(labels)}
    counts = np.bincount([index[p] for p in predicted], minlength=len(labels))
    return FeatureProfile(
        name=LABEL,
        proportions=tuple(float(c) for c in counts / counts.sum()),
        count=len(predicted),
        categories=tuple(labels),
    )


@dataclass(frozen=True)
class ReferenceProfile:
    """What the exporter records and the serving steps compare live traffic against."""

    features: dict[str, FeatureProfile]
    source: str
    window: int = DEFAULT_WINDOW
    min_samples: int = DEFAULT_MIN_SAMPLES
    alert_threshold: float = ALERT_THRESHOLD

    def __post_init__(self) -> None:
        if not 1 <= self.min_samples <= self.window:
            raise ConfigError(
                f"drift needs 1 <= min_samples <= window, got {self.min_samples} and {self.window}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "version": 1,
            "source": self.source,
            "window": self.window,
            "min_samples": self.min_samples,
            "alert_threshold": self.alert_threshold,
            "features": {name: f.to_dict() for name, f in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        """Read the form written by `to_dict`."""
        return cls(
            features={
                name: FeatureProfile.from_dict(name, f) for name, f in data["features"].items()
            },
            source=str(data.get("source", "")),
            window=int(data.get("window", DEFAULT_WINDOW)),
            min_samples=int(data.get("min_samples", DEFAULT_MIN_SAMPLES)),
            alert_threshold=float(data.get("alert_threshold", ALERT_THRESHOLD)),
        )

    def save(self, path: Path) -> None:
        """Write the profile as JSON."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile | None:
        """Read a profile; None when the file does not exist (an export without one)."""
        if not path.is_file():
            return None
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


@dataclass
class DriftWindow:
    """The last ``size`` observations of one feature, binned, with their running PSI."""

    profile: FeatureProfile
    size: int = DEFAULT_WINDOW
    min_samples: int = DEFAULT_MIN_SAMPLES
    _bins: deque[int] = field(init=False, repr=False)
    _counts: NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._bins = deque(maxlen=self.size)
        self._counts = np.zeros(self.profile.num_bins, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._bins)

    def add_bins(self, bins: Iterable[int]) -> None:
        """Add binned observations, dropping the oldest beyond the window size."""
        for value in bins:
            if len(self._bins) == self.size:
                self._counts[self._bins[0]] -= 1
            self._bins.append(int(value))
            self._counts[int(value)] += 1

    def add_values(self, values: Iterable[float]) -> None:
        """Numeric feature: add raw values."""
        self.add_bins(self.profile.bin_numbers(values))

    def add_categories(self, values: Iterable[str]) -> None:
        """Categorical feature: add raw categories (unknown ones are ignored)."""
        self.add_bins(self.profile.bin_categories(values))

    def score(self) -> float | None:
        """PSI of the window against the reference; None until ``min_samples`` are in."""
        if len(self._bins) < self.min_samples:
            return None
        return psi(self._counts, self.profile.proportions)
