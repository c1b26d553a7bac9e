"""Reference and candidate outputs computed in-process: PyTorch, and ONNX Runtime graphs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonhf.spec import ATTENTION_MASK, INPUT_IDS, LABEL

BATCH_SIZE = 16


def encode_batches(
    tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int
) -> list[dict[str, NDArray[Any]]]:
    """``texts`` in batches of ``batch_size``: each the tokenizer's every tensor, as int64.

    Each batch is padded on the right to its longest text and truncated at ``max_length``.
    """
    batches = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_attention_mask=True,
            return_tensors="np",
        )
        batches.append({name: np.asarray(v, dtype=np.int64) for name, v in encoded.items()})
    return batches


def torch_outputs(
    encoder: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = BATCH_SIZE,
) -> NDArray[Any]:
    """The wrapped PyTorch model's output (embeddings or probabilities) for ``texts``.

    The model gets the tokenizer's whole encoding (``encoder.reference``), as HuggingFace
    runs it, not the two tensors the served graph takes.
    """
    import torch

    parts = []
    with torch.no_grad():
        for encoding in encode_batches(tokenizer, texts, max_length, batch_size):
            out = encoder.reference({n: torch.from_numpy(v) for n, v in encoding.items()})
            parts.append(out.float().numpy())
    return np.concatenate(parts)


def onnx_outputs(
    onnx_path: Path,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    output: str,
    with_labels: bool = False,
    batch_size: int = BATCH_SIZE,
) -> tuple[NDArray[Any], NDArray[Any] | None]:
    """The graph's ``output`` (and its LABEL strings when ``with_labels``) for ``texts``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [output, LABEL] if with_labels else [output]
    values, labels = [], []
    for encoding in encode_batches(tokenizer, texts, max_length, batch_size):
        got = session.run(names, {n: encoding[n] for n in (INPUT_IDS, ATTENTION_MASK)})
        values.append(np.asarray(got[0], dtype=np.float32))
        if with_labels:
            labels.append(np.asarray(got[1]).reshape(-1))
    return np.concatenate(values), (np.concatenate(labels) if with_labels else None)
