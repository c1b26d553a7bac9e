"""Build the drift reference profile at export time, from a reference set of texts.

Token lengths come from the model's own tokenizer (truncated like the serving step does);
a classifier's label distribution and an embedder's similarities to its centroid from the
model the export serves, run in-process: the exported ONNX graph for the ONNX runtimes, the
PyTorch model for python-torch. Either way the reference is what the served model would have
answered.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from numpy.typing import NDArray

from tritonhf.errors import ConfigError, DatasetError, ExportError
from tritonhf.observability.drift import (
    DEFAULT_MIN_SAMPLES,
    DEFAULT_WINDOW,
    MAX_EMBEDDED_REFERENCE,
    MIN_EMBEDDED_REFERENCE,
    FeatureProfile,
    ReferenceProfile,
    embedding_similarity_profile,
    label_profile,
    token_length_profile,
)

PACKAGE_CORPUS = "tritonhf/data/sentences.txt"

Outputs = Callable[[Sequence[str]], NDArray[Any]]
"""Texts -> the served model's output (class probabilities, embeddings), one row per text."""


class ReferenceTexts(NamedTuple):
    """The reference set and a description of where it came from."""

    texts: list[str]
    source: str


MAX_REFERENCE_BYTES = 64 << 20
"""The largest reference file read: tokenizing it is part of every export."""


def read_reference_texts(path: Path | None) -> ReferenceTexts:
    """The reference texts and where they came from.

    Read as ``--gate-data`` reads its texts (`tritonhf.gate.acceptance.read_texts`): a CSV's
    ``text`` column, else one text per non-blank line; a byte-order mark is dropped.
    ``None`` means the package corpus (`tritonhf.data.sentences`).
    """
    if path is None:
        from tritonhf import data

        return ReferenceTexts(data.sentences(), PACKAGE_CORPUS)
    _check_size(path)
    texts = _read_texts(path)
    if any("\x00" in text for text in texts):
        raise ConfigError(f"the drift reference set {path} holds NUL bytes: it is not text")
    if not texts:
        raise ConfigError(
            f"the drift reference set {path} has no non-blank text; pass a text file with one "
            "text per line or a CSV with a 'text' column"
        )
    return ReferenceTexts(texts, str(path))


def default_reference_note(model_folder: Path) -> str:
    """What an export without ``--drift-reference`` says: its drift reference is the corpus.

    A folder `tritonhf train` wrote records its training CSV in ``metrics.json``; that file,
    where it still exists, is named as the reference to pass.
    """
    import json

    note = (
        f"note: drift is scored against the package corpus ({PACKAGE_CORPUS}, general "
        "sentences), so in-domain traffic unlike it reads as drift"
    )
    try:
        options = json.loads((model_folder / "metrics.json").read_text(encoding="utf-8"))["options"]
        trained_on: Path | None = Path(str(options["data"]))
    except (OSError, ValueError, KeyError, TypeError):
        trained_on = None
    if trained_on is None or not trained_on.is_file():
        return f"{note}: pass --drift-reference with texts like your traffic"
    return f"{note}: this model was trained on {trained_on}; pass --drift-reference {trained_on}"


def _check_size(path: Path) -> None:
    """Refuse a missing reference file, or one too large to tokenize at every export."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read the drift reference set {path}: {exc}") from exc
    if size > MAX_REFERENCE_BYTES:
        raise ConfigError(
            f"the drift reference set {path} is {size:,} bytes, over the "
            f"{MAX_REFERENCE_BYTES:,} a reference profile reads; pass a sample of it "
            "(e.g. `shuf -n 20000 FILE`, keeping a CSV's header line)"
        )


def _read_texts(path: Path) -> list[str]:
    """The file's non-empty texts, through the reader ``--gate-data`` uses."""
    from tritonhf.gate.acceptance import read_texts

    try:
        # minimum=0: emptiness is refused by the caller, in words about the drift reference.
        return read_texts(path, minimum=0, flag="--drift-reference")
    except DatasetError as exc:
        raise ConfigError(f"--drift-reference {exc}") from exc


@dataclass(frozen=True)
class Classifier:
    """A classifier's labels (output order) and a function computing its probabilities."""

    labels: tuple[str, ...]
    probabilities: Outputs

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The label ranked first for each text (the ``LABEL`` the served model returns)."""
        scores = self.probabilities(texts)
        if scores.shape != (len(texts), len(self.labels)):
            raise ExportError(
                f"the classifier returned probabilities of shape {scores.shape} for "
                f"{len(texts)} texts and {len(self.labels)} labels"
            )
        return [self.labels[i] for i in scores.argmax(axis=1)]


def onnx_outputs_of(
    onnx_path: Path, tokenizer: Any, *, output: str, max_length: int, texts_alone: bool = False
) -> Outputs:
    """``output`` of an exported graph (``PROBABILITIES``, ``EMBEDDING``) on ONNX Runtime's CPU.

    ``texts_alone``: one text per call, as the served int8 step runs them.
    """
    from tritonhf.gate.reference import BATCH_SIZE, onnx_outputs

    def run(texts: Sequence[str]) -> NDArray[Any]:
        values, _ = onnx_outputs(
            onnx_path,
            tokenizer,
            texts,
            max_length=max_length,
            output=output,
            batch_size=1 if texts_alone else BATCH_SIZE,
        )
        return values

    return run


def torch_outputs_of(encoder: Any, tokenizer: Any, *, max_length: int) -> Outputs:
    """The output of a wrapped PyTorch model (`classifier_probabilities`, `sentence_encoder`)."""
    from tritonhf.gate.reference import torch_outputs

    def run(texts: Sequence[str]) -> NDArray[Any]:
        return torch_outputs(encoder, tokenizer, texts, max_length=max_length)

    return run


def build_reference_profile(
    *,
    texts: Sequence[str],
    source: str,
    tokenizer: Any,
    max_length: int,
    classifier: Classifier | None = None,
    embedder: Outputs | None = None,
    window: int = DEFAULT_WINDOW,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> ReferenceProfile:
    """Token lengths for every model, plus a ``classifier``'s labels or an ``embedder``'s cosines.

    The embedder runs on the distinct texts, at most `MAX_EMBEDDED_REFERENCE` of them (a fixed
    sample); with fewer than `MIN_EMBEDDED_REFERENCE` the profile has no similarity feature.
    """
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    features: dict[str, FeatureProfile] = {}
    lengths = [len(ids) for ids in encoded]
    token_profile = token_length_profile(lengths, max_length=max_length)
    features[token_profile.name] = token_profile
    if classifier is not None:
        label_feature = label_profile(classifier.predict(texts), classifier.labels)
        features[label_feature.name] = label_feature
    if embedder is not None:
        sample = list(dict.fromkeys(texts))  # distinct: a training CSV repeats texts
        if len(sample) > MAX_EMBEDDED_REFERENCE:  # fixed: the same export, the same profile
            sample = random.Random(0).sample(sample, MAX_EMBEDDED_REFERENCE)  # noqa: S311  # nosec B311
        similarity = (
            embedding_similarity_profile(embedder(sample))
            if len(sample) >= MIN_EMBEDDED_REFERENCE
            else None
        )
        if similarity is not None:
            features[similarity.name] = similarity
    return ReferenceProfile(
        features=features, source=source, window=window, min_samples=min_samples
    )
