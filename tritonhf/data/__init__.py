"""Text corpora shipped with the package (validation, tests, benchmarks, demo search)."""

from __future__ import annotations

from importlib import resources


def sentences() -> list[str]:
    """Varied real-world sentences: short and long, English and other scripts, awkward input."""
    text = resources.files(__package__).joinpath("sentences.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]
