"""Read and check the ``text,label`` CSV files a classifier is trained and evaluated on."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonhf.errors import DatasetError
from tritonhf.spec import shown_label

TEXT_COLUMN = "text"
LABEL_COLUMN = "label"
_EXPECTED = f"a header line `{TEXT_COLUMN},{LABEL_COLUMN}`"


@dataclass(frozen=True)
class LabelledTexts:
    """The rows of one CSV file: texts, their labels, and the line each row starts on."""

    path: Path
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    lines: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def label_counts(self) -> dict[str, int]:
        """How many rows carry each label, in label id order (`label_order`)."""
        counts = Counter(self.labels)
        return {label: counts[label] for label in label_order(self.labels)}


@dataclass(frozen=True)
class TrainingData:
    """The training split, the optional evaluation split, and the label set they share."""

    train: LabelledTexts
    eval: LabelledTexts | None
    labels: tuple[str, ...]
    """In `label_order`, so label ids are stable across runs and machines."""

    def label_ids(self, split: LabelledTexts) -> list[int]:
        """The id of each row's label in ``split`` (its index in `labels`)."""
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[label] for label in split.labels]

    def labels_of_one_number(self) -> list[tuple[str, ...]]:
        """Groups of integer labels that are one number written differently ("01", "1")."""
        groups: dict[str, list[str]] = {}
        for label in self.labels:
            key = str(int(label)) if _INTEGER.fullmatch(label) else label
            groups.setdefault(key, []).append(label)
        return [tuple(group) for group in groups.values() if len(group) > 1]

    def texts_with_several_labels(self) -> int:
        """How many distinct training texts carry more than one label (contradictory rows)."""
        seen: dict[str, set[str]] = {}
        for text, label in zip(self.train.texts, self.train.labels, strict=True):
            seen.setdefault(text, set()).add(label)
        return sum(len(labels) > 1 for labels in seen.values())

    def eval_texts_seen_in_train(self) -> int:
        """How many evaluation rows have a text that also occurs in the training split."""
        if self.eval is None:
            return 0
        seen = {text.casefold() for text in self.train.texts}
        return sum(text.casefold() in seen for text in self.eval.texts)


def text_lines(text: str) -> list[str]:
    r"""``text``'s lines, ended by ``\n``, ``\r\n`` or a bare ``\r`` only.

    ``str.splitlines`` also ends a line at U+2028, U+0085, a form feed and other separators
    that a text may hold: a file of 2 lines read as 5 texts.
    """
    return re.split(r"\r\n|\r|\n", text)


def decode_utf8(path: Path, *, expected: str = f"a CSV file with {_EXPECTED}") -> str:
    """The file's text, a leading byte-order mark dropped.

    `DatasetError` names the line of the first byte that is not UTF-8, or says what to pass
    instead of a missing file or a folder.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file; pass {expected}") from None
    except IsADirectoryError:
        raise DatasetError(f"{path} is a folder; pass {expected}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror})") from exc
    try:
        # utf-8-sig: spreadsheet programs often start the file with a byte-order mark.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}, line {line}: not valid UTF-8 ({exc.reason} at byte {exc.start}); "
            "save the file as UTF-8"
        ) from None


def _csv_rows(content: str) -> Any:
    """A strict reader over ``content`` that takes texts of any length.

    Python's csv refuses a field over 128 KiB as malformed; a long text is the tokenizer's to
    truncate. ``newline=""``: csv handles line ends itself (quoted texts may span lines).
    """
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    return csv.reader(io.StringIO(content, newline=""), strict=True)


def _column_names(header: list[str]) -> list[str]:
    """A header's column names as they are matched: any case, spaces around ignored."""
    return [name.strip().lower() for name in header]


def _separator_hint(header: list[str]) -> str:
    """What to do about a header that shows another separator than a comma, or none."""
    if header and header[0].strip().lower().startswith("sep="):
        return " (drop the first line: it is a spreadsheet's `sep=` marker)"
    if len(header) == 1 and "\t" in header[0]:
        return " (the file looks tab-separated: save it comma-separated)"
    if len(header) == 1 and ";" in header[0]:
        return " (the file looks semicolon-separated: save it comma-separated)"
    return ""


def read_labelled_csv(path: Path) -> LabelledTexts:
    """Read a CSV with columns ``text`` and ``label`` (others are ignored).

    Labels are stripped and NFC-normalised. Raises `DatasetError` naming the file, the line and
    the problem: a missing column, a row with too few or too many fields, an empty text or
    label, or no rows at all.
    """
    path = Path(path)
    content = decode_utf8(path)
    if content.lstrip().startswith(("{", "[")):
        raise DatasetError(
            f"{path} looks like JSON; training data is a CSV file with {_EXPECTED} "
            "(JSON Lines converts with pandas: pd.read_json(FILE, lines=True).to_csv(OUT, "
            "index=False))"
        )
    reader = _csv_rows(content)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: the file is empty; it needs {_EXPECTED}") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}, line 1: malformed CSV ({exc})") from None
    names = _column_names(header)
    missing = [column for column in (TEXT_COLUMN, LABEL_COLUMN) if column not in names]
    if missing:
        raise DatasetError(
            f"{path}, line 1: the header {header} lacks the column(s) {missing}; "
            f"the first line must be {_EXPECTED}{_separator_hint(header)}"
        )
    twice = [column for column in (TEXT_COLUMN, LABEL_COLUMN) if names.count(column) > 1]
    if twice:
        raise DatasetError(
            f"{path}, line 1: the header {header} names {twice[0]!r} more than once; "
            "keep one such column"
        )
    text_at, label_at = names.index(TEXT_COLUMN), names.index(LABEL_COLUMN)
    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(f"{path}, line {start}: malformed CSV ({exc})") from None
        if not row or all(not field.strip() for field in row):
            continue  # blank lines are not rows
        if len(row) != len(header):
            raise DatasetError(
                f"{path}, line {start}: {len(row)} field(s) where the header has "
                f"{len(header)}; put texts that contain commas in double quotes"
            )
        # NFC: a label typed on one system and pasted from another ("négatif" as é or as e
        # and a combining accent) is one class, not two that print alike.
        text, label = row[text_at].strip(), unicodedata.normalize("NFC", row[label_at].strip())
        if not text:
            raise DatasetError(f"{path}, line {start}: the text is empty; remove the row")
        if not label:
            raise DatasetError(f"{path}, line {start}: the label is empty; every row needs one")
        texts.append(text)
        labels.append(label)
        lines.append(start)
    if not texts:
        raise DatasetError(f"{path}: no rows after the header; add `text,label` rows")
    return LabelledTexts(path=path, texts=tuple(texts), labels=tuple(labels), lines=tuple(lines))


def has_label_column(path: Path) -> bool:
    """Whether the CSV's header names a ``label`` column (any case, spaces around)."""
    reader = _csv_rows(decode_utf8(path))
    try:
        header: list[str] = next(reader, [])
    except csv.Error:
        return False
    return LABEL_COLUMN in _column_names(header)


def read_text_column(path: Path) -> list[str]:
    """The non-empty ``text`` column of a CSV.

    The header is read as for training: any case, surrounding spaces and other columns ignored.
    """
    reader = _csv_rows(decode_utf8(path, expected=f"a CSV file with a {TEXT_COLUMN!r} column"))
    texts: list[str] = []
    try:
        header: list[str] = next(reader, [])
        names = _column_names(header)
        if TEXT_COLUMN not in names:
            raise DatasetError(f"{path}, line 1: the header {header} has no {TEXT_COLUMN!r} column")
        at = names.index(TEXT_COLUMN)
        for row in reader:
            if len(row) > at and row[at].strip():
                texts.append(row[at])
    except csv.Error as exc:
        raise DatasetError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    return texts


_INTEGER = re.compile(r"[+-]?[0-9]+")
"""An integer label: ASCII digits (``int`` refuses "²"), one optional sign ("--1" is text)."""


def label_order(labels: Sequence[str]) -> tuple[str, ...]:
    """The classes in id order: by value when every label is an integer, else alphabetically.

    So labels "0", "2", "10" get ids 0, 1, 2 in that order, not "0", "10", "2".
    """
    distinct = set(labels)
    if all(_INTEGER.fullmatch(label) for label in distinct):
        return tuple(sorted(distinct, key=lambda label: (int(label), label)))
    return tuple(sorted(distinct))


def load_training_data(*, train: Path, eval_data: Path | None) -> TrainingData:
    """Read both splits and check they fit together.

    The training split needs at least two labels; every evaluation label must occur in the
    training split (a label the model never saw cannot be predicted).
    """
    train_rows = read_labelled_csv(train)
    labels = label_order(train_rows.labels)
    if len(labels) < 2:
        raise DatasetError(
            f"{train_rows.path}: every one of its {len(train_rows)} rows has the label "
            f"{labels[0]!r}; a classifier needs examples of at least 2 labels"
        )
    eval_rows = read_labelled_csv(eval_data) if eval_data is not None else None
    if eval_rows is not None:
        known = set(labels)
        for label, line in zip(eval_rows.labels, eval_rows.lines, strict=True):
            if label not in known:
                names = ", ".join(map(shown_label, labels))
                raise DatasetError(
                    f"{eval_rows.path}, line {line}: the label {label!r} does not occur in the "
                    f"training data {train_rows.path} (labels: {names}); add training examples "
                    "for it or fix the label"
                )
    return TrainingData(train=train_rows, eval=eval_rows, labels=labels)
