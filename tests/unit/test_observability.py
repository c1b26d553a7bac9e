from __future__ import annotations

import io
import json
import logging
import math
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tritonhf.errors import ConfigError
from tritonhf.observability import metrics as m
from tritonhf.observability.client_metrics import ClientMetrics
from tritonhf.observability.drift import (
    ALERT_THRESHOLD,
    EMBEDDING_SIMILARITY,
    LABEL,
    MIN_EMBEDDED_REFERENCE,
    PROPORTION_FLOOR,
    DriftWindow,
    FeatureProfile,
    ReferenceProfile,
    embedding_similarity_profile,
    label_profile,
    psi,
    token_length_profile,
)
from tritonhf.observability.feedback import FeedbackError, check_request_id, make_feedback
from tritonhf.observability.logs import (
    LOG_TEXT_ENV,
    LOGGED_TEXT_CHARS,
    JsonFormatter,
    TextLogging,
    configure_json_logging,
    log_event,
    text_fields,
    text_hash,
)
from tritonhf.observability.reference import build_reference_profile
from tritonhf.observability.steps import (
    ModelObserver,
    RequestOutcome,
    TokenizerObserver,
    _NoMetrics,
)

# PSI -------------------------------------------------------------------------------------


def test_psi_of_identical_distributions_is_zero() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)


def test_psi_matches_the_formula_by_hand() -> None:
    actual, expected = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])
    by_hand = sum((a - e) * math.log(a / e) for a, e in zip(actual, expected, strict=True))

    assert psi(actual, expected) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(0.5498, abs=1e-4)


def test_psi_floors_empty_bins_so_a_new_category_gives_a_large_finite_score() -> None:
    score = psi([50, 50], [100, 0])

    floor = PROPORTION_FLOOR
    assert score == pytest.approx((0.5 - 1) * math.log(0.5) + (0.5 - floor) * math.log(0.5 / floor))
    assert math.isfinite(score)
    assert score > ALERT_THRESHOLD


@pytest.mark.parametrize(
    ("actual", "expected"), [([1, 2], [1, 2, 3]), ([0, 0], [1, 1]), ([1, -1], [1, 1]), ([1], [1])]
)
def test_psi_rejects_unusable_distributions(actual: list[int], expected: list[int]) -> None:
    with pytest.raises(ConfigError, match="PSI needs"):
        psi(actual, expected)


# Profiles and windows ----------------------------------------------------------------------


def test_token_length_profile_keeps_a_bin_of_its_own_for_truncated_texts() -> None:
    profile = token_length_profile(list(range(5, 105)), max_length=128)

    assert profile.edges[-1] == 127
    assert profile.proportions[-1] == 0.0  # nothing in the reference reaches max_length
    assert profile.bin_numbers([128, 500]).tolist() == [profile.num_bins - 1] * 2
    assert sum(profile.proportions) == pytest.approx(1.0)
    assert profile.count == 100


def test_token_length_profile_of_an_empty_reference_is_an_error() -> None:
    with pytest.raises(ConfigError, match="reference set is empty"):
        token_length_profile([], max_length=16)


def test_numeric_bins_are_upper_inclusive() -> None:
    profile = FeatureProfile("x", (0.25, 0.25, 0.5), 4, edges=(10.0, 20.0))

    assert profile.bin_numbers([1, 10, 11, 20, 21]).tolist() == [0, 0, 1, 1, 2]


def test_label_profile_counts_each_class_in_label_order() -> None:
    profile = label_profile(["b", "a", "b", "b"], ["a", "b", "c"])

    assert profile.proportions == (0.25, 0.75, 0.0)
    assert profile.bin_categories(["c", "unknown", "a"]).tolist() == [2, 0]


def test_a_feature_needs_edges_or_categories_and_matching_proportions() -> None:
    with pytest.raises(ConfigError, match="either edges or categories"):
        FeatureProfile("x", (0.5, 0.5), 2)
    with pytest.raises(ConfigError, match="3 proportions for 2 bins"):
        FeatureProfile("x", (0.2, 0.3, 0.5), 2, categories=("a", "b"))


def test_drift_window_reports_nothing_until_min_samples_then_slides(tmp_path: Path) -> None:
    profile = FeatureProfile("label", (0.5, 0.5), 10, categories=("a", "b"))
    window = DriftWindow(profile, size=4, min_samples=2)

    window.add_categories(["a"])
    assert window.score() is None
    window.add_categories(["b", "a", "b"])
    assert window.score() == pytest.approx(0.0)
    window.add_categories(["a", "a", "a", "a"])  # the b's slid out
    assert len(window) == 4
    assert window.score() == pytest.approx(psi([4, 0], [1, 1]))


def clustered(count: int, *, seed: int, dims: int = 384) -> np.ndarray:
    """``count`` embeddings around one direction, as texts on one subject give: cosine ~0.2
    with their centroid, as the package corpus's MiniLM embeddings."""
    rng = np.random.default_rng(seed)
    direction = np.zeros(dims)
    direction[0] = 1.0
    return direction + rng.normal(scale=0.25, size=(count, dims))


def test_the_similarity_profile_leaves_each_text_out_of_the_centroid_it_is_compared_with() -> None:
    """With itself in the mean, a reference text reads closer than a new text of its kind,
    so traffic like the reference read as drift (PSI 0.55 on halves of the package corpus)."""
    reference = clustered(200, seed=1)

    profile = embedding_similarity_profile(reference)

    assert profile is not None
    assert profile.name == EMBEDDING_SIMILARITY
    assert np.linalg.norm(profile.anchor) == pytest.approx(1.0)
    assert profile.proportions == pytest.approx([0.1] * 10)
    alike = DriftWindow(profile, size=500, min_samples=100)
    alike.add_values(profile.similarities(clustered(500, seed=2)))
    assert alike.score() < 0.1  # type: ignore[operator]  # 0.24 with itself in the mean


def test_embeddings_on_another_subject_move_the_similarity_score_past_the_threshold() -> None:
    profile = embedding_similarity_profile(clustered(200, seed=1))
    assert profile is not None
    elsewhere = clustered(500, seed=3)[:, ::-1]  # the same spread around another direction
    window = DriftWindow(profile, size=500, min_samples=100)

    window.add_values(profile.similarities(elsewhere))

    assert window.score() > ALERT_THRESHOLD  # type: ignore[operator]


def test_the_similarity_profile_skips_unusable_rows_and_needs_enough_of_them() -> None:
    """Against 2 texts, traffic like them scored PSI 10.3 and another subject 0 (probe R5)."""
    rows = clustered(MIN_EMBEDDED_REFERENCE + 1, seed=1)  # 2 unusable: one too few
    rows[1] = np.nan
    rows[2] = 0.0

    assert embedding_similarity_profile(rows) is None
    profile = embedding_similarity_profile(np.vstack([rows, clustered(1, seed=2)]))
    assert profile is not None
    assert profile.similarities(rows[:3]).shape == (1,)  # cosines of usable rows only


def test_the_similarity_reference_is_the_distinct_texts_and_enough_of_them() -> None:
    """A training CSV repeats texts: each copy left in the mean read closer (like-traffic
    0.216 -> 0.314 with every text twice), and 2 identical texts gave a profile that scored
    everything 0."""
    texts = [f"text {i}" for i in range(MIN_EMBEDDED_REFERENCE)]
    embedded: list[list[str]] = []

    def embedder(batch: Sequence[str]) -> np.ndarray:
        embedded.append(list(batch))
        return clustered(len(batch), seed=len(embedded))

    def profile(reference: list[str]) -> ReferenceProfile:
        return build_reference_profile(
            texts=reference, source="t", tokenizer=_Lengths(), max_length=16, embedder=embedder
        )

    assert EMBEDDING_SIMILARITY in profile(texts * 2).features
    assert embedded[-1] == texts
    assert EMBEDDING_SIMILARITY not in profile(texts[:-1] * 3).features
    assert EMBEDDING_SIMILARITY not in profile(["same", "same"]).features


class _Lengths:
    """A tokenizer stand-in: a text's words are its tokens."""

    def __call__(self, texts: list[str], **_: Any) -> dict[str, list[list[int]]]:
        return {"input_ids": [[0] * len(text.split()) for text in texts]}


def test_reference_profile_round_trips_through_json(tmp_path: Path) -> None:
    similarity = embedding_similarity_profile(clustered(MIN_EMBEDDED_REFERENCE, seed=1))
    assert similarity is not None
    profile = ReferenceProfile(
        features={
            "token_length": token_length_profile([3, 5, 8, 13, 21], max_length=16),
            "label": label_profile(["x", "y"], ["x", "y"]),
            similarity.name: similarity,
        },
        source="unit test",
        window=50,
        min_samples=10,
    )
    path = tmp_path / "drift_reference.json"

    profile.save(path)

    assert ReferenceProfile.load(path) == profile
    assert ReferenceProfile.load(tmp_path / "missing.json") is None
    assert json.loads(path.read_text())["alert_threshold"] == ALERT_THRESHOLD


def test_reference_profile_checks_the_window() -> None:
    with pytest.raises(ConfigError, match="min_samples <= window"):
        ReferenceProfile(features={}, source="", window=10, min_samples=20)


# Logs --------------------------------------------------------------------------------------


def _with_fields(fields: dict[str, Any]) -> logging.LogRecord:
    made = logging.LogRecord("tritonhf.requests", logging.WARNING, __file__, 1, "infer", None, None)
    made.fields = fields
    return made


def test_json_formatter_writes_one_object_with_the_fields_at_top_level() -> None:
    line = JsonFormatter().format(
        _with_fields({"request_id": "r1", "tokens": [3, 4], "p": Path("/x")})
    )

    parsed = json.loads(line)
    assert "\n" not in line
    assert parsed["event"] == "infer"
    assert parsed["level"] == "warning"
    assert parsed["logger"] == "tritonhf.requests"
    assert parsed["request_id"] == "r1"
    assert parsed["tokens"] == [3, 4]
    assert parsed["p"] == "/x"
    assert parsed["ts"].endswith("+00:00")


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, TextLogging.OFF),
        ("", TextLogging.OFF),
        ("hash", TextLogging.HASH),
        (" RAW ", TextLogging.RAW),
    ],
)
def test_text_logging_setting_is_parsed_from_the_environment(
    value: str | None, mode: TextLogging
) -> None:
    environ = {} if value is None else {LOG_TEXT_ENV: value}

    assert TextLogging.from_env(environ) is mode


def test_an_unknown_text_logging_setting_names_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match="off, hash, raw"):
        TextLogging.parse("yes")


def test_text_fields_hide_text_by_default_and_hash_or_show_it_on_request() -> None:
    texts = ["secret one", "secret two"]

    assert text_fields(texts, TextLogging.OFF) == {}
    assert text_fields(texts, TextLogging.HASH) == {"text_sha256": [text_hash(t) for t in texts]}
    assert text_fields(texts, TextLogging.RAW) == {"text": texts}
    assert len(text_hash("x")) == 16
    assert text_hash("x") != text_hash("y")


def test_a_raw_log_line_carries_the_start_of_a_long_text_and_counts_the_rest() -> None:
    long = "word " * 300_000  # 1.5 MB: one request of 64 such texts made a 96 MB line

    (logged,) = text_fields([long], TextLogging.RAW)["text"]

    assert (
        logged
        == long[:LOGGED_TEXT_CHARS] + f"... [{len(long) - LOGGED_TEXT_CHARS:,} more characters]"
    )
    assert text_fields(["x" * LOGGED_TEXT_CHARS], TextLogging.RAW) == {
        "text": ["x" * LOGGED_TEXT_CHARS]
    }


def test_non_ascii_fields_reach_a_stream_that_takes_only_ascii() -> None:
    # A Triton Python-backend stub's stdout encodes ASCII only.
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict", write_through=True)
    logger = configure_json_logging(stream, logger=f"tritonhf.test.{uuid.uuid4().hex}")
    fields = {"label": "négatif", "text": ["שלום", "great 😀"], "request_id": "ид-1"}

    log_event(logger, "infer", outcome="ok", **fields)

    (line,) = raw.getvalue().decode("ascii").splitlines()
    assert {key: json.loads(line)[key] for key in fields} == fields


def test_configure_json_logging_is_idempotent_and_does_not_propagate() -> None:
    stream = io.StringIO()
    logger = configure_json_logging(stream, logger="tritonhf.test.idempotent")
    configure_json_logging(stream, logger="tritonhf.test.idempotent")

    log_event(logger, "tokenize", outcome="ok", request_id="a")
    log_event(logger, "tokenize", outcome="error", request_id="b")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["request_id"], r["level"]) for r in lines] == [("a", "info"), ("b", "warning")]
    assert logger.propagate is False


def test_a_long_request_id_is_logged_cut_to_the_clients_limit() -> None:
    # Triton takes any id a raw client sends; each step's line would repeat all of it.
    stream = io.StringIO()
    logger = configure_json_logging(stream, logger=f"tritonhf.test.{uuid.uuid4().hex}")

    log_event(logger, "tokenize", outcome="ok", request_id="r" * 10_000)
    log_event(logger, "tokenize", outcome="ok", request_id="k" * 128)

    cut, kept = (json.loads(line)["request_id"] for line in stream.getvalue().splitlines())
    assert cut == "r" * 128 + "... [9,872 more characters]"
    assert kept == "k" * 128


def test_importing_the_package_configures_no_logging() -> None:
    assert not logging.getLogger("tritonhf").handlers or all(
        h.get_name() != "tritonhf-json" for h in logging.getLogger("tritonhf").handlers
    )


def tokenizer_observer(stream: io.StringIO, mode: TextLogging) -> TokenizerObserver:
    observer = TokenizerObserver(_NoMetrics(), "minilm", None, mode)
    observer.log = configure_json_logging(stream, logger=f"tritonhf.test.{uuid.uuid4().hex}")
    return observer


@pytest.mark.parametrize("mode", list(TextLogging))
def test_tokenizer_observer_logs_counts_and_text_only_as_configured(mode: TextLogging) -> None:
    stream = io.StringIO()
    observer = tokenizer_observer(stream, mode)
    ok, bad = RequestOutcome("req-1"), RequestOutcome("req-2")
    ok.succeed(["private words", "more"], np.array([[5], [3]]), np.array([[True], [False]]))
    error = ValueError("TEXT[0] has no tokens")
    error.reason = "empty"  # type: ignore[attr-defined]
    bad.fail(error, ["   "])

    observer.record([ok, bad], started=0.0)
    observer.flush()

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "req-1"
    assert (first["tokens"], first["tokens_total"], first["truncated"]) == ([5, 3], 8, 1)
    assert (first["texts"], first["batch_requests"], first["outcome"]) == (2, 2, "ok")
    assert (second["outcome"], second["reason"], second["error_type"]) == (
        "error",
        "empty",
        "ValueError",
    )
    assert ("private words" in stream.getvalue()) is (mode is TextLogging.RAW)
    assert ("text_sha256" in first) is (mode is TextLogging.HASH)


def test_the_model_observer_scores_an_embedders_similarity_and_a_classifiers_labels() -> None:
    similarity = embedding_similarity_profile(clustered(200, seed=1))
    assert similarity is not None
    tokens = token_length_profile([3, 5, 8], max_length=16)
    embedder = ModelObserver(
        _NoMetrics(),
        "minilm",
        ReferenceProfile({"token_length": tokens, similarity.name: similarity}, "t", 50, 10),
        TextLogging.OFF,
    )
    labels = label_profile(["x", "y"], ["x", "y"])
    classifier = ModelObserver(
        _NoMetrics(), "clf", ReferenceProfile({LABEL: labels}, "t", 50, 10), TextLogging.OFF
    )
    try:
        rows = clustered(8, seed=4).astype(np.float32)
        embedder.record(["a", "b"], [{"EMBEDDING": rows[:6]}, {"EMBEDDING": rows[6:]}], [], 0.0)
        embedder.record(["c"], [{"EMBEDDING": rows}], [], 0.0, drift=[False])
        embedder.flush()

        assert (classifier.feature, embedder.feature) == (LABEL, EMBEDDING_SIMILARITY)
        assert embedder.drift is not None
        assert len(embedder.drift) == 8  # the request sent with drift false stays out
    finally:
        embedder.close()
        classifier.close()


def test_a_request_whose_texts_did_not_decode_logs_how_many_it_sent() -> None:
    stream = io.StringIO()
    observer = tokenizer_observer(stream, TextLogging.OFF)
    outcome = RequestOutcome("bad-bytes")
    error = ValueError("TEXT[1] is not UTF-8")
    error.reason = "not_utf8"  # type: ignore[attr-defined]
    outcome.fail(error, sent=3)

    observer.record([outcome], started=0.0)
    observer.flush()

    line = json.loads(stream.getvalue())
    assert (line["texts"], line["reason"]) == (3, "not_utf8")


def test_a_failing_recorder_never_fails_the_step() -> None:
    stream = io.StringIO()
    observer = tokenizer_observer(stream, TextLogging.OFF)

    class Broken(_NoMetrics):
        def increment(self, metric: m.MetricDef, amount: float = 1.0, *labels: str) -> None:
            raise RuntimeError("metrics server gone")

    observer.metrics = Broken()
    outcome = RequestOutcome("r")
    outcome.succeed(["a"], np.array([[3]]), np.array([[False]]))

    observer.record([outcome], started=0.0)
    observer.record([outcome], started=0.0)
    observer.close()

    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events.count("observability_error") == 1


# Metric helpers ----------------------------------------------------------------------------


def test_metric_names_are_prefixed_unique_and_labelled_by_model() -> None:
    names = [metric.name for metric in m.ALL_METRICS]

    assert len(names) == len(set(names))
    assert all(name.startswith("tritonhf_") for name in names)
    assert all(metric.labels[0] == "model" for metric in m.ALL_METRICS)
    assert all(
        metric.name.endswith("_total") for metric in m.ALL_METRICS if metric.kind is m.Kind.COUNTER
    )
    assert all(
        list(metric.buckets) == sorted(metric.buckets) and metric.buckets
        for metric in m.ALL_METRICS
        if metric.kind is m.Kind.HISTOGRAM
    )


def test_a_histogram_is_exposed_as_bucket_sum_and_count() -> None:
    assert m.exposed_names(m.CONFIDENCE) == (
        "tritonhf_prediction_confidence_bucket",
        "tritonhf_prediction_confidence_sum",
        "tritonhf_prediction_confidence_count",
    )
    assert m.exposed_names(m.DRIFT) == ("tritonhf_drift_psi",)


def test_label_counts_cost_one_increment_per_distinct_label() -> None:
    assert m.label_counts(["pos", "neg", "pos", "pos"]) == {"pos": 3, "neg": 1}


def test_embedding_health_flags_non_finite_rows_and_norms_off_one() -> None:
    rows = np.array([[0.6, 0.8], [3.0, 4.0], [np.nan, 0.0], [1.0, 0.0]], dtype=np.float32)

    mean, nonfinite, off = m.embedding_health(rows)

    assert mean == pytest.approx((1 + 5 + 1) / 3)
    assert (nonfinite, off) == (1, 1)
    # A model without Normalize: any norm is fine, non-finite rows still count.
    assert m.embedding_health(rows, unit_norm=False)[1:] == (1, 0)


# Feedback validation -----------------------------------------------------------------------


def test_feedback_accepts_a_known_label_and_names_the_rating() -> None:
    feedback = make_feedback(
        request_id="ab12", positive=False, corrected_label="neg", labels=["neg", "pos"]
    )

    assert (feedback.rating, feedback.corrected_label) == ("negative", "neg")


def test_a_correction_in_another_unicode_form_is_the_models_label() -> None:
    labels = ["n\u00e9gatif", "positif"]  # NFC, as training writes them

    feedback = make_feedback(
        request_id="ab12", positive=False, corrected_label="ne\u0301gatif", labels=labels
    )

    assert feedback.corrected_label == "n\u00e9gatif"


@pytest.mark.parametrize(
    ("request_id", "label", "reason"),
    [
        ("", None, "bad_request_id"),
        ("a b", None, "bad_request_id"),
        ("x" * 129, None, "bad_request_id"),
        ("ok", "other", "unknown_label"),
        ("ok", "neg", "contradictory"),
    ],
)
def test_bad_feedback_is_refused_with_a_reason(
    request_id: str, label: str | None, reason: str
) -> None:
    with pytest.raises(FeedbackError) as info:
        make_feedback(
            request_id=request_id, positive=True, corrected_label=label, labels=["neg", "pos"]
        )

    assert info.value.reason == reason


def test_an_embedder_takes_no_corrected_label() -> None:
    with pytest.raises(FeedbackError, match="not a classifier"):
        make_feedback(request_id="r", positive=True, corrected_label="x", labels=[])


def test_uuid4_hex_is_a_valid_request_id() -> None:
    value = uuid.uuid4().hex
    assert check_request_id(value) == value


# Client metrics ----------------------------------------------------------------------------


def test_client_metrics_time_calls_and_count_errors_by_type() -> None:
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    metrics = ClientMetrics(registry=registry)

    with metrics.track("minilm", "encode", texts=3):
        pass
    with pytest.raises(TimeoutError), metrics.track("minilm", "encode", texts=2):
        raise TimeoutError("slow")

    value = registry.get_sample_value
    assert (
        value(
            "tritonhf_client_request_duration_seconds_count",
            {"model": "minilm", "operation": "encode"},
        )
        == 2
    )
    assert (
        value(
            "tritonhf_client_requests_total",
            {"model": "minilm", "operation": "encode", "outcome": "ok"},
        )
        == 1
    )
    assert (
        value(
            "tritonhf_client_errors_total",
            {"model": "minilm", "operation": "encode", "error": "TimeoutError"},
        )
        == 1
    )
    assert value("tritonhf_client_texts_total", {"model": "minilm", "operation": "encode"}) == 3


# The feedback step's request parsing -------------------------------------------------------


def test_the_feedback_step_parses_its_tensors() -> None:
    from tritonhf.backends import feedback as step

    parsed = step.parse_request(
        np.array([b"req-1"], dtype=object),
        np.array([False]),
        np.array([b"neg"], dtype=object),
        ["neg", "pos"],
    )

    assert parsed == make_feedback(
        request_id="req-1", positive=False, corrected_label="neg", labels=["neg", "pos"]
    )
    assert step.parse_request(np.array([b"r"], dtype=object), np.array([True]), None, []).positive
    # An empty CORRECTED_LABEL is no correction, even with a thumbs-up.
    empty = step.parse_request(
        np.array([b"r"], dtype=object), np.array([True]), np.array([b""], dtype=object), ["a"]
    )
    assert (empty.positive, empty.corrected_label) == (True, None)


@pytest.mark.parametrize(
    ("request_id", "positive", "reason"),
    [
        (np.array([b"\xff"], dtype=object), np.array([True]), "not_utf8"),
        (np.array([b"a", b"b"], dtype=object), np.array([True]), "bad_shape"),
        (np.array([b"a"], dtype=object), np.array([True, False]), "bad_shape"),
    ],
)
def test_the_feedback_step_refuses_malformed_tensors(
    request_id: np.ndarray[Any, Any], positive: np.ndarray[Any, Any], reason: str
) -> None:
    from tritonhf.backends import feedback as step

    with pytest.raises(FeedbackError) as info:
        step.parse_request(request_id, positive, None, [])

    assert info.value.reason == reason


def test_the_feedback_step_warns_once_per_load_when_a_metric_fails() -> None:
    from tritonhf.backends import feedback as step

    stream = io.StringIO()
    model = step.TritonPythonModel()
    model.model, model._warned = "sentiment", False
    model.log = configure_json_logging(stream, logger="tritonhf.test.feedback")

    def broken(*_: object) -> None:
        raise RuntimeError("metrics server gone")

    model._safely(broken)
    model._safely(broken)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["event"], x["level"], x["step"]) for x in lines] == [
        ("observability_error", "warning", "feedback")
    ]


# The client's side of the contract -----------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "ü"])
def test_the_client_refuses_a_malformed_request_id_before_sending(
    closed_port: int, bad: str
) -> None:
    from tritonhf.client import InvalidInputError, TritonHFClient

    with TritonHFClient(f"127.0.0.1:{closed_port}", timeout_s=1) as client:
        with pytest.raises(InvalidInputError, match="request id"):
            client.encode(["text"], request_id=bad)
        with pytest.raises(InvalidInputError, match="request id"):
            client.feedback(request_id=bad, positive=True)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"request_id": "r-1", "positive": "no"}, "positive must be True or False, got str 'no'"),
        ({"request_id": "r-1", "positive": None}, "positive must be True or False, got NoneType"),
        ({"request_id": 5, "positive": True}, "request_id must be a str, got int 5"),
        ({"request_id": "r-1", "positive": False, "corrected_label": 1}, "must be a str or None"),
    ],
    ids=["string-rating", "no-rating", "int-id", "int-label"],
)
def test_the_client_refuses_feedback_of_the_wrong_types_before_sending(
    closed_port: int, arguments: dict[str, Any], message: str
) -> None:
    from tritonhf.client import InvalidInputError, TritonHFClient

    with (
        TritonHFClient(f"127.0.0.1:{closed_port}", timeout_s=1) as client,
        pytest.raises(InvalidInputError, match=message),
    ):
        client.feedback(**arguments)


@pytest.fixture
def metered(closed_port: int) -> Iterator[tuple[Any, Any]]:
    """A client with metrics on a registry of its own, pointed at a port nothing serves."""
    import prometheus_client

    from tritonhf.client import TritonHFClient

    registry = prometheus_client.CollectorRegistry()
    metrics = ClientMetrics(registry=registry)
    with TritonHFClient(f"127.0.0.1:{closed_port}", timeout_s=1, metrics=metrics) as client:
        yield client, registry


def test_client_metrics_count_a_refused_call_as_an_error_of_its_type(
    metered: tuple[Any, Any],
) -> None:
    from tritonhf.client import InvalidInputError

    client, registry = metered
    with pytest.raises(InvalidInputError):
        client.feedback(request_id="bad id", positive=True, model="minilm")

    labels = {"model": "minilm", "operation": "feedback", "error": "InvalidInputError"}
    assert registry.get_sample_value("tritonhf_client_errors_total", labels) == 1


@pytest.mark.parametrize("operation", ["encode", "embed", "classify"])
def test_client_metrics_count_a_bare_string_refused_before_sending(
    metered: tuple[Any, Any], operation: str
) -> None:
    from tritonhf.client import InvalidInputError

    client, registry = metered
    with pytest.raises(InvalidInputError):
        getattr(client, operation)("one text, not a list of them", model="minilm")

    counted = "classify" if operation == "classify" else "encode"
    labels = {"model": "minilm", "operation": counted, "error": "InvalidInputError"}
    assert registry.get_sample_value("tritonhf_client_errors_total", labels) == 1
    texts = {"model": "minilm", "operation": counted}
    assert not registry.get_sample_value("tritonhf_client_texts_total", texts)


class FakeMetricsApi:
    """``pb_utils``'s metrics API as the steps call it, recording each message it would send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float]] = []
        api = self

        class Metric:
            def __init__(self, family: str) -> None:
                self.family = family

            def set(self, value: float) -> None:
                api.sent.append((self.family, "set", value))

            def increment(self, value: float) -> None:
                api.sent.append((self.family, "increment", value))

        class MetricFamily:
            COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

            def __init__(self, name: str, description: str, kind: str) -> None:
                self.name = name

            def Metric(self, labels: dict[str, str], buckets: object = None) -> Metric:
                return Metric(self.name)

        self.MetricFamily = MetricFamily


def test_a_gauge_set_to_its_current_value_sends_nothing() -> None:
    api = FakeMetricsApi()
    metrics = m.TritonMetrics(api, "minilm")

    for value in (512, 512, 512, 0.25, 0.25, 512):
        metrics.set(m.DRIFT_SAMPLES, value, "token_length")
    metrics.increment(m.TEXTS, 0)

    assert api.sent == [
        ("tritonhf_drift_window_samples", "set", 512.0),
        ("tritonhf_drift_window_samples", "set", 0.25),
        ("tritonhf_drift_window_samples", "set", 512.0),
    ]


def test_a_step_has_no_drift_score_until_its_window_fills_nor_after_it_unloads() -> None:
    # Triton keeps a Python step's series after an unload: a reloaded or unloaded model must
    # not go on showing (and alerting on) the last score of the instance before it.
    api = FakeMetricsApi()
    profile = ReferenceProfile(
        features={"token_length": token_length_profile([3, 5, 8, 13, 21], max_length=16)},
        source="test",
        window=4,
        min_samples=2,
    )
    observer = TokenizerObserver(m.TritonMetrics(api, "minilm"), "minilm", profile, TextLogging.OFF)

    def drift_values() -> list[float]:
        return [value for name, _, value in api.sent if name == "tritonhf_drift_psi"]

    assert len(drift_values()) == 1
    assert math.isnan(drift_values()[0])  # at load: no score yet
    observer.drift.add_values([30, 30, 30])  # type: ignore[union-attr]
    observer._update_drift()
    assert drift_values()[-1] > 0.25
    observer.close()
    assert math.isnan(drift_values()[-1])  # unloaded: the score is withdrawn
    assert ("tritonhf_drift_window_samples", "set", 0.0) in api.sent


def test_a_step_load_is_counted_once_by_its_first_instance_and_never_fails_the_load() -> None:
    """TritonHFStepReloading reads it: a stub that keeps dying showed only in serve's log.

    The merged step runs the tokenizer's and the model's initialize too: counted three times,
    the objects it dropped took the series away (an outside probe saw none for merged steps).
    """
    from tritonhf.backends.loads import count_load

    api = FakeMetricsApi()
    first = {"model_name": "counted_model", "model_instance_name": "counted_model_0_0"}
    second = {"model_name": "counted_model", "model_instance_name": "counted_model_0_1"}

    kept = count_load(first, api)
    assert count_load(second, api) is None
    assert count_load(first, api) is kept  # a step class running another's initialize

    assert kept is not None  # kept for the process: Triton drops a family whose object is gone
    assert api.sent == [("tritonhf_step_loads_total", "increment", 1.0)]
    broken = {"model_name": "broken_model", "model_instance_name": "broken_model_0_0"}
    assert count_load(broken, object()) is None  # a broken metrics API: no count, no failure
