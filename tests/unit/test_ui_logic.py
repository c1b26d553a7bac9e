"""The demo's formatting and maths, without Gradio or a server."""

from __future__ import annotations

import numpy as np
import pytest

from tritonhf.client import ModelState, ServerHealth
from tritonhf.errors import (
    InferenceError,
    InvalidInputError,
    ModelNotFoundError,
    ServerUnavailableError,
)
from tritonhf.ui.logic import (
    MAX_TEXTS,
    Hit,
    RequestInfo,
    SearchIndex,
    confidences,
    error_markdown,
    health_markdown,
    heatmap_html,
    hit_rows,
    model_rows,
    pipeline_version,
    probabilities_markdown,
    served_version,
    similarity_matrix,
    split_lines,
    with_sentence_number,
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("[request id: r] TEXT[2] has no tokens", "sentence 3 ('\\u200b'): [request id: r]"),
        ("texts[0] is empty or whitespace only", "sentence 1 ('one'): texts[0] is empty"),
        ("TEXT[7] names no sentence sent", "TEXT[7] names no sentence sent"),
        ("the server is down", "the server is down"),
    ],
)
def test_a_refused_row_is_named_as_the_page_counts_sentences(message: str, expected: str) -> None:
    assert with_sentence_number(message, ["one", "two", "\u200b"]).startswith(expected)


def test_split_lines_keeps_non_empty_stripped_lines() -> None:
    assert split_lines("  one \n\n two\n   \nthree") == ["one", "two", "three"]


def test_split_lines_splits_only_at_typed_line_breaks() -> None:
    assert split_lines("a\u2028b\r\nc\x85d\re\x1cf") == ["a\u2028b", "c\x85d", "e\x1cf"]


@pytest.mark.parametrize("text", ["", "  \n\t\n"])
def test_split_lines_refuses_nothing_to_send(text: str) -> None:
    with pytest.raises(InvalidInputError, match="at least one sentence"):
        split_lines(text)


def test_split_lines_refuses_more_than_the_limit() -> None:
    with pytest.raises(InvalidInputError, match=f"at most {MAX_TEXTS}"):
        split_lines("\n".join(f"s{i}" for i in range(MAX_TEXTS + 1)))


def test_similarity_matrix_is_cosine_similarity() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], dtype=np.float32)
    matrix = similarity_matrix(vectors)
    assert matrix.dtype == np.float32
    expected = np.array(
        [[1.0, 0.0, 0.7071], [0.0, 1.0, 0.7071], [0.7071, 0.7071, 1.0]], dtype=np.float32
    )
    np.testing.assert_allclose(matrix, expected, atol=1e-4)


def test_heatmap_has_one_cell_per_pair_and_escapes_text() -> None:
    texts = ["<b>bold</b>", "plain"]
    table = heatmap_html(texts, np.array([[1.0, 0.25], [0.25, 1.0]]))
    assert table.count("<td ") == 4
    assert "&lt;b&gt;bold&lt;/b&gt;" in table
    assert "<b>bold" not in table
    assert ">0.25<" in table
    assert ">1.00<" in table
    # Identical sentences are dark with white text; weak similarity stays light.
    assert "color:#ffffff" in table
    assert "rgb(203,216,255)" in table


def test_heatmap_scrolls_in_its_box_has_a_caption_and_no_negative_zero() -> None:
    table = heatmap_html(["a", "b"], np.array([[1.0, -0.004], [-0.004, 1.0]]))
    assert table.startswith('<div class="tritonhf-heatmap-box">')
    assert "<caption>Cosine similarity of 2 sentences" in table
    assert ">0.00<" in table
    assert "-0.00" not in table


def test_heatmap_refuses_a_matrix_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="does not match 3 texts"):
        heatmap_html(["a", "b", "c"], np.eye(2))


def test_search_returns_the_nearest_texts_best_first() -> None:
    index = SearchIndex(
        ("north", "east", "north-east"),
        np.array([[0.0, 1.0], [1.0, 0.0], [0.7071, 0.7071]], dtype=np.float32),
    )
    hits = index.search(np.array([0.1, 1.0]), k=2)
    assert [h.text for h in hits] == ["north", "north-east"]
    assert [h.rank for h in hits] == [1, 2]
    assert hits[0].score == pytest.approx(0.995, abs=1e-3)
    assert hit_rows(hits)[0] == [1, "0.995", "north"]
    assert hit_rows([Hit(rank=1, score=0.58, text="x")])[0][1] == "0.580"  # 3 places, always


def test_search_ranks_by_cosine_even_for_a_model_that_does_not_normalise() -> None:
    # A dot-product model: the long vector would win on the dot product, not on the angle.
    index = SearchIndex(("long", "aligned"), np.array([[30.0, 10.0], [0.1, 0.1]], dtype=np.float32))
    hits = index.search(np.array([2.0, 2.0]), k=2)
    assert [h.text for h in hits] == ["aligned", "long"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)


def test_search_with_k_beyond_the_corpus_returns_the_whole_corpus() -> None:
    index = SearchIndex(("a", "b"), np.eye(2, dtype=np.float32))
    assert len(index.search(np.array([1.0, 0.0]), k=10)) == 2


def test_search_refuses_k_below_one() -> None:
    index = SearchIndex(("a",), np.eye(1, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="top-k must be >= 1"):
        index.search(np.array([1.0]), k=0)


def test_search_index_checks_texts_against_embeddings() -> None:
    with pytest.raises(ValueError, match="2 texts but 1 embeddings"):
        SearchIndex(("a", "b"), np.eye(1, dtype=np.float32))


def _info(**overrides: object) -> RequestInfo:
    fields: dict[str, object] = {
        "model": "minilm",
        "version": "1",
        "protocol": "grpc",
        "latency_ms": 12.345,
        "num_tokens": (7, 256),
        "truncated": (False, False),
        "request_id": "abc123",
        "max_length": 256,
    }
    fields.update(overrides)
    return RequestInfo(**fields)  # type: ignore[arg-type]


def test_request_info_names_model_version_protocol_latency_tokens_and_id() -> None:
    text = _info().markdown()
    for part in ("`minilm` v1", "gRPC", "12.3 ms", "7, 256", "`abc123`"):
        assert part in text
    assert "truncated" not in text


def test_request_info_warns_which_text_was_truncated() -> None:
    text = _info(truncated=(False, True), protocol="http").markdown()
    assert "HTTP" in text
    assert "text 2 was longer than the model reads and was cut to 256 tokens" in text
    several = _info(truncated=(True, True), protocol="http").markdown()
    assert "texts 1, 2 were longer than the model reads and were cut to 256 tokens" in several
    assert "reflects their beginning" in several


def test_served_version_lists_ready_versions_only() -> None:
    states = [
        ModelState("minilm", "1", "READY"),
        ModelState("minilm", "2", "READY"),
        ModelState("minilm", "3", "UNAVAILABLE", "unloaded"),
        ModelState("minilm_model", "7", "READY"),
    ]
    assert served_version(states, "minilm") == "1,2"
    assert served_version(states, "missing") == ""


def test_a_pipelines_version_is_its_steps_which_a_deploy_moves() -> None:
    """The ensemble stays at version 1 through deploys: the demo showed v1 and kept searching
    a corpus embedded by the replaced model."""
    steps = ("minilm_tokenizer", "minilm_model")
    states = [
        ModelState("minilm", "1", "READY"),
        ModelState("minilm_tokenizer", "3", "READY"),
        ModelState("minilm_model", "3", "READY"),
    ]
    assert pipeline_version(states, steps) == "3"
    states[2] = ModelState("minilm_model", "4", "READY")
    assert pipeline_version(states, steps) == "minilm_tokenizer 3, minilm_model 4"
    assert pipeline_version(states, ("missing",)) == ""


def test_confidences_map_every_label_to_its_probability() -> None:
    assert confidences((("positive", 0.7), ("neutral", 0.2), ("negative", 0.1))) == {
        "positive": 0.7,
        "neutral": 0.2,
        "negative": 0.1,
    }


@pytest.mark.parametrize(
    ("error", "title", "hint"),
    [
        (ServerUnavailableError("cannot reach Triton at x"), "Triton is not reachable", "make run"),
        (ModelNotFoundError("no model 'nope'"), "Model not served", "status panel"),
        (InvalidInputError("empty text"), "Input refused", "Fix what the message names"),
        (InferenceError("boom"), "Request failed", "server log"),
        (RuntimeError("odd"), "Unexpected error (RuntimeError)", "server log"),
    ],
)
def test_error_markdown_is_a_title_the_detail_and_what_to_do(
    error: Exception, title: str, hint: str
) -> None:
    text = error_markdown(error)
    assert text.startswith(f"⚠ **{title}**: {error}")
    assert hint in text
    assert "Traceback" not in text


def test_health_markdown_says_how_to_start_a_server_that_is_down() -> None:
    down = ServerHealth(url="127.0.0.1:1", live=False, ready=False, model="m", model_ready=False)
    assert "Server down" in health_markdown(down)
    assert "make run" in health_markdown(down)
    up = ServerHealth(url="127.0.0.1:2", live=True, ready=True, model="m", model_ready=True)
    assert "is ready" in health_markdown(up)


def test_model_rows_mark_ready_and_sort_by_name() -> None:
    rows = model_rows(
        [ModelState("b", "1", "UNAVAILABLE", "unloaded"), ModelState("a", "1", "READY")]
    )
    assert rows == [["a", "1", "✓ READY", ""], ["b", "1", "✗ UNAVAILABLE", "unloaded"]]


def test_an_error_that_quotes_what_the_user_typed_shows_it_as_text() -> None:
    exc = ModelNotFoundError("the server has no model '<img src=x onerror=alert(1)>'")
    assert "&lt;img src=x onerror=alert(1)&gt;'" in error_markdown(exc)
    assert "<img" not in error_markdown(exc)


@pytest.mark.parametrize(
    ("served", "expected"),
    [(("sentiment",), "sentiment"), (("bogus", "a"), "bogus"), ((), "bogus")],
    ids=["not-served-others-are", "served", "none-served-yet"],
)
def test_a_command_line_classifier_gives_way_to_a_served_one_only_when_it_is_not_served(
    served: tuple[str, ...], expected: str
) -> None:
    from tritonhf.client import Served
    from tritonhf.ui.service import DemoConfig, DemoService

    service = DemoService(DemoConfig(classifier="bogus"))
    try:
        assert service.default_classifier(Served(embedders=(), classifiers=served)) == expected
    finally:
        service.close()


def test_probabilities_are_shown_to_three_places_as_the_cli_prints_them() -> None:
    line = probabilities_markdown([("positive", 0.5951), ("<b>neg`</b>", 0.4049)])
    assert line == (
        "**probabilities** <code>positive</code> 0.595 · <code>&lt;b&gt;neg`&lt;/b&gt;</code> 0.405"
    )
