"""Reading labelled CSVs: label ids and texts of any length."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonhf.errors import DatasetError
from tritonhf.train.dataset import (
    label_order,
    load_training_data,
    read_labelled_csv,
    read_text_column,
)


@pytest.mark.parametrize(
    ("labels", "order"),
    [
        (["10", "2", "0", "2"], ("0", "2", "10")),  # by value, not "0", "10", "2"
        (["-1", "1", "0"], ("-1", "0", "1")),
        (["positive", "negative", "neutral"], ("negative", "neutral", "positive")),
        (["2", "b", "10"], ("10", "2", "b")),  # not all numbers: alphabetical
        (["+1", "-1", "0"], ("-1", "0", "+1")),
        (["²", "1"], ("1", "²")),  # a superscript is not a digit int() reads: text
        (["--1", "1"], ("--1", "1")),
    ],
)
def test_label_ids_follow_the_labels_values(labels: list[str], order: tuple[str, ...]) -> None:
    assert label_order(labels) == order


def test_a_text_longer_than_pythons_csv_field_limit_is_read(tmp_path: Path) -> None:
    long_text = " ".join(["a long review"] * 20_000)  # 280k characters; csv's limit is 131,072
    data = tmp_path / "train.csv"
    data.write_text(f'text,label\n"{long_text}",pos\nshort,neg\n', encoding="utf-8")

    loaded = load_training_data(train=data, eval_data=None)

    assert loaded.train.texts[0] == long_text
    assert read_text_column(data)[0] == long_text


def test_integer_labels_written_two_ways_are_reported_and_counts_follow_the_ids(
    tmp_path: Path,
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("text,label\na,10\nb,01\nc,1\nd,2\ne,2\n", encoding="utf-8")

    loaded = load_training_data(train=data, eval_data=None)

    assert loaded.labels == ("01", "1", "2", "10")
    assert loaded.labels_of_one_number() == [("01", "1")]
    assert list(loaded.train.label_counts().items()) == [("01", 1), ("1", 1), ("2", 2), ("10", 1)]


def test_the_metrics_table_lines_up_labels_of_wide_characters() -> None:
    from tritonhf.train.metrics import classification_metrics

    labels = ("très bon 👍", "好", "bad")
    metrics = classification_metrics(
        split="eval", labels=labels, true_ids=[0, 1, 2, 2], predicted_ids=[0, 1, 2, 1]
    )

    rows = metrics.table().splitlines()
    per_class, confusion = rows[1:4], rows[-3:]
    # Every row ends at the same terminal column: a wide character takes two.
    widths = {sum(2 if ord(ch) > 0x2E80 else 1 for ch in row) for row in per_class}
    assert len(widths) == 1
    widths = {sum(2 if ord(ch) > 0x2E80 else 1 for ch in row) for row in [rows[-4], *confusion]}
    assert len(widths) == 1


def test_labels_that_a_list_or_a_table_would_misread_are_quoted() -> None:
    from tritonhf.spec import shown_label
    from tritonhf.train.metrics import classification_metrics

    assert [shown_label(x) for x in ("billing", "réclamation ✓", "other, misc")] == [
        "billing",
        "réclamation ✓",
        "'other, misc'",
    ]
    assert [shown_label(x) for x in ("multi\nline", " padded", "")] == [
        "'multi\\nline'",
        "' padded'",
        "''",
    ]
    labels = ("other, misc", "multi\nline", "plain")
    metrics = classification_metrics(
        split="eval", labels=labels, true_ids=[0, 1, 2], predicted_ids=[0, 1, 1]
    )
    rows = metrics.table().splitlines()
    assert len(rows) == 1 + 3 + 2 + 1 + 3  # one line per class and per matrix row
    assert rows[-2].startswith("'multi\\nline'")
    assert rows[1].startswith("'other, misc'")


def test_a_label_written_in_two_unicode_forms_is_one_class(tmp_path: Path) -> None:
    # "négatif" typed with é (NFC) and with e + a combining accent (NFD): they print alike.
    data = tmp_path / "train.csv"
    data.write_text("text,label\nbad,n\u00e9gatif\nawful,ne\u0301gatif\ngood,positif\n", "utf-8")

    loaded = load_training_data(train=data, eval_data=None)

    assert loaded.labels == ("n\u00e9gatif", "positif")
    assert list(loaded.train.label_counts().values()) == [2, 1]


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        ("text;label\ngreat;positive\n", "semicolon-separated"),
        ("text\tlabel\ngreat\tpositive\n", "tab-separated"),
        ("sep=,\ntext,label\ngreat,positive\n", "`sep=` marker"),
    ],
)
def test_a_header_without_commas_says_how_to_save_the_file(
    tmp_path: Path, content: str, hint: str
) -> None:
    data = tmp_path / "train.csv"
    data.write_text(content, encoding="utf-8")

    with pytest.raises(DatasetError, match=hint):
        read_labelled_csv(data)


def test_a_text_under_two_labels_is_counted(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("text,label\nok,positive\nok,negative\nok,positive\nbad,negative\n", "utf-8")

    assert load_training_data(train=data, eval_data=None).texts_with_several_labels() == 1


def test_a_class_without_rows_in_the_split_shows_no_recall_or_f1() -> None:
    from tritonhf.train.metrics import classification_metrics

    metrics = classification_metrics(
        split="eval", labels=("a", "b", "c"), true_ids=[0, 1, 1], predicted_ids=[0, 1, 0]
    )

    row_c = metrics.table().splitlines()[3].split()
    assert row_c == ["c", "0.000", "-", "-", "0"]
