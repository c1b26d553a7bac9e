"""The longest input a model really runs, found by running it.

A model's config can promise more positions than it has: RoBERTa-family models declare
``max_position_embeddings = 514`` but start counting at ``padding_idx + 1``, so a 513-token
input indexes past the table. Such an input would fail only in production, on the first long
text; the exporter runs the model once at the chosen length instead, and searches down when
that fails.
"""

from __future__ import annotations

from typing import Any

from tritonhf.errors import ExportError

FILLER = "the "
"""One token per repeat in every tokenizer we know; truncation cuts it to the length wanted."""


def runs_at(encoder: Any, tokenizer: Any, length: int) -> bool:
    """True when ``encoder`` runs on one input of ``length`` tokens.

    (Fewer, if the tokenizer cannot make that many: then the length cannot occur either.)
    """
    import torch

    feeds = tokenizer(FILLER * length, truncation=True, max_length=length, return_tensors="pt")
    with torch.no_grad():
        try:
            encoder(feeds["input_ids"], feeds["attention_mask"])
        except (IndexError, RuntimeError, ValueError):
            return False
    return True


def longest_runnable_length(encoder: Any, tokenizer: Any, upper: int) -> int:
    """The largest length <= ``upper`` that ``encoder`` runs at (``upper`` itself, normally)."""
    if runs_at(encoder, tokenizer, upper):
        return upper
    low, high = 2, upper  # low runs, high fails
    if not runs_at(encoder, tokenizer, low):
        raise ExportError("the model fails even on a 2-token input; is the folder complete?")
    while high - low > 1:
        middle = (low + high) // 2
        if runs_at(encoder, tokenizer, middle):
            low = middle
        else:
            high = middle
    return low
