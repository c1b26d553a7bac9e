from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tritonhf.backends import tokenizer as step
from tritonhf.repository.configs import tokenizer_config
from tritonhf.spec import PipelineSpec, Runtime

CLS, SEP, PAD = 101, 102, 0


def model_config_json(config: Any) -> dict[str, Any]:
    """The JSON form Triton hands to ``initialize`` (snake_case field names)."""
    from google.protobuf import json_format

    text = json_format.MessageToJson(config, preserving_proto_field_name=True)
    return dict(json.loads(text))


def test_step_module_imports_outside_the_server_without_pb_utils() -> None:
    assert step.pb_utils is None


def test_decode_texts_accepts_bytes_and_str_rows() -> None:
    raw = np.array([[b"caf\xc3\xa9"], ["already text"], [np.bytes_(b"numpy")]], dtype=object)

    assert step.decode_texts(raw) == ["café", "already text", "numpy"]


def test_decode_texts_flattens_a_batch_of_rows() -> None:
    raw = np.array([b"a", b"b", b"c"], dtype=object).reshape(3, 1)

    assert step.decode_texts(raw) == ["a", "b", "c"]


def test_decode_texts_names_the_first_row_that_is_not_utf8() -> None:
    raw = np.array([[b"fine"], [b"also fine"], [b"bad \xff byte"], [b"\xfe"]], dtype=object)

    with pytest.raises(step.TextError, match=r"TEXT\[2\] is not valid UTF-8") as info:
        step.decode_texts(raw)

    assert "at byte 4" in str(info.value)


def test_text_error_is_a_value_error() -> None:
    assert issubclass(step.TextError, ValueError)


@pytest.mark.parametrize("text", ["", "   ", "\t\n", "\u200b", "\u200b\u200c\ufeff"], ids=repr)
def test_check_not_empty_rejects_texts_with_only_special_tokens(tokenizer: Any, text: str) -> None:
    texts = ["real text", text]

    with pytest.raises(step.TextError, match=r"TEXT\[1\] has no tokens"):
        step.check_not_empty(texts, step.encode_texts(tokenizer, texts, 256))


@pytest.fixture(scope="module")
def metaspace_tokenizer() -> Any:
    """A SentencePiece-style (Unigram + Metaspace) tokenizer, as XLM-R, ALBERT and T5 use."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=30,
        special_tokens=["<s>", "</s>", "<unk>"],
        unk_token="<unk>",  # noqa: S106
    )
    tokenizer.train_from_iterator(["hello world", "a b c", "\u3000 x"], trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)]
    )
    return tokenizer


@pytest.mark.parametrize("text", [" ", "\t\n", "\u3000", "\u2003 \n"], ids=repr)
def test_blank_text_is_refused_where_the_tokenizer_keeps_spaces_as_tokens(
    metaspace_tokenizer: Any, text: str
) -> None:
    encoded = step.encode_texts(metaspace_tokenizer, [text], 256)
    assert not all(encoded.encodings[0].special_tokens_mask)  # "▁" is a real token here

    with pytest.raises(step.TextError, match=r"TEXT\[0\] has no tokens"):
        step.check_not_empty([text], encoded)


@pytest.mark.parametrize("text", ["?", "a", "hello world", "日本語", "\u200bvisible"], ids=repr)
def test_check_not_empty_accepts_any_visible_token(tokenizer: Any, text: str) -> None:
    step.check_not_empty([text], step.encode_texts(tokenizer, [text], 256))


def test_pad_encodings_pads_one_request_to_its_longest_row(tokenizer: Any) -> None:
    encoded = step.encode_texts(tokenizer, ["a", "hello world again"], 256)
    lengths = [len(e.ids) for e in encoded.encodings]
    assert lengths == [3, 5]

    batch = step.pad_encodings(encoded, step.TokenizerSettings(max_length=256))

    assert batch.input_ids.shape == (2, 5)
    assert batch.input_ids[0].tolist() == [*encoded.encodings[0].ids, PAD, PAD]
    assert batch.input_ids[1].tolist() == encoded.encodings[1].ids
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch.num_tokens.tolist() == [[3], [5]]


def test_pad_encodings_returns_int64_tokens_and_int32_counts_of_shape_n_by_1(
    tokenizer: Any,
) -> None:
    batch = step.pad_encodings(
        step.encode_texts(tokenizer, ["one", "two", "three"], 256),
        step.TokenizerSettings(max_length=256),
    )

    assert batch.input_ids.dtype == np.int64
    assert batch.attention_mask.dtype == np.int64
    assert batch.num_tokens.dtype == np.int32
    assert batch.num_tokens.shape == (3, 1)


@pytest.mark.parametrize(
    ("multiple", "width"), [(1, 5), (4, 8), (5, 5), (16, 16)], ids=lambda v: str(v)
)
def test_pad_encodings_rounds_the_width_up_to_the_multiple(
    tokenizer: Any, multiple: int, width: int
) -> None:
    encoded = step.encode_texts(tokenizer, ["a", "hello world again"], 256)
    settings = step.TokenizerSettings(max_length=256, pad_to_multiple_of=multiple)

    batch = step.pad_encodings(encoded, settings)

    assert batch.input_ids.shape == (2, width)
    assert batch.attention_mask.sum(axis=1).tolist() == [3, 5]
    assert batch.num_tokens.reshape(-1).tolist() == [3, 5]


def test_pad_encodings_uses_the_configured_pad_token(tokenizer: Any) -> None:
    encoded = step.encode_texts(tokenizer, ["a", "hello world again"], 8)

    batch = step.pad_encodings(encoded, step.TokenizerSettings(max_length=8, pad_token_id=1))

    assert batch.input_ids[0, 3:].tolist() == [1, 1]


def test_tokens_are_wrapped_in_cls_and_sep(tokenizer: Any) -> None:
    batch = step.pad_encodings(
        step.encode_texts(tokenizer, ["hello"], 256), step.TokenizerSettings(256)
    )

    ids = batch.input_ids[0].tolist()
    assert (ids[0], ids[-1]) == (CLS, SEP)


@pytest.mark.parametrize("max_length", [16, 256])
def test_load_tokenizer_truncates_long_texts_to_exactly_max_length(
    tokenizer_json: Path, max_length: int
) -> None:
    tokenizer = step.load_tokenizer(tokenizer_json, max_length)
    text = " ".join(["word"] * 5_000)

    (encoding,) = tokenizer.encode_batch([text])

    assert len(encoding.ids) == max_length
    assert (encoding.ids[0], encoding.ids[-1]) == (CLS, SEP)


def test_load_tokenizer_does_not_pad(tokenizer_json: Path) -> None:
    tokenizer = step.load_tokenizer(tokenizer_json, 256)

    short, long = tokenizer.encode_batch(["a", "a b c d e f"])

    assert (len(short.ids), len(long.ids)) == (3, 8)
    assert tokenizer.padding is None


@pytest.mark.parametrize("damage", ["missing", "not-json"])
def test_a_tokenizer_file_that_cannot_be_loaded_is_named(tmp_path: Path, damage: str) -> None:
    """Triton's table said only "Exception: No such file or directory (os error 2)"."""
    path = tmp_path / "minilm_tokenizer" / "1" / "tokenizer.json"
    if damage == "not-json":
        path.parent.mkdir(parents=True)
        path.write_text("{not json")
    with pytest.raises(RuntimeError, match=f"cannot load the tokenizer {path}: "):
        step.load_tokenizer(path, 256)


def test_tokenizer_settings_read_the_json_model_config() -> None:
    config = {
        "name": "minilm_tokenizer",
        "parameters": {
            "max_length": {"string_value": "128"},
            "pad_token_id": {"string_value": "1"},
            "pad_to_multiple_of": {"string_value": "16"},
        },
    }

    settings = step.TokenizerSettings.from_model_config(config)

    assert settings == step.TokenizerSettings(
        max_length=128, pad_token_id=1, pad_to_multiple_of=16, pipeline="minilm"
    )


def test_tokenizer_settings_default_pad_token_and_multiple() -> None:
    config = {"parameters": {"max_length": {"string_value": "64"}}}

    assert step.TokenizerSettings.from_model_config(config) == step.TokenizerSettings(64, 0, 1)


@pytest.mark.parametrize(
    ("runtime", "multiple"), [(Runtime.ONNXRUNTIME, 16), (Runtime.PYTHON_ONNX, 1)]
)
def test_tokenizer_settings_read_what_the_config_writer_writes(
    runtime: Runtime, multiple: int
) -> None:
    config = tokenizer_config(PipelineSpec(runtime=runtime, max_length=200), pad_token_id=0)

    settings = step.TokenizerSettings.from_model_config(model_config_json(config))

    assert settings == step.TokenizerSettings(200, 0, multiple, pipeline="minilm")


def test_pad_encodings_flags_the_texts_cut_to_max_length(tokenizer: Any) -> None:
    encoded = step.encode_texts(tokenizer, ["short text", "word " * 400], 256)

    batch = step.pad_encodings(encoded, step.TokenizerSettings(max_length=256))

    assert batch.truncated.tolist() == [[False], [True]]
    assert batch.truncated.dtype == np.bool_
    assert batch.num_tokens.tolist() == [[4], [256]]


@pytest.mark.parametrize(
    ("raw", "max_bytes", "reason"),
    [([[b"\xff"]], 100, "not_utf8"), ([[b"x" * 101]], 100, "too_large")],
)
def test_text_errors_carry_the_reason_counted_in_the_metrics(
    raw: list[list[bytes]], max_bytes: int, reason: str
) -> None:
    with pytest.raises(step.TextError) as info:
        step.decode_texts(np.array(raw, dtype=object), max_bytes=max_bytes)

    assert info.value.reason == reason


def test_a_text_without_tokens_is_an_empty_input(tokenizer: Any) -> None:
    with pytest.raises(step.TextError) as info:
        step.check_not_empty(["  "], step.encode_texts(tokenizer, ["  "], 256))

    assert info.value.reason == "empty"


class RecordingTokenizer:
    """The real tokenizer, recording the longest text each ``encode_batch`` call was given."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.longest: list[int] = []

    def encode_batch(self, texts: list[str]) -> Any:
        self.longest.append(max(map(len, texts)))
        return self.tokenizer.encode_batch(texts)

    @property
    def reads(self) -> list[int]:
        """The longest text of each call, leaving out the step's probes of the tokenizer."""
        return [n for n in self.longest if n > len("a  \t\r\n\n  b")]

    @property
    def truncation(self) -> Any:
        return self.tokenizer.truncation


LONG_TEXTS = {
    "prose": " ".join(["The parcel arrived two days late, but intact."] * 2_000),
    "cjk": "日本語のテキストです。" * 5_000,
    "words-then-huge-word": "word " * 2_000 + "x" * 5_000 + " tail",
    "prose-then-spaces": "a short text, then blank space" + " " * 60_000,
    "spaces-then-text": " " * 60_000 + "hello",  # the whitespace it starts with is skipped
    # A run of whitespace reads as one space where the tokenizer reads it so (WordPiece).
    "words-spaces-words": "word " * 10 + " " * 40_000 + "hidden end",
    "words-blank-lines-words": "word " * 10 + "\n \t\r" * 20_000 + "hidden end",
    # Fewer tokens than max_length in the first read_limit characters: read again, further.
    "thai": " ".join(["ภาษาไทยเป็นภาษาที่มีระดับเสียงของคำแน่นอนหรือวรรณยุกต์"] * 300),
    "long-words": ("b" * 101 + " ") * 10_000,  # each one [UNK]
    "hex-hashes": " ".join(["0123456789abcdef" * 4] * 2_000),
}
# Texts with few tokens even in REREAD_CHARS_PER_TOKEN characters per token: read no further.
DEGENERATE_TEXTS = {
    "one-huge-word": "a" * 60_000,
    "invisible-then-text": "\u200b" * 50_000 + " hello",
    "longer-words": ("b" * 300 + " ") * 10_000,
}


@pytest.mark.parametrize("text", LONG_TEXTS.values(), ids=LONG_TEXTS.keys())
def test_long_texts_encode_as_the_whole_text_does(tokenizer: Any, text: str) -> None:
    texts = ["a short one", text]
    (short, whole) = tokenizer.encode_batch(texts)

    encoded = step.encode_texts(tokenizer, texts, 256)
    batch = step.pad_encodings(encoded, step.TokenizerSettings(max_length=256))

    assert [e.ids for e in encoded.encodings] == [short.ids, whole.ids]
    assert batch.truncated.reshape(-1).tolist() == [False, bool(whole.overflowing)]


@pytest.fixture(scope="module", params=["right", "left"])
def byte_level_tokenizer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """A byte-level BPE tokenizer as RoBERTa's and GPT-2's: whitespace is part of the tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from tritonhf.data import sentences

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<s>", "<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(sentences(), trainer)
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    bpe.enable_truncation(256, direction=request.param)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    bpe.save(str(path))
    return step.load_tokenizer(path, 256)


EDGE_TEXTS = {
    **LONG_TEXTS,
    "space-then-words": " " + "word " * 2_000,
    "newline-then-prose": "\n" + LONG_TEXTS["prose"],
    "prose-then-newline": LONG_TEXTS["prose"] + " \n",
    "whitespace-around-words": " \t\n " + "word " * 2_000 + "end \n\t ",
}


@pytest.mark.parametrize("text", EDGE_TEXTS.values(), ids=EDGE_TEXTS.keys())
def test_a_tokenizer_that_keeps_whitespace_gets_the_tokens_of_the_whole_text(
    byte_level_tokenizer: Any, text: str
) -> None:
    """A byte-level BPE reads whitespace at a text's edges as tokens: none is skipped."""
    whole = byte_level_tokenizer.encode(text)

    encoded = step.encode_texts(byte_level_tokenizer, ["a short one", text], 256)

    assert encoded.encodings[1].ids == whole.ids
    assert not step.ignores_edge_whitespace(byte_level_tokenizer)


@pytest.mark.parametrize(
    "text", [*LONG_TEXTS.values(), *DEGENERATE_TEXTS.values()],
    ids=[*LONG_TEXTS, *DEGENERATE_TEXTS],
)  # fmt: skip
def test_no_text_costs_more_than_reading_its_first_read_limit_characters(
    tokenizer: Any, text: str
) -> None:
    recording = RecordingTokenizer(tokenizer)

    step.encode_texts(recording, ["a short one", text], 256)

    assert recording.reads[0] <= step.read_limit(256) == 256 * step.READ_CHARS_PER_TOKEN
    assert max(recording.longest) <= 256 * step.REREAD_CHARS_PER_TOKEN
    assert len(recording.reads) <= 3  # the first read, and at most two more of this text


def test_a_degenerate_text_is_truncated_where_reading_stopped(tokenizer: Any) -> None:
    texts = [DEGENERATE_TEXTS["one-huge-word"], DEGENERATE_TEXTS["longer-words"]]

    encoded = step.encode_texts(tokenizer, texts, 256)
    batch = step.pad_encodings(encoded, step.TokenizerSettings(max_length=256))

    assert encoded.unread == [True, True]
    assert batch.truncated.reshape(-1).tolist() == [True, True]
    assert encoded.encodings[0].ids == tokenizer.encode("a" * 60_000).ids  # [CLS] [UNK] [SEP]
    # Cut at a space: only whole words were read, each 300-character word one [UNK].
    words = len(encoded.encodings[1].ids) - 2
    assert 0 < words < 256
    assert (words + 1) * 301 > 256 * step.REREAD_CHARS_PER_TOKEN - step.READ_SLACK_CHARS
    assert encoded.read_chars == [256 * step.REREAD_CHARS_PER_TOKEN] * 2


def test_a_text_with_no_tokens_where_it_is_read_is_refused_saying_so(tokenizer: Any) -> None:
    texts = [DEGENERATE_TEXTS["invisible-then-text"]]

    refused = r"TEXT\[0\] has no tokens in the 32,768 characters read"
    with pytest.raises(step.TextError, match=refused):
        step.check_not_empty(texts, step.encode_texts(tokenizer, texts, 256))


@pytest.fixture(scope="module")
def left_tokenizer(tokenizer_json: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real tokenizer, as a model whose ``truncation_side`` is left exports it."""
    from tokenizers import Tokenizer

    saved = Tokenizer.from_file(str(tokenizer_json))
    saved.enable_truncation(256, direction="left")
    path = tmp_path_factory.mktemp("left") / "tokenizer.json"
    saved.save(str(path))
    return step.load_tokenizer(path, 256)


ENDINGS = {**LONG_TEXTS, "words-then-an-ending": "word " * 5_000 + "and the very end"}


@pytest.mark.parametrize("text", ENDINGS.values(), ids=ENDINGS.keys())
def test_a_left_truncating_tokenizer_keeps_the_end_and_reads_only_it(
    left_tokenizer: Any, text: str
) -> None:
    recording = RecordingTokenizer(left_tokenizer)
    whole = left_tokenizer.encode(text)

    encoded = step.encode_texts(recording, [text], 256)

    assert encoded.encodings[0].ids == whole.ids
    read = min(len(text.strip()), step.read_limit(256) - step.READ_SLACK_CHARS)
    assert read <= recording.reads[0] <= step.read_limit(256)
    assert encoded.unread == [False]


class _Parameters:
    def __init__(self, parameters: str) -> None:
        self._parameters = parameters

    def parameters(self) -> str:
        return self._parameters


@pytest.mark.parametrize(
    ("parameters", "counts"),
    [
        ('{"tritonhf_drift": false}', False),
        ('{"tritonhf_drift": "false"}', False),
        ('{"tritonhf_drift": true}', True),
        ("{}", True),
        ("", True),
        ("not json", True),
    ],
)
def test_a_request_leaves_the_drift_window_only_when_its_parameter_says_false(
    parameters: str, counts: bool
) -> None:
    from tritonhf.backends import counts_for_drift

    assert counts_for_drift(_Parameters(parameters)) is counts
    assert counts_for_drift(object()) is True  # a request without parameters()


def test_a_config_without_max_length_names_the_parameter() -> None:
    """A typo'd key (`max_lenght`) failed the load with a bare `KeyError: 'max_length'`."""
    config = {
        "name": "minilm_tokenizer",
        "parameters": {"max_lenght": {"string_value": "256"}},
    }
    with pytest.raises(ValueError, match=r"minilm_tokenizer's .* lacks the parameter max_length"):
        step.TokenizerSettings.from_model_config(config)
