"""Fine-tune a sequence classifier from a ``text,label`` CSV (``tritonhf train``).

Heavy libraries (torch, transformers) are imported only when training runs.
"""

from __future__ import annotations

from tritonhf.errors import DatasetError, TrainingError
from tritonhf.train.dataset import (
    LabelledTexts,
    TrainingData,
    load_training_data,
    read_labelled_csv,
)
from tritonhf.train.loop import EpochResult
from tritonhf.train.metrics import ClassMetrics, SplitMetrics, classification_metrics
from tritonhf.train.trainer import (
    ClassWeight,
    TrainingOptions,
    TrainingReport,
    train_classifier,
)

__all__ = [
    "ClassMetrics",
    "ClassWeight",
    "DatasetError",
    "EpochResult",
    "LabelledTexts",
    "SplitMetrics",
    "TrainingData",
    "TrainingError",
    "TrainingOptions",
    "TrainingReport",
    "classification_metrics",
    "load_training_data",
    "read_labelled_csv",
    "train_classifier",
]
