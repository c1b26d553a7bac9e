"""A small English sentiment dataset written by the project (see README.md in this folder)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

LABELS = ("negative", "positive")


def _path(name: str) -> Path:
    # The package is installed as plain files (setuptools, editable or wheel), so the
    # resource is a real path that training code and the CLI can open.
    return Path(str(resources.files(__package__).joinpath(name)))


def train_path() -> Path:
    """The training split: ``train.csv`` with columns ``text,label``."""
    return _path("train.csv")


def eval_path() -> Path:
    """The held-out evaluation split: ``eval.csv``, no text shared with the training split."""
    return _path("eval.csv")
