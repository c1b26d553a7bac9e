"""The training job: read the CSVs, fine-tune a sequence classifier, report, save a HF folder."""

from __future__ import annotations

import inspect
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from tritonhf.errors import ConfigError, TrainingError
from tritonhf.export.limits import longest_runnable_length
from tritonhf.export.source import DEFAULT_MODEL, quiet_transformers, resolve_model
from tritonhf.folders import check_output_folder
from tritonhf.spec import look_alike_labels, look_alike_warning, shown_label
from tritonhf.train.dataset import TrainingData, load_training_data
from tritonhf.train.engines import (
    CachedEngine,
    Engine,
    FullEngine,
    build_cached_engine,
    head_modules,
    tokenize,
)
from tritonhf.train.loop import EpochResult, fit, predict
from tritonhf.train.metrics import SplitMetrics, classification_metrics

DEFAULT_EPOCHS = 3
DEFAULT_TOP_LAYERS = 2
"""Top encoder layers trained with the head by default (see `TrainingOptions.top_layers`)."""
HEAD_LEARNING_RATE = 2e-4
FULL_LEARNING_RATE = 5e-5
METRICS_FILE = "metrics.json"
IMBALANCE_WARNING = 4.0
"""Warn when the largest class has this many times the rows of the smallest (unweighted)."""


class ClassWeight(str, Enum):
    """How much each class's examples count in the training loss."""

    NONE = "none"
    """Every example counts once: a rare class can end up never predicted."""
    BALANCED = "balanced"
    """Each class counts as much as any other: examples weigh ``rows / (classes * rows of
    their class)``, scikit-learn's ``class_weight="balanced"``."""


def class_weights(counts: Sequence[int]) -> list[float]:
    """The balanced weight of each class, from its rows in the training split (every one > 0)."""
    return [sum(counts) / (len(counts) * count) for count in counts]


@dataclass(frozen=True)
class TrainingOptions:
    """Everything ``tritonhf train`` accepts."""

    data: Path
    """Training CSV with columns ``text,label``."""
    out: Path
    """Folder for the trained model (a normal HuggingFace folder plus ``metrics.json``)."""
    base: str = DEFAULT_MODEL
    """Hub id, local folder, or ``default`` (the offline all-MiniLM-L6-v2)."""
    eval_data: Path | None = None
    """Held-out CSV, evaluated after every epoch and in the report."""
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 16
    learning_rate: float | None = None
    """AdamW's peak rate, decayed linearly to 0; default 2e-4 in head mode, 5e-5 for a full
    fine-tune."""
    seed: int = 0
    full_finetune: bool = False
    """Train every parameter, not just the head and the top layers."""
    top_layers: int = DEFAULT_TOP_LAYERS
    """Head mode trains the classification head (with BERT's pooler) and this many top encoder
    layers; 0 trains the head alone. The frozen layers below run once per text."""
    max_length: int = 128
    """Token limit per text; longer texts are truncated."""
    class_weight: ClassWeight = ClassWeight.NONE
    """Weigh the loss so rare classes count as much as common ones (`ClassWeight.BALANCED`)."""
    overwrite: bool = False
    """Replace ``out`` if it holds an earlier training output."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be in 0 .. 2**32 - 1, got {self.seed}")
        if not isinstance(self.class_weight, ClassWeight):
            choices = ", ".join(c.value for c in ClassWeight)
            raise ConfigError(f"class_weight must be one of {choices}, got {self.class_weight!r}")
        if self.top_layers < 0:
            raise ConfigError(f"top_layers must be >= 0 (0: head only), got {self.top_layers}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ConfigError(
                f"learning_rate must be between 0 and 1 (e.g. 2e-4), got {self.learning_rate}"
            )

    @property
    def resolved_learning_rate(self) -> float:
        """The learning rate used: the given one, else the default for the mode."""
        if self.learning_rate is not None:
            return self.learning_rate
        return FULL_LEARNING_RATE if self.full_finetune else HEAD_LEARNING_RATE

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: paths absolute (readable from anywhere), the learning rate resolved."""
        values = asdict(self)
        values["learning_rate"] = self.resolved_learning_rate
        values["class_weight"] = self.class_weight.value
        return {k: str(v.absolute()) if isinstance(v, Path) else v for k, v in values.items()}


@dataclass(frozen=True)
class TrainingReport:
    """What a training run did and measured; also saved as ``metrics.json``."""

    base: str
    base_path: Path
    out: Path
    labels: tuple[str, ...]
    method: str
    options: TrainingOptions
    epochs: tuple[EpochResult, ...]
    splits: tuple[SplitMetrics, ...]
    """``train``, then ``eval`` when an evaluation CSV was given."""
    seconds: float

    def split(self, name: str) -> SplitMetrics | None:
        """The metrics of split ``name`` (``train`` or ``eval``), if it was evaluated."""
        return next((s for s in self.splits if s.split == name), None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "base": self.base,
            "base_path": str(self.base_path),
            "labels": list(self.labels),
            "method": self.method,
            "options": self.options.as_dict(),
            "epochs": [asdict(e) for e in self.epochs],
            "splits": {s.split: s.as_dict() for s in self.splits},
            "seconds": self.seconds,
        }

    def table(self) -> str:
        """Accuracy and macro F1 per split, then per-class figures and confusion matrices."""
        lines = [
            f"{self.method}; base {self.base}; labels {', '.join(map(shown_label, self.labels))}; "
            f"{self.seconds:.1f} s",
            "",
            f"{'split':<10}{'examples':>10}{'accuracy':>10}{'macro F1':>10}",
        ]
        lines += [
            f"{s.split:<10}{s.examples:>10d}{s.accuracy:>10.3f}{s.macro_f1:>10.3f}"
            for s in self.splits
        ]
        for split in self.splits:
            lines += ["", split.table()]
        return "\n".join(lines)


@contextmanager
def _reproducible(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch; deterministic torch kernels, restored afterwards."""
    import random

    import numpy as np
    import torch

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # warn_only: an op without a deterministic kernel warns instead of failing the run.
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _check_out(out: Path, *, overwrite: bool) -> None:
    check_output_folder(out, flag="--out")  # found at the end of the training, else
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"output folder {out} exists and is not empty; choose another folder, or "
                "overwrite an earlier training output with --overwrite"
            )
        if not (out / METRICS_FILE).is_file():
            raise ConfigError(
                f"refusing to overwrite {out}: it has no {METRICS_FILE}, so it is not a "
                "`tritonhf train` output; choose another folder"
            )


def _load(base_path: Path, data: TrainingData, max_length: int) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        # base_path is a local folder from resolve_model (which pins hub downloads).
        tokenizer = AutoTokenizer.from_pretrained(  # nosec B615
            base_path, trust_remote_code=False
        )
        model = AutoModelForSequenceClassification.from_pretrained(  # nosec B615
            base_path,
            num_labels=len(data.labels),
            id2label=dict(enumerate(data.labels)),
            label2id={label: i for i, label in enumerate(data.labels)},
            use_safetensors=True,
            trust_remote_code=False,
            attn_implementation="eager",
            ignore_mismatched_sizes=True,  # a base that is already a classifier gets a new head
        )
    except (OSError, ValueError) as exc:
        raise TrainingError(
            f"could not load {base_path} as a sequence classifier with safetensors weights: {exc}"
        ) from exc
    if not tokenizer.is_fast:
        raise TrainingError(
            f"{base_path} has no fast tokenizer (tokenizer.json); the serving step needs one"
        )
    positions = int(getattr(model.config, "max_position_embeddings", max_length))
    if max_length > positions:
        raise ConfigError(
            f"max_length {max_length} exceeds the model's {positions} positions; "
            f"use at most {positions}"
        )

    # RoBERTa-family tables count positions from padding_idx + 1: 514 in the config, 512 usable.
    def classify(ids: Any, mask: Any) -> Any:
        return model(input_ids=ids, attention_mask=mask)

    usable = longest_runnable_length(classify, tokenizer, max_length)
    if usable < max_length:
        raise ConfigError(
            f"max_length {max_length} does not run on {base_path}: its position table covers "
            f"{usable} tokens; use at most {usable}"
        )
    model.config.problem_type = "single_label_classification"
    return model, tokenizer


def _engine(
    options: TrainingOptions,
    model: Any,
    inputs: dict[str, list[dict[str, Any]]],
    pad_id: int,
    progress: Callable[[str], None],
) -> Engine:
    if options.full_finetune:
        return FullEngine(model=model, inputs=inputs, pad_id=pad_id, trainable=None)
    trainable = head_modules(model, options.top_layers)
    rows = sum(len(split) for split in inputs.values())
    progress(f"running the frozen layers once over {rows} texts")
    engine = build_cached_engine(
        model=model, top_layers=options.top_layers, inputs=inputs, pad_id=pad_id
    )
    if isinstance(engine, CachedEngine):
        return engine
    return FullEngine(model=model, inputs=inputs, pad_id=pad_id, trainable=trainable, reason=engine)


def _sibling(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.{kind}-{uuid.uuid4().hex[:12]}"


def _publish(built: Path, out: Path) -> None:
    """Move the finished folder into place; an earlier output is replaced only at the end."""
    if out.exists():
        old = _sibling(out, "old")
        out.rename(old)
        built.rename(out)
        shutil.rmtree(old)
    else:
        built.rename(out)


def train_classifier(
    options: TrainingOptions, *, progress: Callable[[str], None] = lambda _: None
) -> TrainingReport:
    """Fine-tune ``options.base`` on ``options.data`` and save it to ``options.out``.

    The output is a HuggingFace folder (``model.safetensors``, a config with ``id2label`` /
    ``label2id``, the fast tokenizer with ``model_max_length`` set to ``options.max_length``)
    plus ``metrics.json``; the same seed gives the same
    weights and metrics. Raises `DatasetError` for unusable CSVs, `ConfigError` for bad
    options, `TrainingError` when the model cannot be loaded or trained.
    """
    started = time.perf_counter()
    out = Path(options.out).expanduser()
    _check_out(out, overwrite=options.overwrite)
    data = load_training_data(train=options.data, eval_data=options.eval_data)
    splits = {"train": data.train} | ({"eval": data.eval} if data.eval is not None else {})
    counts = "; ".join(
        f"{name} {len(rows)} rows "
        f"({', '.join(f'{shown_label(k)} {v}' for k, v in rows.label_counts().items())})"
        for name, rows in splits.items()
    )
    progress(f"data: {counts}")
    # In label id order: every label has training rows (the evaluation split adds none).
    train_counts = list(data.train.label_counts().values())
    imbalance = max(train_counts) / min(train_counts)
    if options.class_weight is ClassWeight.NONE and imbalance >= IMBALANCE_WARNING:
        progress(
            f"warning: the largest class has {imbalance:.1f}x the training rows of the smallest; "
            "rare classes may never be predicted: class weight 'balanced' "
            "(--class-weight balanced) makes them count as much as common ones"
        )
    for group in look_alike_labels(data.labels):
        progress(f"warning: {look_alike_warning(group)}; they train as separate classes")
    for group in data.labels_of_one_number():
        names = ", ".join(repr(label) for label in group)
        progress(f"warning: labels {names} are one number; they train as separate classes")
    if torn := data.texts_with_several_labels():
        progress(f"warning: {torn} training text(s) appear under more than one label")
    if repeated := data.eval_texts_seen_in_train():
        progress(f"warning: {repeated} evaluation text(s) also occur in the training data")
    source = resolve_model(options.base)
    progress(f"loading {source.path} as a classifier of {', '.join(map(shown_label, data.labels))}")
    with _reproducible(options.seed), quiet_transformers():
        model, tokenizer = _load(source.path, data, options.max_length)
        pad_id = int(tokenizer.pad_token_id or 0)
        accepted = set(inspect.signature(model.forward).parameters)
        inputs = {
            name: tokenize(tokenizer, rows.texts, max_length=options.max_length, accepted=accepted)
            for name, rows in splits.items()
        }
        engine = _engine(options, model, inputs, pad_id, progress)
        trainable = {id(p) for p in engine.parameters()}
        for parameter in model.parameters():
            parameter.requires_grad_(id(parameter) in trainable)
        labels = {name: data.label_ids(rows) for name, rows in splits.items()}
        weights = None
        weighting = ""
        if options.class_weight is ClassWeight.BALANCED:
            weights = class_weights(train_counts)
            shown = ", ".join(
                f"{shown_label(label)} {weight:.2f}"
                for label, weight in zip(data.labels, weights, strict=True)
            )
            weighting = f", class weights {shown}"
        progress(
            f"training {engine.description}: {options.epochs} epoch(s), batch "
            f"{options.batch_size}, learning rate {options.resolved_learning_rate:g}, "
            f"seed {options.seed}{weighting}"
        )
        lengths = [int(row["input_ids"].shape[0]) for row in inputs["train"]]
        history = fit(
            engine,
            labels=labels,
            lengths=lengths,
            epochs=options.epochs,
            batch_size=options.batch_size,
            learning_rate=options.resolved_learning_rate,
            seed=options.seed,
            progress=progress,
            class_weights=weights,
        )
        metrics = tuple(
            classification_metrics(
                split=name,
                labels=data.labels,
                true_ids=labels[name],
                predicted_ids=predict(engine, split=name, size=len(rows)),
            )
            for name, rows in splits.items()
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        built = _sibling(out, "partial")
        built.mkdir()
        try:
            model.save_pretrained(built, safe_serialization=True)
            # Serving then truncates where training did (`tritonhf export` reads this).
            tokenizer.model_max_length = options.max_length
            tokenizer.save_pretrained(built)
            report = TrainingReport(
                base=options.base,
                base_path=source.path,
                out=out,
                labels=data.labels,
                method=engine.description,
                options=options,
                epochs=tuple(history),
                splits=metrics,
                seconds=time.perf_counter() - started,
            )
            (built / METRICS_FILE).write_text(
                json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8"
            )
            # transformers writes the weights 0600; give every file the mode our own got.
            mode = (built / METRICS_FILE).stat().st_mode & 0o777
            for path in built.iterdir():
                path.chmod(mode)
            _publish(built, out)
        except OSError as exc:  # a full disk, a folder made read-only meanwhile
            shutil.rmtree(built, ignore_errors=True)
            raise TrainingError(
                f"could not save the classifier to {out}: {exc.strerror or exc} "
                f"({exc.filename or out})"
            ) from exc
        except BaseException:
            shutil.rmtree(built, ignore_errors=True)
            raise
    progress(f"saved the classifier to {out}")
    return report
