"""The acceptance gate's figures and verdicts, on arrays whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonhf.errors import ConfigError, DatasetError, ValidationError
from tritonhf.export.validate import OutputDiff, ValidationReport
from tritonhf.gate.acceptance import AcceptanceOptions, read_texts, served_precision
from tritonhf.gate.agreement import (
    Criterion,
    Thresholds,
    classifier_gate,
    cosine_similarities,
    embedding_gate,
    neighbour_agreement,
)
from tritonhf.spec import EMBEDDING, LABEL, Precision

RNG = np.random.default_rng(0)


def unit_rows(n: int, dim: int = 16) -> np.ndarray:
    rows = RNG.normal(size=(n, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_identical_embeddings_pass_even_the_fp32_gate() -> None:
    reference = unit_rows(40)
    report = embedding_gate(
        reference.copy(),
        reference,
        thresholds=Thresholds.for_precision(Precision.FP32),
        precision=Precision.FP32,
        subject="same",
    )
    assert report.passed
    assert {c.name: round(c.value, 6) for c in report.criteria} == {
        "min cosine": 1.0,
        "mean cosine": 1.0,
        "top-5 agreement": 1.0,
    }


def test_one_moved_embedding_fails_min_cosine_but_not_the_mean() -> None:
    reference = unit_rows(200)
    candidate = reference.copy()
    candidate[7] = unit_rows(1)[0]  # an unrelated vector: cosine near 0
    report = embedding_gate(
        candidate,
        reference,
        thresholds=Thresholds.for_precision(Precision.INT8),
        precision=Precision.INT8,
        subject="one moved",
    )
    failed = {c.name for c in report.failures}
    assert "min cosine" in failed
    assert "mean cosine" not in failed
    assert not report.passed
    assert "verdict: FAIL" in report.table()
    with pytest.raises(ValidationError, match="min cosine"):
        report.raise_if_failed()


def test_cosine_ignores_scale() -> None:
    reference = unit_rows(5)
    assert np.allclose(cosine_similarities(3.0 * reference, reference), 1.0)


def test_neighbour_agreement_counts_shared_neighbours() -> None:
    # Points on a line: each one's nearest neighbours are known exactly.
    reference = np.stack([np.cos(np.linspace(0, 1.5, 12)), np.sin(np.linspace(0, 1.5, 12))], 1)
    assert neighbour_agreement(reference, reference) == 1.0
    shuffled = reference[RNG.permutation(12)]
    assert neighbour_agreement(shuffled, reference) < 1.0


def test_neighbour_agreement_with_fewer_texts_than_neighbours() -> None:
    assert neighbour_agreement(unit_rows(1), unit_rows(1)) == 1.0
    three = unit_rows(3)
    assert neighbour_agreement(three, three) == 1.0  # k shrinks to 2


def test_classifier_gate_reads_the_served_label_strings() -> None:
    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = ("negative", "positive")
    swapped = np.array(["positive", "negative", "positive"], dtype=object)
    report = classifier_gate(
        reference.copy(),
        reference,
        thresholds=Thresholds.for_precision(Precision.FP32),
        precision=Precision.FP32,
        subject="swapped labels",
        candidate_labels=swapped,
        labels=labels,
    )
    agreement = next(c for c in report.criteria if c.name == "label agreement")
    assert agreement.value == 0.0
    assert not report.passed


def test_classifier_gate_bounds_the_probability_difference() -> None:
    reference = np.array([[0.7, 0.3], [0.4, 0.6]])
    candidate = reference + np.array([[0.05, -0.05], [0.0, 0.0]])
    report = classifier_gate(
        candidate,
        reference,
        thresholds=Thresholds.for_precision(Precision.FP32),
        precision=Precision.FP32,
        subject="drifted",
    )
    assert [c.name for c in report.failures] == ["max probability diff"]
    assert report.failures[0].value == pytest.approx(0.05)


def test_int8_thresholds_report_but_do_not_gate_the_probability_difference() -> None:
    assert Thresholds.for_precision(Precision.INT8).max_probability_diff is None
    assert Criterion("x", 0.9, None).passed


@pytest.mark.parametrize(
    ("candidate", "reference", "message"),
    [
        (np.ones((2, 3)), np.ones((2, 4)), "shape"),
        (np.ones((0, 3)), np.ones((0, 3)), "no texts"),
        (np.full((2, 3), np.nan), np.ones((2, 3)), "NaN"),
    ],
    ids=["shape", "empty", "nan"],
)
def test_unusable_outputs_are_validation_errors(
    candidate: np.ndarray, reference: np.ndarray, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        embedding_gate(
            candidate,
            reference,
            thresholds=Thresholds.for_precision(Precision.FP32),
            precision=Precision.FP32,
            subject="bad",
        )


def test_thresholds_are_fractions_and_overrides_replace_only_given_fields() -> None:
    with pytest.raises(ConfigError, match="min_cosine"):
        Thresholds.for_precision(Precision.FP32).with_overrides(min_cosine=1.5)
    relaxed = Thresholds.for_precision(Precision.INT8).with_overrides(
        top5_agreement=0.9, min_cosine=None
    )
    assert relaxed.top5_agreement == 0.9
    assert relaxed.min_cosine == Thresholds.for_precision(Precision.INT8).min_cosine


def test_report_as_dict_is_json_ready() -> None:
    reference = unit_rows(10)
    report = embedding_gate(
        reference,
        reference,
        thresholds=Thresholds.for_precision(Precision.FP16),
        precision=Precision.FP16,
        subject="same",
    )
    data = report.as_dict()
    assert data["precision"] == "fp16"
    assert data["passed"] is True
    assert data["criteria"]["min cosine"]["bound"] == 0.999


def test_read_texts_takes_a_csv_text_column_or_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    csv_file = tmp_path / "eval.csv"
    csv_file.write_text('text,label\n"a, quoted one",pos\nplain,neg\n', encoding="utf-8")
    lines = tmp_path / "eval.txt"
    lines.write_text("first\n\n  \nsecond\n", encoding="utf-8")
    assert read_texts(csv_file) == ["a, quoted one", "plain"]
    assert read_texts(lines) == ["first", "second"]
    assert len(read_texts(None)) > 100


def test_read_texts_reads_csv_headers_as_training_does(tmp_path: Path) -> None:
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf Text ,label\ngreat place,positive\nawful place,negative\n")
    assert read_texts(excel) == ["great place", "awful place"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"label\npos\n", "no 'text' column"),
        (b"text\nonly one\n", "needs >= 2"),
        (b"text,label\n", "0 non-empty texts"),
        (b"", "no 'text' column"),
        (b"text,label\ngr\xe9at,positive\nawful,negative\n", "line 2: not valid UTF-8"),
    ],
    ids=["no-text-column", "one-text", "header-only", "empty", "latin-1"],
)
def test_read_texts_rejects_unusable_data_naming_why(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "eval.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        read_texts(path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "--limit must be >= 2"),
        ({"limit": -5}, "--limit must be >= 2"),
        ({"limit": 1}, "--limit must be >= 2"),
        ({"overrides": {"label_agreement": 2.0}}, "label_agreement must be in"),
        ({"overrides": {"max_probability_diff": -1.0}}, "max_probability_diff must be >= 0"),
    ],
)
def test_bad_validate_options_are_config_errors_before_any_work(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        AcceptanceOptions(reference="default", model="minilm", **options)  # type: ignore[arg-type]


def test_served_precision_defaults_to_fp32_for_older_exports() -> None:
    assert served_precision({}) is Precision.FP32
    declared = {"parameters": {"precision": {"string_value": "int8"}}}
    assert served_precision(declared) is Precision.INT8


def test_a_tab_separated_file_is_refused_not_read_as_lines(tmp_path: Path) -> None:
    data = tmp_path / "eval.tsv"
    data.write_text("text\tlabel\ngreat\tpos\nbad\tneg\n", encoding="utf-8")

    with pytest.raises(DatasetError, match="tab-separated files are not read"):
        read_texts(data)


@pytest.mark.parametrize(
    ("diffs", "advice"),
    [
        ((OutputDiff(EMBEDDING, (4, 8), 3e-6),), "raise --atol"),
        ((OutputDiff(EMBEDDING, (4, 8), 0.2),), "try another --opset"),
        (
            (OutputDiff(EMBEDDING, (4, 8), 3e-6), OutputDiff(LABEL, (4, 1), 0.25, tolerance=0.0)),
            "try another --opset",
        ),
    ],
    ids=["rounding", "real-difference", "labels-disagree"],
)
def test_a_failed_validation_says_whose_move_it_is(
    diffs: tuple[OutputDiff, ...], advice: str
) -> None:
    report = ValidationReport(outputs=diffs, atol=1e-7, num_texts=4, batch_size=4)
    assert not report.passed
    assert advice in report.advice()
