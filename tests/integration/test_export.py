"""Export of small random models built from a config: architectures, pooling, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.integration.models import SENTIMENT_LABELS, tiny_model
from tritonhf import data
from tritonhf.errors import ConfigError, ExportError, ModelSourceError, ValidationError
from tritonhf.export.head import Pooling, load_head
from tritonhf.export.onnx_export import (
    MAX_OPSET,
    MIN_OPSET,
    export_onnx,
    load_encoder,
    sentence_encoder,
)
from tritonhf.export.pipeline import ExportOptions, export_model
from tritonhf.export.source import load_fast_tokenizer, resolve_model
from tritonhf.export.validate import validate_onnx
from tritonhf.observability.drift import (
    EMBEDDING_SIMILARITY,
    PROFILE_FILE,
    FeatureProfile,
    ReferenceProfile,
)
from tritonhf.observability.drift import LABEL as LABEL_FEATURE
from tritonhf.repository.configs import BatchingPolicy, StepTuning
from tritonhf.spec import Layout, Runtime, Task


@pytest.mark.parametrize(
    ("architecture", "pooling", "expected"),
    [
        ("bert", None, Pooling.MEAN),
        ("bert", "cls_token", Pooling.CLS),
        ("distilbert", "max_tokens", Pooling.MAX),
    ],
)
def test_small_models_export_with_their_pooling_and_pass_validation(
    tmp_path: Path, architecture: str, pooling: str | None, expected: Pooling
) -> None:
    folder = tiny_model(tmp_path / "model", architecture, pooling=pooling)
    result = export_model(ExportOptions(model=str(folder), name="tiny", repo=tmp_path / "repo"))
    assert result.spec.embedding_size == 32
    assert result.spec.max_length == 128  # the model's positions, below the tokenizer's 512
    assert result.validation.passed
    manifest = json.loads((tmp_path / "repo" / "tiny" / "tritonhf.json").read_text())
    assert manifest["head"] == {"pooling": [expected.value], "steps": [{"normalize": True}]}


def test_pooling_is_really_in_the_graph(tmp_path: Path) -> None:
    import onnxruntime as ort

    folder = tiny_model(tmp_path / "model", "bert", pooling="cls_token")
    export_model(ExportOptions(model=str(folder), name="tiny", repo=tmp_path / "repo"))
    session = ort.InferenceSession(str(tmp_path / "repo" / "tiny_model" / "1" / "model.onnx"))
    ids = np.array([[101, 7592, 2088, 102, 0, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1, 0, 0]], dtype=np.int64)
    (with_padding,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    (without,) = session.run(None, {"input_ids": ids[:, :4], "attention_mask": mask[:, :4]})
    np.testing.assert_allclose(with_padding, without, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(with_padding), 1.0, atol=1e-5)


def test_validation_fails_loudly_with_the_measured_difference(tmp_path: Path) -> None:
    folder = tiny_model(tmp_path / "model", "bert")
    source = resolve_model(str(folder))
    encoder = sentence_encoder(
        load_encoder(source), source.head, load_head(source.head), token_types=True
    )
    info = export_onnx(encoder, tmp_path / "model.onnx")
    failed = r"(?s)beyond atol=0.*EMBEDDING.*NO.*rounding.*raise --atol"
    with pytest.raises(ValidationError, match=failed):
        validate_onnx(
            encoder=encoder,
            tokenizer=load_fast_tokenizer(source),
            onnx_path=info.path,
            texts=["a first sentence", "a second, longer sentence with more tokens"],
            max_length=64,
            atol=0.0,
        )


def test_pickle_weights_are_refused_unless_allowed(tmp_path: Path) -> None:
    import torch

    folder = tiny_model(tmp_path / "model", "bert")
    state = load_encoder(resolve_model(str(folder))).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ExportError, match="allow-pickle-weights"):
        export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo"))
    result = export_model(
        ExportOptions(model=str(folder), repo=tmp_path / "repo", allow_pickle_weights=True)
    )
    assert result.validation.passed


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_precision_checkpoint_exports_a_float32_graph(tmp_path: Path, dtype: str) -> None:
    import onnx
    import torch
    from transformers import AutoModel

    folder = tiny_model(tmp_path / "model", "bert")
    AutoModel.from_pretrained(folder).to(getattr(torch, dtype)).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["dtype"] == dtype

    result = export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo"))

    assert result.validation is not None
    assert result.validation.passed
    graph = onnx.load(str(tmp_path / "repo" / "minilm_model" / "1" / "model.onnx"))
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_a_missing_shard_is_named_without_pickle_advice(tmp_path: Path) -> None:
    from transformers import AutoModel

    folder = tiny_model(tmp_path / "model", "bert")
    AutoModel.from_pretrained(folder).save_pretrained(folder, max_shard_size="100KB")
    (folder / "model.safetensors").unlink(missing_ok=True)
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[-1].unlink()

    with pytest.raises(ExportError, match=shards[-1].name) as refused:
        export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo"))
    assert "pickle" not in str(refused.value)


def test_a_folder_without_tokenizer_files_is_refused(tmp_path: Path) -> None:
    folder = tiny_model(tmp_path / "model", "bert")
    for path in folder.iterdir():
        if path.name not in ("config.json", "model.safetensors"):
            path.unlink()

    # transformers would make a tokenizer of 5 special tokens: every word [UNK].
    with pytest.raises(ModelSourceError, match="knows only its special tokens"):
        export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo"))


def test_an_unsupported_pooling_mode_is_refused(tmp_path: Path) -> None:
    folder = tiny_model(tmp_path / "model", "bert", pooling="median_tokens")
    with pytest.raises(ExportError, match="pooling_mode_median_tokens"):
        export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo"))


def test_a_multi_label_classifier_scores_each_label_with_a_sigmoid_and_look_alikes_are_named(
    tmp_path: Path,
) -> None:
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tiny_model(tmp_path / "model", "bert", labels=("toxic", "insult", "Toxic "))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**config, "problem_type": "multi_label_classification"})
    )
    lines: list[str] = []
    export_model(
        ExportOptions(model=str(folder), name="tags", repo=tmp_path / "repo"),
        progress=lines.append,
    )
    assert "warning: labels 'toxic', 'Toxic ' look alike" in "\n".join(lines)
    texts = ["you are wonderful", "a second, longer text with a few more tokens in it"]
    tokens = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="np")
    session = ort.InferenceSession(str(tmp_path / "repo" / "tags_model" / "1" / "model.onnx"))

    (probabilities,) = session.run(
        ["PROBABILITIES"],
        {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]},
    )

    with torch.no_grad():
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        logits = model(
            input_ids=torch.from_numpy(tokens["input_ids"]),
            attention_mask=torch.from_numpy(tokens["attention_mask"]),
        ).logits
    np.testing.assert_allclose(probabilities, torch.sigmoid(logits).numpy(), atol=1e-5)
    assert not np.allclose(probabilities.sum(axis=1), 1.0)  # independent scores, not a softmax


def test_a_regression_head_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        num_labels=1, problem_type="regression",
    )  # fmt: skip
    folder = tiny_model(tmp_path / "model", "bert")
    BertForSequenceClassification(config).save_pretrained(folder)
    with pytest.raises(ExportError, match=r"regression head.*--task embedding"):
        export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**config, "problem_type": "multi_label_classification"})
    )
    with pytest.raises(ExportError, match=r"a multi-label classifier of one label; .*>= 2 labels"):
        export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo"))


def test_a_model_without_a_trained_classifier_head_is_refused_as_a_classifier(
    tmp_path: Path,
) -> None:
    folder = tiny_model(tmp_path / "model", "bert")  # a bare encoder: no classifier weights

    # A ModelSourceError: bad input, exit code 2 (the model or --task is wrong).
    with pytest.raises(ModelSourceError, match=r"not a trained classifier.*classifier\.bias"):
        export_model(
            ExportOptions(model=str(folder), task=Task.CLASSIFICATION, repo=tmp_path / "repo")
        )
    assert not (tmp_path / "repo").exists()


def test_a_tokenizer_without_a_pad_token_exports_and_validates(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = tiny_model(tmp_path / "model", "bert")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = None  # as GPT-2-style BPE tokenizers ship
    tokenizer.save_pretrained(folder)

    result = export_model(ExportOptions(model=str(folder), name="nopad", repo=tmp_path / "repo"))

    assert result.validation is not None
    assert result.validation.passed
    config = (tmp_path / "repo" / "nopad_tokenizer" / "config.pbtxt").read_text()
    assert 'key: "pad_token_id"\n  value {\n    string_value: "0"' in config


def test_a_t5_encoder_exports_with_its_encoder_stack_and_matches_sentence_transformers(
    tmp_path: Path,
) -> None:
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    # AutoModel loads a T5EncoderModel checkpoint as the full T5Model (encoder + decoder);
    # the export must embed with the encoder alone, as sentence-transformers does.
    folder = tiny_model(tmp_path / "model", "t5")
    export_model(ExportOptions(model=str(folder), name="t5", repo=tmp_path / "repo"))
    texts = ["hello world", "a second, longer text with a few more tokens in it", "x"]
    tokens = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="np")
    session = ort.InferenceSession(str(tmp_path / "repo" / "t5_model" / "1" / "model.onnx"))

    (served,) = session.run(
        None, {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    )

    expected = SentenceTransformer(str(folder), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_a_position_table_smaller_than_the_config_says_lowers_the_limit(tmp_path: Path) -> None:
    from transformers import RobertaConfig, RobertaModel

    # RoBERTa counts positions from padding_idx + 1: 40 positions hold 38 tokens.
    folder = tiny_model(tmp_path / "model", "bert")
    config = RobertaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=40, pad_token_id=1, vocab_size=30522,
    )  # fmt: skip
    RobertaModel(config).save_pretrained(folder)

    result = export_model(ExportOptions(model=str(folder), name="rob", repo=tmp_path / "repo"))
    assert result.spec.max_length == 38
    with pytest.raises(ConfigError, match=r"--max-length 40: .* use --max-length 38"):
        export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo", max_length=40))
    # Past the positions too, the refusal names the length that runs, not the positions.
    with pytest.raises(ConfigError, match=r"exceeds the model's 40 positions; use at most 38$"):
        export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo", max_length=64))


def _label_profile(repo: Path, name: str) -> FeatureProfile:
    profile = ReferenceProfile.load(repo / f"{name}_model" / "1" / PROFILE_FILE)
    assert profile is not None
    return profile.features[LABEL_FEATURE]


def test_a_python_torch_classifier_records_the_labels_it_predicts_for_drift(
    tmp_path: Path,
) -> None:
    folder = tiny_model(tmp_path / "model", "bert", labels=SENTIMENT_LABELS)
    repo = tmp_path / "repo"
    for name, runtime in (("torch", Runtime.PYTHON_TORCH), ("graph", Runtime.PYTHON_ONNX)):
        export_model(ExportOptions(model=str(folder), name=name, repo=repo, runtime=runtime))

    from_torch, from_graph = _label_profile(repo, "torch"), _label_profile(repo, "graph")

    assert from_torch.categories == SENTIMENT_LABELS
    assert from_torch.count == len(data.sentences())
    # The same model behind both runtimes: the same predictions, to a text or two.
    np.testing.assert_allclose(from_torch.proportions, from_graph.proportions, atol=2 / 260)


@pytest.mark.parametrize("opset", [MIN_OPSET, MAX_OPSET])
def test_a_classifier_exports_at_both_ends_of_the_opset_range(tmp_path: Path, opset: int) -> None:
    folder = tiny_model(tmp_path / "model", "bert", labels=SENTIMENT_LABELS)

    result = export_model(
        ExportOptions(model=str(folder), name="cls", repo=tmp_path / "repo", opset=opset)
    )

    assert result.onnx is not None
    assert result.onnx.opset == opset
    assert result.validation is not None
    assert result.validation.passed  # LABEL and SCORE included


def test_a_new_version_with_another_layout_is_refused_naming_the_layout(tmp_path: Path) -> None:
    folder = tiny_model(tmp_path / "model", "bert")
    repo = tmp_path / "repo"
    export_model(ExportOptions(model=str(folder), name="tiny", repo=repo))
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))

    with pytest.raises(ConfigError, match=r"would change its layout \(split -> merged\)"):
        export_model(
            ExportOptions(
                model=str(folder), name="tiny", repo=repo, version=2, layout=Layout.MERGED
            )
        )
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before
    # Tuning a flag sets is in the configs every version shares too: refused (exit 2), naming
    # the change.
    changed = (
        r"tiny_\w+'s config \(dynamic_batching: .*max_queue_size: 256.* -> .*max_queue_size: 8"
    )
    with pytest.raises(ConfigError, match=changed):
        export_model(
            ExportOptions(
                model=str(folder),
                name="tiny",
                repo=repo,
                version=2,
                tuning=StepTuning(batching=BatchingPolicy(max_queue_size=8)),
            )
        )
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before


def test_a_tokenizer_with_ids_the_model_has_no_row_for_is_refused(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    folder = tiny_model(tmp_path / "model", "bert")
    small = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=64)  # fmt: skip
    BertModel(small).save_pretrained(folder)  # beside a tokenizer of 30,522 ids

    with pytest.raises(ModelSourceError, match=r"ids up to 30,521 .* has 1,000 rows"):
        export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo"))
    assert not (tmp_path / "repo").exists()


def test_added_tokens_past_the_embedding_table_export_with_a_note(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = tiny_model(tmp_path / "model", "bert")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(["<extra-1>", "<extra-2>"])
    tokenizer.save_pretrained(folder)
    progress: list[str] = []

    export_model(ExportOptions(model=str(folder), repo=tmp_path / "repo"), progress=progress.append)

    assert any(line.startswith("note: 2 added token(s) have ids past") for line in progress)


def test_an_export_notes_its_drift_reference_and_a_revision_a_folder_ignores(
    tmp_path: Path,
) -> None:
    folder = tiny_model(tmp_path / "model", "bert")
    progress: list[str] = []

    options = ExportOptions(model=str(folder), repo=tmp_path / "repo", revision="v1")
    export_model(options, progress=progress.append)

    assert any("drift is scored against the package corpus" in line for line in progress)
    assert any("is a local folder, read as it is" in line for line in progress)
    profile = ReferenceProfile.load(tmp_path / "repo" / "minilm_model" / "1" / PROFILE_FILE)
    assert profile is not None
    assert EMBEDDING_SIMILARITY in profile.features  # the corpus: 260 distinct texts


def test_an_embedder_with_too_small_a_drift_reference_is_told_what_is_not_scored(
    tmp_path: Path,
) -> None:
    folder = tiny_model(tmp_path / "model", "bert")
    reference = tmp_path / "reference.txt"
    reference.write_text("a text\nanother text\n" * 150)  # 300 lines, 2 distinct texts
    progress: list[str] = []

    options = ExportOptions(model=str(folder), repo=tmp_path / "repo", drift_reference=reference)
    export_model(options, progress=progress.append)

    assert any("has 2 distinct texts, fewer than the 200" in line for line in progress), progress
    profile = ReferenceProfile.load(tmp_path / "repo" / "minilm_model" / "1" / PROFILE_FILE)
    assert profile is not None
    assert set(profile.features) == {"token_length"}


def test_sentence_transformers_lower_casing_is_exported_into_the_tokenizer(
    tmp_path: Path,
) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as st
    from tokenizers import Tokenizer

    from tritonhf.backends.tokenizer import load_tokenizer

    base = tiny_model(tmp_path / "base", "bert")
    # A cased tokenizer, and sentence-transformers' flag to lower-case texts before it.
    for name, edit in (
        ("tokenizer.json", lambda c: c["normalizer"].update(lowercase=False)),
        ("tokenizer_config.json", lambda c: c.update(do_lower_case=False)),
    ):
        config = json.loads((base / name).read_text())
        edit(config)
        (base / name).write_text(json.dumps(config))
    transformer = st.Transformer(str(base))
    pooling = st.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    model.save(str(tmp_path / "model"))
    # The flag as sentence-transformers 2-5 saved it (6 reads it, and saves no such key).
    st_config = tmp_path / "model" / "sentence_bert_config.json"
    st_config.write_text(json.dumps({**json.loads(st_config.read_text()), "do_lower_case": True}))
    texts = ["Hello World", "THE Quick Brown Fox", "hello world"]

    result = export_model(
        ExportOptions(model=str(tmp_path / "model"), name="lower", repo=tmp_path / "repo")
    )

    served = load_tokenizer(result.folders[0] / "1" / "tokenizer.json", result.spec.max_length)
    got = [encoding.ids for encoding in served.encode_batch(texts)]
    expected = SentenceTransformer(str(tmp_path / "model"), device="cpu").tokenize(texts)
    assert got == [[i for i in row if i != 0] for row in expected["input_ids"].tolist()]
    assert got[0] == got[2]  # the case is gone
    cased = Tokenizer.from_file(str(base / "tokenizer.json"))
    assert cased.encode(texts[0]).ids != got[0]  # and the base tokenizer kept it


def test_a_tokenizer_that_truncates_on_the_left_is_served_keeping_the_end(
    tmp_path: Path,
) -> None:
    from transformers import AutoTokenizer

    from tritonhf.backends.tokenizer import encode_texts, load_tokenizer

    folder = tiny_model(tmp_path / "model", "bert")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "truncation_side": "left"}))
    texts = [" ".join(f"word{i}" for i in range(400)) + " and the end", "short"]

    result = export_model(ExportOptions(model=str(folder), name="left", repo=tmp_path / "repo"))

    length = result.spec.max_length
    served = load_tokenizer(result.folders[0] / "1" / "tokenizer.json", length)
    expected = AutoTokenizer.from_pretrained(folder)(texts, truncation=True, max_length=length)
    got = [e.ids for e in encode_texts(served, texts, length).encodings]
    assert got == expected["input_ids"]
    assert served.decode(got[0]).endswith("and the end")


def test_optimize_for_a_model_graph_fusion_does_not_know_is_refused_before_exporting(
    tmp_path: Path,
) -> None:
    folder = tiny_model(tmp_path / "model", "t5")
    progress: list[str] = []

    with pytest.raises(ConfigError, match=r"graph fusion knows BERT-like encoders .* not 't5'"):
        export_model(
            ExportOptions(model=str(folder), repo=tmp_path / "repo", optimize=True),
            progress=progress.append,
        )
    assert progress == []  # before loading the model


def test_optimize_without_the_memory_for_fusion_is_refused_before_exporting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2.6 GB graph was exported and validated (a minute and ~8 GB) before the refusal."""
    folder = tiny_model(tmp_path / "model", "bert")
    monkeypatch.setattr("tritonhf.export.optimize.memory_available", lambda: 1)
    progress: list[str] = []

    with pytest.raises(ExportError, match=r"graph fusion \(--optimize\) of a 0.0 GB graph"):
        export_model(
            ExportOptions(model=str(folder), repo=tmp_path / "repo", optimize=True),
            progress=progress.append,
        )
    assert not any("exporting ONNX" in line for line in progress), progress
    assert not (tmp_path / "repo").exists()


def test_sigterm_stops_an_export_as_ctrl_c_does_leaving_no_work_folder(tmp_path: Path) -> None:
    """SIGTERM (timeout, a CI cancel, a Job's deadline) ended Python at once: a probe's export
    killed while moving folders in left a step missing, and each left its graph in /tmp."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    # The default model: its validation takes seconds, a tiny model's could end before the
    # signal arrives on a busy machine.
    command = [sys.executable, "-m", "tritonhf.cli.main", "export", "--name", "t"]
    # Not unbuffered: the progress lines must be flushed by the CLI itself, as for `| tee`.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("PYTHONUNBUFFERED", None)
    export = subprocess.Popen(
        [*command, "--repo", str(tmp_path / "repo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert export.stdout is not None
    # Once its graph is written (into its work folder): a signal while a native module is
    # imported (onnx's, with nanobind) aborts the process, whatever Python does with it.
    while "validating ONNX Runtime" not in (line := export.stdout.readline()):
        assert line, export.communicate()
    assert list(tmp_path.glob(f"tritonhf-export-{export.pid}-*")), "no work folder yet"
    export.send_signal(signal.SIGTERM)
    _, err = export.communicate(timeout=60)

    assert export.returncode == 143, err[-2000:]  # what a shell reports for SIGTERM
    assert "interrupted" in err.splitlines(), err[-2000:]
    for temp in (tmp_path, Path(tempfile.gettempdir())):  # its work folder went with it
        assert not list(temp.glob(f"tritonhf-export-{export.pid}-*"))
    assert not (tmp_path / "repo" / "t_model").exists()
