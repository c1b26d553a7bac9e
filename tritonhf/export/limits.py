"""The pipeline's token limit: what the model says, and the longest input it really runs.

A model's config can promise more positions than it has: RoBERTa-family models declare
``max_position_embeddings = 514`` but start counting at ``padding_idx + 1``, so a 513-token
input indexes past the table. Such an input would fail only in production, on the first long
text; the exporter runs the model once at the chosen length instead, and searches down when
that fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tritonhf.errors import ConfigError, ExportError, first_line
from tritonhf.export.source import ModelSource

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


def check_runs_batches(encoder: Any, tokenizer: Any) -> None:
    """Refuse (`ExportError`) a model that runs one text but not a padded batch of two.

    A GPT-2-style classifier finds each text's last token by its pad id; without one in its
    config, transformers refuses every batch larger than one. The batch is two texts as the
    tokenizer writes them (a BART classifier needs each to end with its eos token), padded on
    the right as the served steps pad.
    """
    import torch

    rows = [tokenizer("a short sentence for a batch")["input_ids"], tokenizer("a")["input_ids"]]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id or 0
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows], dtype=torch.int64)
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    with torch.no_grad():
        try:
            encoder(ids, mask)
        except (IndexError, RuntimeError, ValueError) as exc:
            reason = first_line(exc)
            advice = (
                ": set pad_token_id in its config.json to the id its tokenizer pads with "
                "(often its eos_token_id)"
                if "pad" in reason.lower()
                else ""
            )
            raise ExportError(
                f"{type(encoder.model).__name__} cannot run a batch of two texts ({reason}){advice}"
            ) from exc


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


def resolve_max_length(
    requested: int | None,
    source: ModelSource,
    model: Any,
    tokenizer: Any,
    *,
    encoder: Any = None,
) -> int:
    """Use the requested length, else the model's own sequence limit.

    A requested length past the model's positions is refused, naming the longest length
    ``encoder`` (when given) really runs: fewer than the positions in the RoBERTa family.
    """
    positions = _positions(model)
    if requested is not None:
        if requested > positions:
            usable = (
                positions
                if encoder is None
                else longest_runnable_length(encoder, tokenizer, positions)
            )
            raise ConfigError(
                f"--max-length {requested} exceeds the model's {positions} positions; "
                f"use at most {usable}"
            )
        return requested
    return min([positions, DEFAULT_LIMIT, *_declared_limits(source, tokenizer)])


DEFAULT_LIMIT = 512
"""Tokens per text when nothing smaller is declared (BERT's table; what most models train at)."""
NO_TABLE = 1 << 20


def _positions(model: Any) -> int:
    """The model's position-table size; `NO_TABLE` for relative positions (T5, XLNet: -1)."""
    positions = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    return positions if positions > 0 else NO_TABLE


def _declared_limits(source: ModelSource, tokenizer: Any) -> list[int]:
    """The limit the model's files declare: sentence-transformers', else the tokenizer's.

    sentence-transformers' ``encode`` truncates at its ``max_seq_length`` whatever the
    tokenizer's ``model_max_length`` says (folders saved before version 6 can hold a smaller
    one), so that is the limit its users get.
    """
    if source.max_seq_length:
        return [int(source.max_seq_length)]
    if 0 < tokenizer.model_max_length < 100_000:
        return [int(tokenizer.model_max_length)]
    return []


def default_limit_note(source: ModelSource, model: Any, tokenizer: Any) -> str | None:
    """A note when `DEFAULT_LIMIT` cuts texts that sentence-transformers would read on."""
    positions = _positions(model)
    declared = _declared_limits(source, tokenizer)
    if not declared and positions == NO_TABLE:
        return (
            f"note: nothing bounds this model's input (relative positions, and no limit in its "
            f"tokenizer or sentence-transformers config): texts are cut at {DEFAULT_LIMIT} "
            "tokens, where sentence-transformers reads them whole; --max-length serves longer ones"
        )
    if source.max_seq_length and min(positions, source.max_seq_length) > DEFAULT_LIMIT:
        longest = min(positions, source.max_seq_length)
        return (
            f"note: texts are cut at {DEFAULT_LIMIT} tokens, where sentence-transformers reads "
            f"up to {source.max_seq_length} (max_seq_length); --max-length {longest} serves "
            "them (attention's memory grows with the square of a batch's longest text)"
        )
    return None


def runnable_max_length(
    encoder: Any,
    tokenizer: Any,
    limit: int,
    *,
    requested: bool,
    progress: Callable[[str], None],
) -> int:
    """``limit`` once the model has run at it; below it, the longest length the model runs.

    A length the user asked for (``--max-length``) is refused instead of lowered.
    """
    runnable = longest_runnable_length(encoder, tokenizer, limit)
    if runnable == limit:
        return limit
    if requested:
        raise ConfigError(
            f"--max-length {limit}: the model fails on inputs longer than {runnable} tokens "
            f"(its position table is smaller than its config says); use --max-length {runnable}"
        )
    progress(f"the model fails past {runnable} tokens (not {limit}): max length {runnable}")
    return runnable
