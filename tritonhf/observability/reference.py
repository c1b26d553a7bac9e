"""Build the drift reference profile at export time, from a reference set of texts.

Token lengths come from the model's own tokenizer (truncated like the serving step does);
a classifier's label distribution from the exported ONNX graph itself, so the reference is
what the served model would have predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tritonhf.errors import ConfigError
from tritonhf.observability.drift import (
    DEFAULT_MIN_SAMPLES,
    DEFAULT_WINDOW,
    FeatureProfile,
    ReferenceProfile,
    label_profile,
    token_length_profile,
)
from tritonhf.spec import PROBABILITIES

PACKAGE_CORPUS = "tritonhf/data/sentences.txt"


def read_reference_texts(path: Path | None) -> tuple[list[str], str]:
    """The reference texts (one per non-blank line) and a description of where they came from.

    ``None`` means the package corpus (`tritonhf.data.sentences`).
    """
    if path is None:
        from tritonhf import data

        return data.sentences(), PACKAGE_CORPUS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the drift reference set {path}: {exc}") from exc
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise ConfigError(f"the drift reference set {path} has no non-blank line")
    return texts, str(path)


def predicted_labels(
    onnx_path: Path, tokenizer: Any, texts: Sequence[str], *, max_length: int, batch_size: int = 32
) -> list[str]:
    """The ``LABEL`` the exported classifier graph predicts for each text."""
    from tritonhf.gate.reference import onnx_outputs

    _, labels = onnx_outputs(
        onnx_path,
        tokenizer,
        texts,
        max_length=max_length,
        output=PROBABILITIES,
        with_labels=True,
        batch_size=batch_size,
    )
    return [
        item.decode("utf-8") if isinstance(item, bytes) else str(item)
        for item in (labels if labels is not None else [])
    ]


def build_reference_profile(
    *,
    texts: Sequence[str],
    source: str,
    tokenizer: Any,
    max_length: int,
    onnx_path: Path | None = None,
    labels: Sequence[str] = (),
    window: int = DEFAULT_WINDOW,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> ReferenceProfile:
    """Token-length profile for every model, plus the label profile for a classifier."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    features: dict[str, FeatureProfile] = {}
    lengths = [len(ids) for ids in encoded]
    token_profile = token_length_profile(lengths, max_length=max_length)
    features[token_profile.name] = token_profile
    if labels and onnx_path is not None:
        predicted = predicted_labels(onnx_path, tokenizer, texts, max_length=max_length)
        label_feature = label_profile(predicted, labels)
        features[label_feature.name] = label_feature
    return ReferenceProfile(
        features=features, source=source, window=window, min_samples=min_samples
    )
