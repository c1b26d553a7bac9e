"""Triton Python-backend step: raw UTF-8 text -> token ids, attention mask, token counts.

Served as ``<name>_tokenizer/1/model.py`` (a one-line shim that imports this module). The whole
dynamic batch is tokenized in one ``encode_batch`` call; each request's rows are padded only to
that request's longest text (rounded up to ``pad_to_multiple_of``), so one long text never pads
the rest of the batch. A request with bad text gets its own typed error; the other requests
still succeed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside the server, by the unit tests
    pb_utils = None

from tritonhf.backends import counts_for_drift, refusal_message, string_parameters
from tritonhf.backends.execute_clock import clocked
from tritonhf.backends.loads import counted
from tritonhf.observability.drift import PROFILE_FILE
from tritonhf.observability.metrics import RefusedInput
from tritonhf.observability.steps import RequestOutcome, TokenizerObserver

TOKENIZER_FILE = "tokenizer.json"


class TextError(RefusedInput):
    """A request's text cannot be tokenized; the message names the offending row.

    ``reason`` is the short label counted in ``tritonhf_invalid_inputs_total``.
    """


@dataclass(frozen=True)
class TokenizerSettings:
    """The step's parameters, read from ``config.pbtxt``."""

    max_length: int
    pad_token_id: int = 0
    pad_to_multiple_of: int = 1
    max_text_bytes: int = 1 << 20
    pipeline: str = ""
    """The ensemble's name: the ``model`` label of the step's metrics and logs."""

    @classmethod
    def from_model_config(cls, config: dict[str, Any]) -> TokenizerSettings:
        """Read the settings from Triton's model config (JSON form)."""
        params = string_parameters(config)
        if "max_length" not in params:
            raise ValueError(
                f"{config.get('name')}'s config.pbtxt lacks the parameter max_length (the "
                f"tokens a text keeps; it has: {', '.join(sorted(params)) or 'none'}): re-export"
            )
        return cls(
            max_length=int(params["max_length"]),
            pad_token_id=int(params.get("pad_token_id", 0)),
            pad_to_multiple_of=int(params.get("pad_to_multiple_of", 1)),
            max_text_bytes=int(params.get("max_text_bytes", 1 << 20)),
            pipeline=params.get("pipeline")
            or str(config.get("name", "")).removesuffix("_tokenizer"),
        )


@dataclass(frozen=True)
class TokenBatch:
    """One request's tokenizer output."""

    input_ids: NDArray[Any]  # int64 [rows, length]
    attention_mask: NDArray[Any]  # int64 [rows, length]
    num_tokens: NDArray[Any]  # int32 [rows, 1]
    truncated: NDArray[Any]  # bool [rows, 1]


def load_tokenizer(path: Path, max_length: int) -> Any:
    """Load a fast tokenizer from ``tokenizer.json`` with truncation on and padding off.

    Truncation keeps the side the file says (a model whose tokenizer has ``truncation_side``
    left keeps the end of a long text), the start otherwise.
    """
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001  # tokenizers raises Exception, naming no file
        raise RuntimeError(f"cannot load the tokenizer {path}: {exc}") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length, direction=_truncation_side(tokenizer))
    return tokenizer


def _truncation_side(tokenizer: Any) -> str:
    """``"left"`` or ``"right"``: which end of a long text the tokenizer drops."""
    truncation = getattr(tokenizer, "truncation", None) or {}
    return "left" if str(truncation.get("direction", "right")).lower() == "left" else "right"


def decode_texts(raw: NDArray[Any], *, max_bytes: int = 1 << 20) -> list[str]:
    """Turn a BYTES tensor into strings; raise `TextError` naming the first bad row.

    The size limit is checked before decoding and tokenizing, so an oversized request costs
    nothing but its transfer.
    """
    texts = []
    for index, item in enumerate(raw.reshape(-1)):
        data = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else bytes(item)
        if len(data) > max_bytes:
            raise TextError(
                f"TEXT[{index}] is {len(data):,} bytes, over the limit of {max_bytes:,} bytes "
                "(max_text_bytes); split the text, or export with a larger --max-text-bytes",
                "too_large",
            )
        if isinstance(item, str):
            texts.append(item)
            continue
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise TextError(
                f"TEXT[{index}] is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                "send text encoded as UTF-8",
                "not_utf8",
            ) from None
    return texts


READ_CHARS_PER_TOKEN = 32
"""Characters of a text the step reads first, per token of ``max_length`` (`encode_texts`)."""
REREAD_CHARS_PER_TOKEN = 128
"""The most it reads of a text whose first read gave too few tokens: a WordPiece token is at
most a 100-character word (longer ones are one ``[UNK]``) and the space after it."""
READ_SLACK_CHARS = 1024
"""How far back from the read limit the cut looks for whitespace, so no word is split."""
_THROUGH_LAST_SPACE = re.compile(r".*\s", re.DOTALL)
_FIRST_SPACE = re.compile(r"\s")
_WHITESPACE_RUN = re.compile(r"[ \t\r\n]{2,}")


def read_limit(max_length: int) -> int:
    """Characters of one text the step tokenizes first (8,192 at 256 tokens; `encode_texts`)."""
    return max(max_length * READ_CHARS_PER_TOKEN, 4 * READ_SLACK_CHARS)


def _read_span(text: str, limit: int, *, keep_end: bool, skip_edge: bool) -> tuple[int, int]:
    """The part of ``text`` the step reads: all of it, or its first ``limit`` characters.

    With ``keep_end`` (left truncation) its last ones instead. With ``skip_edge`` (a tokenizer
    that gives whitespace there no token), whitespace at the end read from is skipped. The cut
    is at whitespace within ``READ_SLACK_CHARS`` of the limit where there is some, so the
    words read tokenize as they do in the whole text.
    """
    if len(text) <= limit:
        return 0, len(text)
    if not keep_end:
        start = len(text) - len(text.lstrip()) if skip_edge else 0
        if len(text) - start <= limit:
            return start, len(text)
        through = _THROUGH_LAST_SPACE.match(text, start + limit - READ_SLACK_CHARS, start + limit)
        return start, through.end() - 1 if through else start + limit
    stop = len(text.rstrip()) if skip_edge else len(text)
    if stop <= limit:
        return 0, stop
    space = _FIRST_SPACE.search(text, stop - limit, stop - limit + READ_SLACK_CHARS)
    return (space.end() if space else stop - limit), stop


@dataclass(frozen=True)
class Encoded:
    """The tokenizer's encodings of a list of texts, and which ones it did not read whole."""

    encodings: list[Any]
    unread: list[bool]
    """True where a text goes on past what was read (``read_chars`` characters)."""
    read_chars: list[int]

    def rows(self, start: int, stop: int) -> Encoded:
        """The encodings of texts ``start`` to ``stop`` (one request's)."""
        return Encoded(
            self.encodings[start:stop], self.unread[start:stop], self.read_chars[start:stop]
        )


def encode_texts(tokenizer: Any, texts: list[str], max_length: int) -> Encoded:
    """``tokenizer.encode_batch(texts)`` (truncating at ``max_length``), with bounded work.

    A text is read up to `read_limit` characters, from the end its truncation keeps (cut at
    a word boundary). Most text that long has more than ``max_length`` tokens, so its tokens
    are those of the whole text, and a 1 MiB text costs what ~8,000 characters do (~5 ms,
    not up to 0.7 s: `benchmarks/long_text_cost.py`). A text with fewer tokens there (Thai,
    written without spaces between words: ~75 characters a token here; hex hashes) is read
    again, as far as its tokens so far say it needs, up to ``REREAD_CHARS_PER_TOKEN`` per
    token; first, where the tokenizer reads a run of spaces, tabs and newlines as one space
    (WordPiece does; SentencePiece and byte-level BPE keep them), such runs are read as one
    space, so a long one does not hide the words after it. A degenerate text (one huge word, a
    run of characters the tokenizer drops) is truncated there: its rest is marked as not read
    (``unread``).
    """
    limit = read_limit(max_length)
    keep_end = _truncation_side(tokenizer) == "left"
    skip_edge = any(len(text) > limit for text in texts) and ignores_edge_whitespace(tokenizer)
    encodings, unread = _encode_spans(tokenizer, texts, [limit] * len(texts), keep_end, skip_edge)
    read = [limit] * len(texts)
    most = max(max_length * REREAD_CHARS_PER_TOKEN, limit)
    again = [i for i, short in enumerate(unread) if short and read[i] < most]
    if again and collapses_whitespace(tokenizer):
        texts = list(texts)  # the caller's stay as sent
        for i in again:
            texts[i] = _WHITESPACE_RUN.sub(" ", texts[i])
    while again:
        for i in again:  # rare: a row at a time
            # 1.25x what the characters per token so far say max_length + 1 tokens take.
            need = read[i] * (max_length + 1) * 5 // (4 * max(len(encodings[i].ids), 1))
            read[i] = min(most, max(2 * read[i], need))
            (encodings[i],), (unread[i],) = _encode_spans(
                tokenizer, [texts[i]], [read[i]], keep_end, skip_edge
            )
        again = [i for i in again if unread[i] and read[i] < most]
    return Encoded(encodings, unread, read)


def collapses_whitespace(tokenizer: Any) -> bool:
    """Whether runs of spaces, tabs and newlines give the tokens one space gives."""
    plain, spaced = tokenizer.encode_batch(["a b", "a  \t\r\n\n  b"])
    return bool(plain.ids == spaced.ids)


def ignores_edge_whitespace(tokenizer: Any) -> bool:
    """Whether spaces, tabs and newlines at either end of a text give no tokens.

    WordPiece and most SentencePiece tokenizers drop them; byte-level BPE keeps them as tokens.
    """
    plain, *padded = tokenizer.encode_batch(["a b", " \t\n a b", "a b \n\t "])
    return all(encoding.ids == plain.ids for encoding in padded)


def _encode_spans(
    tokenizer: Any, texts: list[str], limits: list[int], keep_end: bool, skip_edge: bool
) -> tuple[list[Any], list[bool]]:
    """Each text's encoding, reading at most its limit; whether it goes on past what was read.

    What was not read counts as read when it is whitespace the tokenizer ignores there.
    """
    spans = [
        _read_span(text, limit, keep_end=keep_end, skip_edge=skip_edge)
        for text, limit in zip(texts, limits, strict=True)
    ]
    encodings = list(
        tokenizer.encode_batch(
            [
                text if stop - start == len(text) else text[start:stop]
                for text, (start, stop) in zip(texts, spans, strict=True)
            ]
        )
    )
    unread = [
        stop - start < len(text)
        and not encoding.overflowing
        and not (skip_edge and (text[:start] + text[stop:]).isspace())
        for text, (start, stop), encoding in zip(texts, spans, encodings, strict=True)
    ]
    return encodings, unread


def check_not_empty(texts: Sequence[str], encoded: Encoded) -> None:
    """Reject texts that are blank or have no token besides the special ones (invisible).

    Blank is read off the text itself: SentencePiece and byte-level BPE tokenizers keep a
    space as a token of its own, so their encodings of ``" "`` are not empty.
    """
    for row, (text, encoding, unread, read) in enumerate(
        zip(texts, encoded.encodings, encoded.unread, encoded.read_chars, strict=True)
    ):
        if text.isspace() or all(encoding.special_tokens_mask):
            where = f" in the {read:,} characters read of it" if unread else ""
            raise TextError(
                f"TEXT[{row}] has no tokens{where}: it is empty, whitespace only, or only "
                "characters the tokenizer drops; send some visible text",
                "empty",
            )


def pad_encodings(encoded: Encoded, settings: TokenizerSettings) -> TokenBatch:
    """Pad one request's encodings to its longest row, rounded up to the configured multiple.

    A text is truncated when its tokens overflowed ``max_length``, or it was not read whole.
    """
    encodings = encoded.encodings
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int32, count=len(encodings))
    multiple = settings.pad_to_multiple_of
    # Rounding never goes past max_length: the model may have no positions beyond it.
    width = min(int(-(-int(lengths.max()) // multiple) * multiple), settings.max_length)
    width = max(width, int(lengths.max()))
    input_ids = np.full((len(encodings), width), settings.pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, (encoding, length) in enumerate(zip(encodings, lengths, strict=True)):
        input_ids[row, :length] = encoding.ids
        attention_mask[row, :length] = 1
    truncated = np.fromiter(
        (
            bool(e.overflowing) or unread
            for e, unread in zip(encodings, encoded.unread, strict=True)
        ),
        dtype=np.bool_,
        count=len(encodings),
    )
    return TokenBatch(input_ids, attention_mask, lengths.reshape(-1, 1), truncated.reshape(-1, 1))


@counted
@clocked
class TritonPythonModel:
    """The tokenizer step as Triton's Python backend sees it."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the tokenizer stored beside this file."""
        config = json.loads(args["model_config"])
        self.settings = TokenizerSettings.from_model_config(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = load_tokenizer(version_dir / TOKENIZER_FILE, self.settings.max_length)
        self.observer = TokenizerObserver.create(
            pb_utils, self.settings.pipeline, version_dir / PROFILE_FILE
        )

    def finalize(self) -> None:
        """Record what is still queued."""
        self.observer.close()

    def tokenize(self, requests: list[Any]) -> tuple[list[RequestOutcome], list[TokenBatch | None]]:
        """Each request's outcome and tokens (``None`` where its text was rejected)."""
        outcomes = [RequestOutcome(r.request_id(), drift=counts_for_drift(r)) for r in requests]
        batches = tokenize_requests(
            self.tokenizer,
            self.settings,
            [pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy() for r in requests],
            outcomes,
        )
        return outcomes, batches

    def execute(self, requests: list[Any]) -> list[Any]:
        """Tokenize every request of the dynamic batch in one call."""
        started = time.perf_counter()
        outcomes, batches = self.tokenize(requests)
        responses = []
        for batch, outcome in zip(batches, outcomes, strict=True):
            if batch is None:
                responses.append(error_response(refusal_message(outcome.request_id, outcome.error)))
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("input_ids", batch.input_ids),
                        pb_utils.Tensor("attention_mask", batch.attention_mask),
                        pb_utils.Tensor("NUM_TOKENS", batch.num_tokens),
                        pb_utils.Tensor("TRUNCATED", batch.truncated),
                    ]
                )
            )
        self.observer.record(outcomes, started)
        return responses


def tokenize_requests(
    tokenizer: Any,
    settings: TokenizerSettings,
    raw_texts: Sequence[NDArray[Any]],
    outcomes: Sequence[RequestOutcome],
) -> list[TokenBatch | None]:
    """Tokenize each request's TEXT tensor (all in one ``encode_batch`` call).

    A request with bad text gets ``None`` and its outcome records the `TextError`; the others
    are unaffected.
    """
    batches: list[TokenBatch | None] = [None] * len(raw_texts)
    texts: list[str] = []
    spans: list[tuple[int, int, int]] = []
    for index, raw in enumerate(raw_texts):
        try:
            decoded = decode_texts(raw, max_bytes=settings.max_text_bytes)
        except TextError as exc:
            outcomes[index].fail(exc, sent=int(raw.size))
            continue
        spans.append((index, len(texts), len(texts) + len(decoded)))
        texts.extend(decoded)
    encoded = encode_texts(tokenizer, texts, settings.max_length)
    for index, start, stop in spans:
        rows = encoded.rows(start, stop)
        try:
            check_not_empty(texts[start:stop], rows)
        except TextError as exc:
            outcomes[index].fail(exc, texts[start:stop])
            continue
        batch = pad_encodings(rows, settings)
        outcomes[index].succeed(texts[start:stop], batch.num_tokens, batch.truncated)
        batches[index] = batch
    return batches


def error_response(message: str) -> Any:
    """A response that fails one request with Triton's INVALID_ARG and ``message``."""
    return pb_utils.InferenceResponse(
        output_tensors=[], error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    )
