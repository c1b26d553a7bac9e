"""The shipped sentiment dataset: sizes, balance, labels, quoting, and a clean split."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from tritonhf.data import sentiment

LABELS = {"negative", "positive"}


def read_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        assert next(reader) == ["text", "label"]
        rows = [tuple(row) for row in reader]
    assert all(len(row) == 2 for row in rows), "every row has exactly two fields"
    return [(text, label) for text, label in rows]


@pytest.fixture(scope="module")
def train() -> list[tuple[str, str]]:
    return read_rows(sentiment.train_path())


@pytest.fixture(scope="module")
def evaluation() -> list[tuple[str, str]]:
    return read_rows(sentiment.eval_path())


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def test_the_files_ship_with_the_package_with_a_dataset_card() -> None:
    folder = sentiment.train_path().parent
    assert sentiment.eval_path().parent == folder
    card = (folder / "README.md").read_text(encoding="utf-8")
    for topic in ("License", "Intended use", "Limitations", "CC0", "410", "124"):
        assert topic in card


def test_the_splits_have_the_documented_sizes(
    train: list[tuple[str, str]], evaluation: list[tuple[str, str]]
) -> None:
    assert len(train) == 410
    assert len(evaluation) == 124


@pytest.mark.parametrize("split", ["train", "evaluation"])
def test_labels_are_exactly_negative_or_positive_and_balanced(
    split: str, request: pytest.FixtureRequest
) -> None:
    rows: list[tuple[str, str]] = request.getfixturevalue(split)
    counts = Counter(label for _, label in rows)
    assert set(counts) == LABELS
    for label in LABELS:
        assert 0.4 <= counts[label] / len(rows) <= 0.6, counts


@pytest.mark.parametrize("split", ["train", "evaluation"])
def test_texts_are_clean_and_varied_in_length(split: str, request: pytest.FixtureRequest) -> None:
    rows: list[tuple[str, str]] = request.getfixturevalue(split)
    lengths = [len(text.split()) for text, _ in rows]
    assert all(4 <= n <= 60 for n in lengths)
    assert max(lengths) >= 30, "some long reviews"
    assert sum(n <= 10 for n in lengths) >= len(rows) // 10, "some short ones"
    for text, _ in rows:
        assert text == text.strip()
        assert "\n" not in text


def test_no_text_repeats_within_or_across_the_splits(
    train: list[tuple[str, str]], evaluation: list[tuple[str, str]]
) -> None:
    texts = [text.casefold() for text, _ in train + evaluation]
    repeated = [text for text, n in Counter(texts).items() if n > 1]
    assert repeated == []


def test_no_evaluation_text_is_a_near_copy_of_a_training_text(
    train: list[tuple[str, str]], evaluation: list[tuple[str, str]]
) -> None:
    train_words = [words(text) for text, _ in train]
    worst = 0.0
    for text, _ in evaluation:
        mine = words(text)
        for theirs in train_words:
            worst = max(worst, len(mine & theirs) / len(mine | theirs))
    assert worst < 0.4, "the dataset card promises word-set overlap below 0.4"


def test_the_hard_cases_the_card_describes_are_there(train: list[tuple[str, str]]) -> None:
    labelled = dict(train)
    assert labelled["Honestly not bad at all, I expected much worse for the price."] == "positive"
    sarcasm = "Oh great, another update that moves every button I actually use. Thanks so much."
    assert labelled[sarcasm] == "negative"
    assert any(any(ord(c) > 0x2000 for c in text) for text in labelled), "emoji"


def test_the_training_reader_accepts_both_files() -> None:
    from tritonhf.train.dataset import load_training_data

    data = load_training_data(train=sentiment.train_path(), eval_data=sentiment.eval_path())
    assert data.labels == ("negative", "positive")
    assert data.eval_texts_seen_in_train() == 0
