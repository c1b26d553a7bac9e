"""Exports of architectures beyond BERT, checked against sentence-transformers and PyTorch.

Each model is a tiny random one built from its config, with MiniLM's tokenizer files (every
vocabulary here has 30,522 entries). Encoders get a sentence-transformers ``modules.json``
(mean pooling, or last-token pooling for decoders, then Normalize), so the exported graph can
be compared with ``SentenceTransformer(folder).encode``; classifiers are compared with the
HuggingFace model's own softmax. Padded batches of different lengths, one text truncated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.models import TOKENIZER_FILES
from tritonhf.errors import ExportError, ValidationError
from tritonhf.export.pipeline import ExportOptions, export_model
from tritonhf.export.source import DEFAULT_MODEL, resolve_model
from tritonhf.spec import Runtime

TEXTS = [
    "hello world",
    "A second text, longer than the first, with punctuation and numbers: 42.",
    "Ünïcödé, emoji 🚀 and 中文 text.",
    " ".join(["A long text that the tokenizer truncates at the model's limit."] * 40),
]
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64, "vocab_size": 30522}  # fmt: skip
DECODER = {**SMALL, "num_key_value_heads": 1, "max_position_embeddings": 256}

# name -> (config class, model class, config kwargs, pooling)
ENCODERS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "roberta": ("RobertaConfig", "RobertaModel", {**SMALL, "max_position_embeddings": 130}, "mean"),
    "mpnet": ("MPNetConfig", "MPNetModel", {**SMALL, "max_position_embeddings": 130}, "mean"),
    "albert": ("AlbertConfig", "AlbertModel", {**SMALL, "embedding_size": 16}, "mean"),
    "deberta-v2": ("DebertaV2Config", "DebertaV2Model", SMALL, "mean"),
    "modernbert": ("ModernBertConfig", "ModernBertModel",
                   {**SMALL, "max_position_embeddings": 256, "local_attention": 16,
                    "global_attn_every_n_layers": 2, "pad_token_id": 0}, "mean"),
    # Relative positions: its config says -1 positions, which is no limit.
    "xlnet": ("XLNetConfig", "XLNetModel", {"d_model": 32, "n_layer": 2, "n_head": 2,
              "d_inner": 64, "vocab_size": 30522}, "mean"),
    # Encoder-decoder run whole, as sentence-transformers runs it (T5 embeds by its encoder).
    "bart": ("BartConfig", "BartModel", {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
             "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64,
             "decoder_ffn_dim": 64, "vocab_size": 30522, "max_position_embeddings": 256}, "mean"),
    "llama": ("LlamaConfig", "LlamaModel", DECODER, "lasttoken"),
    "qwen2": ("Qwen2Config", "Qwen2Model", DECODER, "lasttoken"),
}  # fmt: skip
CLASSIFIERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaForSequenceClassification",
                    {**SMALL, "max_position_embeddings": 130}),
    "electra": ("ElectraConfig", "ElectraForSequenceClassification",
                {**SMALL, "embedding_size": 16}),
    "gpt2": ("GPT2Config", "GPT2ForSequenceClassification", {"n_embd": 32, "n_layer": 1,
             "n_head": 2, "n_positions": 64, "vocab_size": 30522, "pad_token_id": 0}),
}  # fmt: skip


def build(folder: Path, config_class: str, model_class: str, kwargs: dict[str, Any]) -> Path:
    """Save a randomly initialised ``model_class`` with MiniLM's tokenizer beside it."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**kwargs)
    getattr(transformers, model_class)(config).save_pretrained(folder)
    source = resolve_model(DEFAULT_MODEL).path
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, folder / name)
    return folder


def exported_outputs(tmp_path: Path, folder: Path, output: str) -> tuple[np.ndarray, Any, int]:
    """Export ``folder``; run its graph on TEXTS, padded and truncated as the server does.

    Returns the outputs, the token tensors and the export's token limit.
    """
    import onnxruntime as ort
    from transformers import AutoTokenizer

    result = export_model(ExportOptions(model=str(folder), name="arch", repo=tmp_path / "repo"))
    tokens = AutoTokenizer.from_pretrained(folder)(
        TEXTS, padding=True, truncation=True, max_length=result.spec.max_length, return_tensors="np"
    )
    session = ort.InferenceSession(str(tmp_path / "repo" / "arch_model" / "1" / "model.onnx"))
    feeds = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    (values,) = session.run([output], feeds)
    return values, tokens, result.spec.max_length


def as_sentence_transformer(folder: Path, pooling: str) -> Path:
    """Give ``folder`` a sentence-transformers layout: ``pooling``, then Normalize."""
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"embedding_dimension": 32, "pooling_mode": pooling})
    )
    paths = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize"}
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (kind, path) in enumerate(paths.items())
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


def assert_serves_as_sentence_transformers(tmp_path: Path, folder: Path) -> None:
    from sentence_transformers import SentenceTransformer

    served, _, max_length = exported_outputs(tmp_path, folder, "EMBEDDING")

    reference = SentenceTransformer(str(folder), device="cpu")
    # RoBERTa-style position tables hold fewer tokens than the tokenizer's 512: the export
    # found the real limit; sentence-transformers would index past the table without it.
    reference.max_seq_length = max_length
    expected = reference.encode(TEXTS)
    np.testing.assert_allclose(served, expected, atol=1e-5)


@pytest.mark.parametrize("name", ENCODERS)
# DeBERTa-v2's own modelling code, while tracing; nothing of ours.
@pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")
def test_an_encoder_exports_and_equals_sentence_transformers(tmp_path: Path, name: str) -> None:
    config_class, model_class, kwargs, pooling = ENCODERS[name]
    folder = build(tmp_path / name, config_class, model_class, kwargs)
    assert_serves_as_sentence_transformers(tmp_path, as_sentence_transformer(folder, pooling))


def test_a_model_whose_tokenizer_makes_no_token_types_gets_none(tmp_path: Path) -> None:
    """GPT-2's forward takes token_type_ids, but its tokenizer makes none: any value, zeros
    included, adds an embedding the model was never trained with."""
    gpt2 = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256, "vocab_size": 30522}
    folder = build(tmp_path / "gpt2", "GPT2Config", "GPT2Model", gpt2)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["model_input_names"] = ["input_ids", "attention_mask"]  # as GPT-2's tokenizer says
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert_serves_as_sentence_transformers(tmp_path, as_sentence_transformer(folder, "mean"))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_a_classifier_exports_and_equals_the_models_softmax(tmp_path: Path, name: str) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    config_class, model_class, kwargs = CLASSIFIERS[name]
    folder = build(tmp_path / name, config_class, model_class, {**kwargs, "num_labels": 3})

    served, tokens, _ = exported_outputs(tmp_path, folder, "PROBABILITIES")

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():  # as HuggingFace runs it: every tensor the tokenizer makes
        logits = model(**{name: torch.from_numpy(value) for name, value in tokens.items()}).logits
    np.testing.assert_allclose(served, torch.softmax(logits, dim=-1).numpy(), atol=1e-5)


def test_a_vision_model_is_refused_in_one_line(tmp_path: Path) -> None:
    vit = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
           "intermediate_size": 64, "image_size": 32, "patch_size": 16}  # fmt: skip
    folder = build(tmp_path / "vit", "ViTConfig", "ViTModel", vit)
    with pytest.raises(ExportError, match=r"^\S+ holds a ViTModel, which does not take token ids"):
        export_model(ExportOptions(model=str(folder), name="vit", repo=tmp_path / "repo"))


def test_a_model_type_transformers_does_not_know_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = build(tmp_path / "custom", "BertConfig", "BertModel", SMALL)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "frobnicator"}))
    with pytest.raises(ExportError, match="does not know its model type 'frobnicator'") as caught:
        export_model(ExportOptions(model=str(folder), name="custom", repo=tmp_path / "repo"))
    assert "\n" not in str(caught.value)


def test_a_text_generator_exported_as_an_embedder_says_so(tmp_path: Path) -> None:
    gpt2 = {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64, "vocab_size": 30522}
    folder = build(tmp_path / "lm", "GPT2Config", "GPT2LMHeadModel", gpt2)
    said: list[str] = []
    export_model(
        ExportOptions(model=str(folder), name="lm", repo=tmp_path / "repo"), progress=said.append
    )
    assert any(line.startswith("note: this is a text generator") for line in said)


GPT2_CLASSIFIER = {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64,
                   "vocab_size": 30522, "num_labels": 3}  # fmt: skip


def test_a_classifier_that_finds_the_last_token_by_pad_id_ignores_what_padding_holds(
    tmp_path: Path,
) -> None:
    """GPT-2's classifier pools the token before the first pad id; the server pads a batch of
    requests with zeros, so the graph must put the pad id under the mask itself."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    kwargs = {**GPT2_CLASSIFIER, "pad_token_id": 102}  # [SEP] in MiniLM's vocabulary
    folder = build(tmp_path / "gpt2cls", "GPT2Config", "GPT2ForSequenceClassification", kwargs)
    export_model(ExportOptions(model=str(folder), name="g", repo=tmp_path / "repo"))
    session = ort.InferenceSession(str(tmp_path / "repo" / "g_model" / "1" / "model.onnx"))
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def probabilities(texts: list[str], filler: int) -> np.ndarray:
        tokens = tokenizer(texts, padding=True, return_tensors="np")
        ids = np.where(tokens["attention_mask"] == 1, tokens["input_ids"], filler)
        feeds = {"input_ids": ids, "attention_mask": tokens["attention_mask"]}
        (values,) = session.run(["PROBABILITIES"], feeds)
        return values

    alone = np.concatenate([probabilities([text], 0) for text in TEXTS[:3]])
    np.testing.assert_allclose(probabilities(TEXTS[:3], filler=0), alone, atol=1e-6)
    np.testing.assert_allclose(probabilities(TEXTS[:3], filler=102), alone, atol=1e-6)


def test_a_classifier_with_no_pad_id_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = build(
        tmp_path / "nopad", "GPT2Config", "GPT2ForSequenceClassification", GPT2_CLASSIFIER
    )
    with pytest.raises(ExportError, match=r"set pad_token_id in its config\.json") as caught:
        export_model(ExportOptions(model=str(folder), name="nopad", repo=tmp_path / "repo"))
    assert "\n" not in str(caught.value)


def _pickle_with_an_object(folder: Path) -> None:
    import datetime

    import torch
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    torch.save({**weights, "saved_at": datetime.datetime(2026, 1, 1)}, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


def _config_of_another_size(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] += 7
    (folder / "config.json").write_text(json.dumps(config))


DAMAGE = {
    "lfs": (  # what `git clone` without git-lfs leaves
        lambda f: (f / "model.safetensors").write_text(
            "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n"
        ),
        r"model\.safetensors is a git-LFS pointer, not the weights: fetch them",
    ),
    "truncated": (
        lambda f: (f / "model.safetensors").write_bytes(
            (f / "model.safetensors").read_bytes()[: (f / "model.safetensors").stat().st_size // 2]
        ),
        r"^could not read the weights in \S+ \(SafetensorError: .*truncated",
    ),
    "tokenizer": (
        lambda f: (f / "tokenizer.json").write_text((f / "tokenizer.json").read_text()[:1000]),
        r"^could not load the tokenizer in \S+ \(JSONDecodeError: .*valid JSON: tokenizer\.json",
    ),
    "special-tokens": (
        lambda f: (f / "special_tokens_map.json").write_text("{not json"),
        r"not valid JSON: special_tokens_map\.json\. Save the tokenizer again",
    ),
    "pickled-object": (
        _pickle_with_an_object,
        r"pickle weights in \S+ hold Python objects besides tensors, .*\(nothing in them ran\)",
    ),
    "config-mismatch": (
        _config_of_another_size,
        r"the weights in \S+ do not fit its config\.json \(.*\): they belong to another model",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_download_is_refused_in_one_line(tmp_path: Path, damage: str) -> None:
    folder = build(tmp_path / damage, "BertConfig", "BertModel", SMALL)
    harm, error = DAMAGE[damage]
    harm(folder)
    options = ExportOptions(
        model=str(folder), name="x", repo=tmp_path / "repo", allow_pickle_weights=True
    )
    with pytest.raises(ExportError, match=error) as caught:
        export_model(options)
    assert "\n" not in str(caught.value)


def test_a_config_without_architectures_says_it_exports_an_embedder(tmp_path: Path) -> None:
    folder = build(tmp_path / "noarch", "BertConfig", "BertModel", SMALL)
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]
    (folder / "config.json").write_text(json.dumps(config))
    said: list[str] = []
    export_model(
        ExportOptions(model=str(folder), name="x", repo=tmp_path / "repo"), progress=said.append
    )
    assert any("names no architectures" in line for line in said)


def test_a_classifier_that_reads_padded_positions_is_refused_naming_the_padding(
    tmp_path: Path,
) -> None:
    """XLNet's classifier reads the last position, padding in a right-padded batch: served, a
    text's probabilities moved by up to 0.1 with its batch neighbours (a probe's finding),
    while the export compared the graph with PyTorch on the same padded batch and passed."""
    folder = build(
        tmp_path / "xlnet",
        "XLNetConfig",
        "XLNetForSequenceClassification",
        {"d_model": 32, "n_layer": 2, "n_head": 2, "d_inner": 64, "vocab_size": 30522,
         "num_labels": 3},
    )  # fmt: skip
    with pytest.raises(ValidationError, match="depends on the texts batched with it") as caught:
        export_model(ExportOptions(model=str(folder), name="x", repo=tmp_path / "repo"))
    assert "\n" not in str(caught.value)


def test_a_bart_classifier_passes_the_batch_check_with_its_own_special_tokens(
    tmp_path: Path,
) -> None:
    """BART needs an eos token in every text: a made-up batch of ones refused it on every
    runtime (a probe's finding). Its eos here is MiniLM's [SEP], which the tokenizer adds."""
    folder = build(
        tmp_path / "bart",
        "BartConfig",
        "BartForSequenceClassification",
        {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
         "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
         "vocab_size": 30522, "max_position_embeddings": 256, "num_labels": 3,
         "pad_token_id": 0, "bos_token_id": 101, "eos_token_id": 102},
    )  # fmt: skip
    result = export_model(
        ExportOptions(
            model=str(folder), name="b", repo=tmp_path / "repo", runtime=Runtime.PYTHON_TORCH
        )
    )
    assert result.spec.labels == ("LABEL_0", "LABEL_1", "LABEL_2")
