"""The optimisation loop: length-bucketed batches, AdamW with linear decay, per-epoch progress."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tritonhf.train.engines import Engine

WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
PREDICT_BATCH = 64
BUCKET_BATCHES = 8
"""Rows are sorted by length within pools of this many batches (less padding per batch)."""


@dataclass(frozen=True)
class EpochResult:
    """Mean training loss of one epoch, and the held-out accuracy after it."""

    epoch: int
    loss: float
    eval_accuracy: float | None
    seconds: float


def predict(engine: Engine, *, split: str, size: int) -> list[int]:
    """The predicted label id of each of the ``size`` rows of ``split``, dropout off."""
    import torch

    engine.train_mode(False)
    predicted: list[int] = []
    with torch.no_grad():
        for start in range(0, size, PREDICT_BATCH):
            indices = range(start, min(start + PREDICT_BATCH, size))
            predicted += engine.logits(split, indices).argmax(dim=-1).tolist()
    return predicted


def length_batches(lengths: Sequence[int], *, batch_size: int, generator: Any) -> list[list[int]]:
    """Shuffled batches of rows of similar length, in shuffled order.

    The rows are shuffled, cut into pools of `BUCKET_BATCHES` batches, sorted by length within
    a pool and cut into batches; then the order of the batches is shuffled.
    """
    import torch

    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def fit(
    engine: Engine,
    *,
    labels: dict[str, list[int]],
    lengths: Sequence[int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    progress: Callable[[str], None],
    class_weights: Sequence[float] | None = None,
) -> list[EpochResult]:
    """Train ``engine``'s parameters on ``labels["train"]``; report ``labels["eval"]`` if given.

    ``class_weights`` (one per label id) weigh each example's loss by its class. Every epoch
    ends with one progress line: mean loss, held-out accuracy, seconds.
    """
    import torch

    parameters = engine.parameters()
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=WEIGHT_DECAY)
    size = len(labels["train"])
    shuffle = torch.Generator().manual_seed(seed)
    plans = [
        length_batches(lengths, batch_size=batch_size, generator=shuffle) for _ in range(epochs)
    ]
    steps = sum(len(plan) for plan in plans)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps))
    targets = torch.tensor(labels["train"], dtype=torch.long)
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    history = []
    for epoch, plan in enumerate(plans, start=1):
        started = time.perf_counter()
        engine.train_mode(True)
        total = 0.0
        for batch in plan:
            loss: Any = torch.nn.functional.cross_entropy(
                engine.logits("train", batch), targets[batch], weight=weight
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            total += loss.detach().item() * len(batch)
        line = f"epoch {epoch}/{epochs}  loss {total / size:.4f}"
        accuracy = None
        if "eval" in labels:
            truth = labels["eval"]
            guesses = predict(engine, split="eval", size=len(truth))
            accuracy = sum(g == t for g, t in zip(guesses, truth, strict=True)) / len(truth)
            line += f"  eval accuracy {accuracy:.3f}"
        seconds = time.perf_counter() - started
        progress(f"{line}  ({seconds:.1f} s)")
        history.append(EpochResult(epoch, total / size, accuracy, seconds))
    return history
