"""Benchmark corpora and the perf_analyzer input data written from them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tritonhf.bench.perf_analyzer import BenchError, BenchOptionError
from tritonhf.errors import DatasetError
from tritonhf.train.dataset import decode_utf8, text_lines

CORPORA = {"short": "sentences.txt", "long": "long_texts.txt"}
"""Shipped corpora: short real sentences (token p50 ~16) and ~200-token realistic texts."""
CORPUS_SEED = 0
"""Seed of the order benchmarks send a corpus in (`traffic_order`)."""


def load_corpus(name_or_path: str) -> list[str]:
    """Texts of a shipped corpus (``short``, ``long``, ``mixed``) or of a text file, one a line.

    They come in `traffic_order`: a benchmark that stops part-way through a cycle of the
    corpus still sends its mix of lengths, and concurrent clients send unrelated texts.
    """
    return traffic_order(_read_corpus(name_or_path))


def traffic_order(texts: Sequence[str], *, seed: int = CORPUS_SEED) -> list[str]:
    """``texts`` in a fixed random order, as independent requests would arrive.

    Benchmarks cycle through a corpus and stop after a time or a request count, so a window
    usually covers part of a cycle, and concurrent clients send texts a fixed distance apart.
    In file order both mislead: the short corpus keeps its ~120-token paragraphs together (a
    window of 100 texts holds 0.5x to 1.8x the corpus's mean UTF-8 length), and texts sent
    together are alike, which flatters length-aware batching over padding to the batch's
    longest text. A sorted or strided order ties the lengths in flight to the clients'
    offsets instead. In a random order a window of 250 texts holds 0.9x to 1.13x the mean
    (100 texts: 0.7x to 1.25x), and texts in flight together are independent.
    """
    return [texts[i] for i in np.random.default_rng(seed).permutation(len(texts))]


def _read_corpus(name_or_path: str) -> list[str]:
    if name_or_path == "mixed":
        # Every fourth text long: a realistic mix where padding to the batch max would hurt.
        short, long = _read_corpus("short"), _read_corpus("long")
        mixed: list[str] = []
        for index, text in enumerate(short):
            mixed.append(text)
            if index % 3 == 2:
                mixed.append(long[(index // 3) % len(long)])
        return mixed
    if name_or_path in CORPORA:
        text = (
            resources.files("tritonhf.data")
            .joinpath(CORPORA[name_or_path])
            .read_text(encoding="utf-8")
        )
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise BenchOptionError(
                f"corpus {name_or_path!r} is neither a shipped corpus "
                f"({', '.join([*CORPORA, 'mixed'])}) nor a text file"
            )
        try:
            text = decode_utf8(path, expected="a text file, one text per line")
        except DatasetError as exc:
            raise BenchOptionError(f"corpus {name_or_path!r} is not UTF-8: {exc}") from None
    texts = [line.strip() for line in text_lines(text) if line.strip()]
    if not texts:
        raise BenchOptionError(f"corpus {name_or_path!r} has no non-blank lines")
    return texts


def write_input_data(texts: Sequence[str], path: Path, *, input_name: str = "TEXT") -> Path:
    """Write perf_analyzer's ``--input-data`` JSON: one one-text request per corpus line.

    perf_analyzer cycles through the entries in order, so every request carries a real text.
    """
    if not texts:
        raise BenchError("no texts to write as perf_analyzer input data")
    entries = [{input_name: {"content": [text], "shape": [1]}} for text in texts]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": entries}, ensure_ascii=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class LengthStats:
    """Token-length distribution of a corpus (special tokens included, as the model sees it)."""

    texts: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: int

    @classmethod
    def of(cls, lengths: Sequence[int]) -> LengthStats:
        """Summarise token lengths."""
        if not lengths:
            raise BenchError("no token lengths to summarise")
        values = np.asarray(lengths)
        return cls(
            texts=len(values),
            mean=float(values.mean()),
            p50=float(np.percentile(values, 50)),
            p90=float(np.percentile(values, 90)),
            p99=float(np.percentile(values, 99)),
            max=int(values.max()),
        )

    def line(self) -> str:
        """One printable line."""
        return (
            f"{self.texts} texts, tokens mean {self.mean:.0f}, p50 {self.p50:.0f}, "
            f"p90 {self.p90:.0f}, p99 {self.p99:.0f}, max {self.max}"
        )


def token_lengths(texts: Sequence[str], tokenizer_json: Path, max_length: int) -> list[int]:
    """Token counts with the served tokenizer, truncated at its ``max_length`` as served."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(list(texts))]
