"""The repository contract: tensor names, dtypes and dims of every step.

This module is the single source of truth read by the exporter, the config writer, the
Python-backend steps (through config parameters), the client and the tests. It is pure
data: no heavy imports.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from tritonhf.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DataType",
    "Layout",
    "PipelineSpec",
    "Precision",
    "Runtime",
    "Task",
    "TensorSpec",
]

DEFAULT_MODEL_NAME = "minilm"

# Ensemble-level tensor names (what clients send and receive).
TEXT = "TEXT"
EMBEDDING = "EMBEDDING"
NUM_TOKENS = "NUM_TOKENS"
TRUNCATED = "TRUNCATED"
LABEL = "LABEL"
SCORE = "SCORE"
PROBABILITIES = "PROBABILITIES"
# Tokenizer -> model tensor names; they are also the ONNX graph's input names.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
# The feedback model's tensors (`PipelineSpec.feedback_name`).
REQUEST_ID = "REQUEST_ID"
POSITIVE = "POSITIVE"
CORRECTED_LABEL = "CORRECTED_LABEL"
ACCEPTED = "ACCEPTED"

DRIFT_PARAMETER = "tritonhf_drift"
"""A request parameter: ``false`` leaves the request's texts out of the steps' drift windows
(traffic that is not the users': the demo indexing its corpus, warm-up). Triton forwards an
ensemble request's parameters to its steps."""

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def shown_label(label: str) -> str:
    """A label as printed in a list: as is, or quoted (``repr``) where it could be misread.

    Quoted: an empty label, one with a comma (``other, misc`` is one label, not two), control
    characters (a newline would break a table row) or spaces at either end.
    """
    plain = label and label.isprintable() and "," not in label and label == label.strip()
    return label if plain else repr(label)


def look_alike_labels(labels: Iterable[str]) -> list[tuple[str, ...]]:
    """Groups of labels a reader cannot tell apart ("Positive", "positive "; "café" twice).

    Equal but for case, spaces at either end or Unicode form (composed or not, fullwidth). They
    are still distinct classes, with distinct metric labels and feedback corrections.
    """
    groups: dict[str, list[str]] = {}
    for label in labels:
        key = unicodedata.normalize("NFKC", label).strip().casefold()
        groups.setdefault(key, []).append(label)
    return [tuple(group) for group in groups.values() if len(group) > 1]


def look_alike_warning(group: tuple[str, ...]) -> str:
    """Says that the labels of one `look_alike_labels` group look alike."""
    names = ", ".join(repr(label) for label in group)
    return f"labels {names} look alike (they differ only in case, spaces or Unicode form)"


def columns(text: str) -> int:
    """Terminal columns ``text`` takes: wide (CJK, emoji) characters 2, combining marks 0."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def left_aligned(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (see `columns`)."""
    return text + " " * max(0, width - columns(text))


def right_aligned(text: str, width: int) -> str:
    """``text`` padded on the left to ``width`` terminal columns (see `columns`)."""
    return " " * max(0, width - columns(text)) + text


class Task(str, Enum):
    """What the served model computes."""

    EMBEDDING = "embedding"
    CLASSIFICATION = "classification"


class Runtime(str, Enum):
    """How the model step runs inside Triton."""

    ONNXRUNTIME = "onnxruntime"
    """Triton's native onnxruntime backend (NGC container, GPU boxes)."""
    PYTHON_ONNX = "python-onnx"
    """The same ONNX file run by the `onnxruntime` package in the Python backend (CPU, laptops)."""
    TENSORRT = "tensorrt"
    """A TensorRT plan built from the ONNX graph (``platform: tensorrt_plan``; GPU boxes)."""
    PYTHON_TORCH = "python-torch"
    """The HuggingFace model run by PyTorch in the Python backend (any architecture; GPU or
    CPU): for models that do not export, and the same-server baseline."""


class Layout(str, Enum):
    """How the ensemble's work is split into Triton models."""

    SPLIT = "split"
    """A tokenizer step feeds the model step (every runtime; the tokenizer scales apart)."""
    MERGED = "merged"
    """The model step tokenizes too: one Python-backend hop fewer (Python runtimes only)."""


PYTHON_RUNTIMES = frozenset({Runtime.PYTHON_ONNX, Runtime.PYTHON_TORCH})


class Precision(str, Enum):
    """Numeric precision of the served model; each variant must pass the acceptance gate."""

    FP32 = "fp32"
    FP16 = "fp16"
    """For GPUs (CUDA onnxruntime, TensorRT, torch on CUDA)."""
    INT8 = "int8"
    """ONNX Runtime dynamic quantization (int8 weights, per channel) for CPUs."""

    @property
    def runs_texts_alone(self) -> bool:
        """Served (and judged) one text per call, not in batches.

        Dynamic int8 scales a call's activations by the whole call's range, so a text batched
        with others would not get its own output.
        """
        return self is Precision.INT8


class DataType(str, Enum):
    """Tensor element types, named as Triton's config names them."""

    BYTES = "TYPE_STRING"
    INT32 = "TYPE_INT32"
    INT64 = "TYPE_INT64"
    FP32 = "TYPE_FP32"
    FP16 = "TYPE_FP16"
    BOOL = "TYPE_BOOL"

    @property
    def numpy_name(self) -> str:
        """The numpy dtype name (``object`` for strings)."""
        return _NUMPY_NAMES[self]

    @property
    def wire_name(self) -> str:
        """The KServe v2 protocol name (``BYTES``, ``INT64``, ...)."""
        return self.value.removeprefix("TYPE_").replace("STRING", "BYTES")


_NUMPY_NAMES = {
    DataType.BYTES: "object",
    DataType.INT32: "int32",
    DataType.INT64: "int64",
    DataType.FP32: "float32",
    DataType.FP16: "float16",
    DataType.BOOL: "bool",
}


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor; ``dims`` exclude the batch dimension, ``-1`` is variable."""

    name: str
    dtype: DataType
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.dims or any(d == 0 or d < -1 for d in self.dims):
            raise ConfigError(
                f"tensor {self.name!r} has dims {self.dims}; use positive sizes or -1 (variable)"
            )


@dataclass(frozen=True)
class PipelineSpec:
    """Everything that fixes the shape of one served model's ensemble and its steps."""

    name: str = DEFAULT_MODEL_NAME
    task: Task = Task.EMBEDDING
    runtime: Runtime = Runtime.PYTHON_ONNX
    embedding_size: int = 384
    """Width of EMBEDDING: the transformer's hidden size, or the last Dense module's output."""
    normalized: bool = True
    """Embeddings have L2 norm 1 (the model's head ends with Normalize); the step checks it."""
    max_length: int = 256
    max_batch_size: int = 64
    labels: tuple[str, ...] = ()
    """Class names in output order (``id2label``); classification only."""
    precision: Precision = Precision.FP32
    layout: Layout = Layout.SPLIT

    def __post_init__(self) -> None:
        if self.layout is Layout.MERGED and self.runtime not in PYTHON_RUNTIMES:
            raise ConfigError(
                f"the merged layout needs a Python-backend runtime (python-onnx, python-torch), "
                f"not {self.runtime.value}: a native backend cannot tokenize; use --layout split"
            )
        if self.task is Task.CLASSIFICATION and len(self.labels) < 2:
            raise ConfigError(
                f"a classifier needs at least 2 labels (id2label), got {list(self.labels)}"
            )
        if self.task is Task.EMBEDDING and self.labels:
            raise ConfigError(f"an embedding model has no labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels must be distinct, got {list(self.labels)}")
        if any(not label for label in self.labels):
            raise ConfigError(
                f"labels may not be empty (an empty corrected label means no correction), "
                f"got {list(self.labels)}; rename them in the model's id2label"
            )
        if any("\x00" in label for label in self.labels):
            raise ConfigError(
                f"labels may not contain NUL characters (metric labels would be cut at them), "
                f"got {list(self.labels)}; rename them in the model's id2label"
            )
        if not _NAME_PATTERN.fullmatch(self.name):
            raise ConfigError(
                f"model name {self.name!r} is not usable as a Triton model directory; "
                "use at most 128 letters, digits, '_', '-' or '.', starting with a letter or "
                "digit"
            )
        for field, value, low in (
            ("embedding_size", self.embedding_size, 1),
            ("max_length", self.max_length, 2),
            ("max_batch_size", self.max_batch_size, 1),
        ):
            if value < low:
                raise ConfigError(f"{field} must be >= {low}, got {value}")

    @property
    def tokenizer_name(self) -> str:
        """Name of the tokenizer step (Python backend)."""
        return f"{self.name}_tokenizer"

    @property
    def model_name(self) -> str:
        """Name of the model step (ONNX graph)."""
        return f"{self.name}_model"

    @property
    def ensemble_inputs(self) -> tuple[TensorSpec, ...]:
        """What a client sends."""
        return (TensorSpec(TEXT, DataType.BYTES, (1,)),)

    @property
    def ensemble_outputs(self) -> tuple[TensorSpec, ...]:
        """What a client receives."""
        return (*self.model_outputs, *self.text_stats)

    @property
    def token_tensors(self) -> tuple[TensorSpec, ...]:
        """Tokenizer outputs that feed the model step (also the ONNX graph's inputs)."""
        return (
            TensorSpec(INPUT_IDS, DataType.INT64, (-1,)),
            TensorSpec(ATTENTION_MASK, DataType.INT64, (-1,)),
        )

    @property
    def text_stats(self) -> tuple[TensorSpec, ...]:
        """Per-text facts from the tokenizer that the ensemble passes to the client.

        ``NUM_TOKENS`` counts tokens after truncation; ``TRUNCATED`` is true for a text cut to
        ``max_length``.
        """
        return (
            TensorSpec(NUM_TOKENS, DataType.INT32, (1,)),
            TensorSpec(TRUNCATED, DataType.BOOL, (1,)),
        )

    @property
    def model_step_inputs(self) -> tuple[TensorSpec, ...]:
        """What the model step takes: token tensors, or the text itself when merged."""
        return self.ensemble_inputs if self.layout is Layout.MERGED else self.token_tensors

    @property
    def model_step_outputs(self) -> tuple[TensorSpec, ...]:
        """What the model step returns: the graph's outputs, plus the text stats when merged."""
        if self.layout is Layout.MERGED:
            return self.ensemble_outputs
        return self.model_outputs

    @property
    def tokenizer_outputs(self) -> tuple[TensorSpec, ...]:
        """Everything the tokenizer step produces."""
        return (*self.token_tensors, *self.text_stats)

    @property
    def feedback_name(self) -> str:
        """Name of the feedback model (Python backend): user ratings of a request."""
        return f"{self.name}_feedback"

    @property
    def feedback_inputs(self) -> tuple[TensorSpec, ...]:
        """What a client sends as feedback; ``CORRECTED_LABEL`` is optional."""
        return (
            TensorSpec(REQUEST_ID, DataType.BYTES, (1,)),
            TensorSpec(POSITIVE, DataType.BOOL, (1,)),
            TensorSpec(CORRECTED_LABEL, DataType.BYTES, (1,)),
        )

    @property
    def feedback_outputs(self) -> tuple[TensorSpec, ...]:
        """The feedback model's answer: ``ACCEPTED`` once it is counted and logged."""
        return (TensorSpec(ACCEPTED, DataType.BOOL, (1,)),)

    @property
    def model_outputs(self) -> tuple[TensorSpec, ...]:
        """What the model step's graph produces.

        Embeddings: the model's sentence head (pooling, Dense, Normalize) runs in the graph.
        Classification: probabilities (softmax; sigmoid for multi-label), the top
        label (an ``ai.onnx.ml.LabelEncoder`` maps its index to the class name) and its score,
        all in the graph, so no postprocess step is needed.
        """
        if self.task is Task.CLASSIFICATION:
            return (
                TensorSpec(LABEL, DataType.BYTES, (1,)),
                TensorSpec(SCORE, DataType.FP32, (1,)),
                TensorSpec(PROBABILITIES, DataType.FP32, (len(self.labels),)),
            )
        return (TensorSpec(EMBEDDING, DataType.FP32, (self.embedding_size,)),)
