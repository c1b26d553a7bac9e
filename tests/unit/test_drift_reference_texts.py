"""How ``tritonhf export --drift-reference FILE`` reads its reference texts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tritonhf.errors import ConfigError
from tritonhf.gate.acceptance import read_texts
from tritonhf.observability.reference import (
    PACKAGE_CORPUS,
    build_reference_profile,
    default_reference_note,
    read_reference_texts,
)

TEXTS = [
    "the invoice was charged twice",
    "database timeout on every query, thanks",
    'he said "hi" and left',
    "a text that spans\ntwo lines",
]
LABELS = ["billing question", "Tech support: urgent!", "other, misc", "other, misc"]


def _csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _training_csv(path: Path, *, bom: bool = False) -> Path:
    pairs = zip(TEXTS, LABELS, strict=True)
    rows = [f"{_csv_field(text)},{_csv_field(label)}" for text, label in pairs]
    content = "text,label\r\n" + "\r\n".join(rows) + "\r\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + content.encode("utf-8"))
    return path


def _whitespace_tokenizer(texts: list[str], *, truncation: bool, max_length: int) -> Any:
    return {"input_ids": [text.split()[:max_length] for text in texts]}


def test_a_csv_reference_is_its_text_column_without_header_or_labels(tmp_path: Path) -> None:
    path = _training_csv(tmp_path / "train.csv")

    reference = read_reference_texts(path)

    assert reference.texts == TEXTS
    assert reference.source == str(path)


def test_a_csv_reference_starting_with_a_byte_order_mark_still_finds_its_text_column(
    tmp_path: Path,
) -> None:
    path = _training_csv(tmp_path / "train.csv", bom=True)

    assert read_reference_texts(path).texts == TEXTS


def test_a_csv_reference_is_read_as_gate_data_reads_it(tmp_path: Path) -> None:
    path = _training_csv(tmp_path / "Train.CSV")

    assert read_reference_texts(path).texts == read_texts(path, minimum=0)


def test_a_text_reference_is_one_text_per_non_blank_line_without_a_byte_order_mark(
    tmp_path: Path,
) -> None:
    path = tmp_path / "texts.txt"
    path.write_bytes(b"\xef\xbb\xbffirst text\r\n\r\n   \nsecond, with a comma\nthird\n")

    assert read_reference_texts(path).texts == ["first text", "second, with a comma", "third"]


def test_the_profile_of_a_training_csv_is_the_profile_of_its_texts(tmp_path: Path) -> None:
    csv_path = _training_csv(tmp_path / "train.csv")
    plain = [text.replace("\n", " ") for text in TEXTS]
    txt_path = tmp_path / "texts.txt"
    txt_path.write_text("\n".join(plain) + "\n", encoding="utf-8")

    def profile(path: Path) -> Any:
        reference = read_reference_texts(path)
        return build_reference_profile(
            texts=reference.texts,
            source="s",
            tokenizer=_whitespace_tokenizer,
            max_length=16,
            min_samples=1,
        )

    assert profile(csv_path) == profile(txt_path)


def test_no_file_means_the_package_corpus() -> None:
    reference = read_reference_texts(None)

    assert reference.source == PACKAGE_CORPUS
    assert len(reference.texts) > 100


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.csv", "body,label\nsome text,a\n", "--drift-reference {path}, line 1: the header"),
        ("data.tsv", "text\tlabel\nsome text\ta\n", "tab-separated files are not read"),
        ("header.csv", "text,label\n", "has no non-blank text"),
        ("blank.csv", "text,label\n  ,a\n", "has no non-blank text"),
        ("blank.txt", "\n  \n", "has no non-blank text"),
        ("nul.txt", "a\x00b\n", "holds NUL bytes: it is not text"),
    ],
    ids=["csv-without-text-column", "tsv", "csv-header-only", "csv-blank-texts", "blank-lines",
         "nul-bytes"],
)  # fmt: skip
def test_an_unusable_reference_is_one_config_error_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        read_reference_texts(path)

    assert message.format(path=path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_reference_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("fine\ncaf\xe9\n".encode("latin-1"))

    with pytest.raises(ConfigError, match=r"--drift-reference .*, line 2: not valid UTF-8"):
        read_reference_texts(path)


def test_an_export_without_a_drift_reference_names_the_training_data_it_finds(
    tmp_path: Path,
) -> None:
    trained_on = tmp_path / "train.csv"
    trained_on.write_text("text,label\ngreat,positive\n", encoding="utf-8")
    model = tmp_path / "model"
    model.mkdir()

    assert "pass --drift-reference with texts like your traffic" in default_reference_note(model)
    (model / "metrics.json").write_text(json.dumps({"options": {"data": str(trained_on)}}))
    assert default_reference_note(model).endswith(f"pass --drift-reference {trained_on}")
    trained_on.unlink()  # moved since: not named
    assert "texts like your traffic" in default_reference_note(model)
