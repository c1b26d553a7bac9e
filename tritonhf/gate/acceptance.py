"""``tritonhf validate``: the acceptance gate run against a served ensemble.

Sends an evaluation set through the running server (the whole path a client sees: tokenizer
step, model step, ensemble, wire protocol) and compares it with the PyTorch model on the same
texts, truncated to the served max length.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tritonhf.errors import ConfigError, DatasetError
from tritonhf.gate.agreement import (
    Criterion,
    GateReport,
    Thresholds,
    classifier_gate,
    embedding_gate,
)
from tritonhf.spec import Precision, Task
from tritonhf.train.dataset import (
    decode_utf8,
    has_label_column,
    read_labelled_csv,
    read_text_column,
    text_lines,
)


@dataclass(frozen=True)
class AcceptanceOptions:
    """What ``tritonhf validate`` accepts."""

    reference: str
    """The PyTorch model to compare with: hub id, local folder, or ``default``."""
    model: str
    url: str | None = None
    protocol: str = "grpc"
    data: Path | None = None
    """A CSV with a ``text`` column, or a text file with one text per line; None: the corpus."""
    precision: Precision | None = None
    """Which thresholds apply; None: the precision the served ensemble declares."""
    overrides: dict[str, float] = field(default_factory=dict)
    """Threshold fields to replace in the precision's defaults (see `Thresholds`)."""
    limit: int | None = None
    timeout_s: float = 60.0
    allow_pickle_weights: bool = False

    def __post_init__(self) -> None:
        # Checked before any text is sent or the reference model loaded.
        if self.limit is not None and self.limit < 2:
            raise ConfigError(f"--limit must be >= 2 (the gate compares texts), got {self.limit}")
        Thresholds.for_precision(Precision.FP32).with_overrides(**self.overrides)


MIN_GATE_TEXTS = 20
"""Fewest texts an export's ``--gate-data`` may hold: on fewer, each text's 5 nearest
neighbours are most of the set and one label flip is 5 % of the agreement."""


def read_texts(path: Path | None, *, minimum: int = 2, flag: str = "--data") -> list[str]:
    """The evaluation texts: a CSV's ``text`` column, a text file's lines, or the corpus.

    A file with fewer than ``minimum`` non-empty texts is refused, naming ``flag``.
    """
    from tritonhf import data

    if path is None:
        return data.sentences()
    if path.suffix.lower() == ".tsv":
        raise DatasetError(
            f"{path}: tab-separated files are not read; pass a CSV with a 'text' column or a "
            "text file with one text per line"
        )
    if path.suffix.lower() == ".csv":
        texts = read_text_column(path)
    else:
        expected = "a CSV file or a text file, one text per line"
        texts = text_lines(decode_utf8(path, expected=expected))
    texts = [t for t in texts if t and t.strip()]
    if len(texts) < minimum:
        raise DatasetError(
            f"{flag} {path} holds {len(texts)} non-empty texts; the gate needs >= {minimum}"
        )
    return texts


def read_labelled_examples(path: Path | None) -> tuple[list[str], list[str]] | None:
    """A classifier's evaluation texts and labels from a CSV with a ``label`` column, or None.

    Read as training reads it: every row needs a text and a label.
    """
    if path is None or path.suffix.lower() != ".csv" or not has_label_column(path):
        return None
    rows = read_labelled_csv(path)
    if len(rows) < 2:
        raise DatasetError(f"--data {path} holds {len(rows)} rows; the gate needs >= 2")
    return list(rows.texts), list(rows.labels)


def check_labels_known(gold: list[str], labels: tuple[str, ...], data: Path | None) -> None:
    """Refuse data labels the model does not have: data for another model, or mislabelled."""
    unknown = sorted(set(gold) - set(labels))
    if unknown:
        raise DatasetError(
            f"--data {data}: its labels {unknown[:5]} are not the model's "
            f"({', '.join(labels)}); fix them, or leave out the label column (the gate "
            "compares with PyTorch and needs no labels)"
        )


def accuracy_on(
    gold: list[str], labels: tuple[str, ...], served: Any, reference: Any
) -> tuple[Criterion, ...]:
    """Served and PyTorch accuracy against the data's labels (informative: no bound)."""
    expected = np.array(gold, dtype=object)
    reference_labels = np.array(labels, dtype=object)[reference.argmax(axis=1)]
    return (
        Criterion("served accuracy", float((np.asarray(served) == expected).mean()), None),
        Criterion("PyTorch accuracy", float((reference_labels == expected).mean()), None),
    )


def served_precision(config: dict[str, Any]) -> Precision:
    """The precision an ensemble's config declares (exports before it was recorded: fp32)."""
    raw = config.get("parameters", {}).get("precision", {}).get("string_value")
    return Precision(raw) if raw else Precision.FP32


_KINDS = {Task.CLASSIFICATION: "a classifier", Task.EMBEDDING: "an embedding model"}


def run_acceptance(
    options: AcceptanceOptions, *, progress: Callable[[str], None] = lambda _: None
) -> GateReport:
    """Compare the served ``options.model`` with PyTorch; return the gate's report."""
    from tritonhf.client import TritonHFClient
    from tritonhf.export.head import load_head
    from tritonhf.export.onnx_export import (
        classifier_probabilities,
        feeds_token_types,
        load_encoder,
        sentence_encoder,
    )
    from tritonhf.export.source import class_names, load_fast_tokenizer, resolve_model
    from tritonhf.gate.reference import torch_outputs

    texts = read_texts(options.data)[: options.limit]
    gold: list[str] | None = None
    with TritonHFClient(
        options.url, protocol=options.protocol, model=options.model, timeout_s=options.timeout_s
    ) as client:
        config = client.model_config(options.model)
        precision = options.precision or served_precision(config)
        labels_param = config.get("parameters", {}).get("labels", {}).get("string_value")
        task = Task.CLASSIFICATION if labels_param else Task.EMBEDDING
        source = resolve_model(options.reference, allow_pickle_weights=options.allow_pickle_weights)
        if source.task is not task:
            raise ConfigError(
                f"{options.model} is {_KINDS[task]} but the reference {options.reference} is "
                f"{_KINDS[source.task]}; pass the model {options.model} was exported from"
            )
        max_length = client.token_limit(options.model)
        if task is Task.CLASSIFICATION and (labelled := read_labelled_examples(options.data)):
            texts, gold = (column[: options.limit] for column in labelled)
        progress(f"sending {len(texts)} texts to {options.model} ({task.value}, {precision.value})")
        if task is Task.CLASSIFICATION:
            labels = tuple(json.loads(labels_param))
            if gold is not None:
                check_labels_known(gold, labels, options.data)
            results = client.classify(texts)
            index = {label: i for i, label in enumerate(labels)}
            candidate = np.zeros((len(texts), len(labels)), dtype=np.float32)
            for row, result in enumerate(results):
                for label, probability in result.top:
                    candidate[row, index[label]] = probability
            served_labels = np.array([r.label for r in results], dtype=object)
        else:
            candidate = client.embed(texts)

    progress(f"computing PyTorch reference outputs with {options.reference}")
    model = load_encoder(source, allow_pickle_weights=options.allow_pickle_weights, task=task)
    tokenizer = load_fast_tokenizer(source)
    token_types = feeds_token_types(tokenizer)
    thresholds = Thresholds.for_precision(precision).with_overrides(**options.overrides)
    subject = f"served {options.model} vs PyTorch {options.reference}"
    if task is Task.CLASSIFICATION:
        reference_labels = class_names(model)
        if reference_labels != labels:
            raise DatasetError(
                f"{options.model} serves labels {list(labels)} but {options.reference} has "
                f"{list(reference_labels)}: is this the model it was exported from?"
            )
        reference = torch_outputs(
            classifier_probabilities(model, token_types=token_types),
            tokenizer,
            texts,
            max_length=max_length,
        )
        report = classifier_gate(
            candidate,
            reference,
            thresholds=thresholds,
            precision=precision,
            subject=subject,
            candidate_labels=served_labels,
            labels=labels,
        )
        if gold is None:
            return report
        extra = accuracy_on(gold, labels, served_labels, reference)
        return replace(report, criteria=report.criteria + extra)
    layers = load_head(source.head, allow_pickle_weights=options.allow_pickle_weights)
    reference = torch_outputs(
        sentence_encoder(model, source.head, layers, token_types=token_types),
        tokenizer,
        texts,
        max_length=max_length,
    )
    return embedding_gate(
        candidate, reference, thresholds=thresholds, precision=precision, subject=subject
    )
