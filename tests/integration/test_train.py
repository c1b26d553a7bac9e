"""``tritonhf train``'s engine: the demo classifier, its output folder, reproducibility, errors."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tritonhf.data import sentiment
from tritonhf.errors import ConfigError, TritonHFError
from tritonhf.export.source import DEFAULT_MODEL, resolve_model
from tritonhf.train import (
    ClassWeight,
    DatasetError,
    SplitMetrics,
    TrainingError,
    TrainingOptions,
    TrainingReport,
    classification_metrics,
    load_training_data,
    train_classifier,
)
from tritonhf.train.trainer import class_weights

LABELS = ("negative", "positive")


@dataclass(frozen=True)
class Trained:
    report: TrainingReport
    progress: list[str]
    seconds: float


def write_csv(
    path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = ("text", "label")
) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def shipped_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(row["text"], row["label"]) for row in csv.DictReader(handle)]


def balanced_subset(path: Path, size: int) -> list[tuple[str, str]]:
    rows = shipped_rows(path)
    half = [[r for r in rows if r[1] == label][: size // 2] for label in LABELS]
    return [row for pair in zip(*half, strict=True) for row in pair]


def tensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The default classifier on the shipped dataset, trained once for the module."""
    out = tmp_path_factory.mktemp("train") / "sentiment-classifier"
    lines: list[str] = []
    started = time.perf_counter()
    report = train_classifier(
        TrainingOptions(data=sentiment.train_path(), eval_data=sentiment.eval_path(), out=out),
        progress=lines.append,
    )
    seconds = time.perf_counter() - started
    print(f"\ntrained the default classifier in {seconds:.1f} s\n{report.table()}")
    return Trained(report=report, progress=lines, seconds=seconds)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """80 training and 40 evaluation rows of the shipped data, balanced."""
    folder = tmp_path_factory.mktemp("small")
    return (
        write_csv(folder / "train.csv", balanced_subset(sentiment.train_path(), 80)),
        write_csv(folder / "eval.csv", balanced_subset(sentiment.eval_path(), 40)),
    )


# the demo classifier ------------------------------------------------------------------------


def test_the_default_classifier_reaches_85_percent_on_the_held_out_split(trained: Trained) -> None:
    held_out = trained.report.split("eval")
    assert held_out is not None
    assert held_out.examples == 124
    assert held_out.accuracy >= 0.85, trained.report.table()
    assert held_out.macro_f1 >= 0.85


def test_the_default_is_the_head_and_top_layers_from_cached_activations(trained: Trained) -> None:
    report = trained.report
    assert report.method.startswith("head + top 2 layers, from cached activations")
    assert report.labels == LABELS
    assert report.options.base == DEFAULT_MODEL
    assert [e.epoch for e in report.epochs] == [1, 2, 3]


def test_progress_has_a_line_per_epoch_with_loss_and_eval_accuracy(trained: Trained) -> None:
    epochs = [line for line in trained.progress if line.startswith("epoch ")]
    assert len(epochs) == 3
    for line in epochs:
        assert " loss " in line
        assert " eval accuracy " in line
    assert trained.progress[0].startswith("data: train 410 rows (negative 205, positive 205)")
    assert trained.progress[-1] == f"saved the classifier to {trained.report.out}"


def test_the_output_is_a_huggingface_folder_the_auto_classes_load(trained: Trained) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = trained.report.out
    names = {path.name for path in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "metrics.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)
    assert [p.name for p in out.parent.iterdir()] == [out.name], "no partial folders left"
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    model = AutoModelForSequenceClassification.from_pretrained(out, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.is_fast
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.num_labels == 2
    assert tokenizer.model_max_length == 128, "export truncates where training did"


def test_tritonhf_export_sees_the_output_as_a_classifier(trained: Trained) -> None:
    from tritonhf.spec import Task

    assert resolve_model(str(trained.report.out)).task is Task.CLASSIFICATION


def predict(folder: Path, texts: list[str]) -> list[str]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    labels: list[str] = []
    with torch.no_grad():
        for start in range(0, len(texts), 32):
            batch = tokenizer(
                texts[start : start + 32],
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            ids = model(**batch).logits.argmax(dim=-1).tolist()
            labels += [model.config.id2label[i] for i in ids]
    return labels


def test_the_saved_model_makes_exactly_the_reported_eval_predictions(trained: Trained) -> None:
    rows = shipped_rows(sentiment.eval_path())
    predicted = predict(trained.report.out, [text for text, _ in rows])
    from_saved = classification_metrics(
        split="eval",
        labels=LABELS,
        true_ids=[LABELS.index(label) for _, label in rows],
        predicted_ids=[LABELS.index(label) for label in predicted],
    )
    assert from_saved == trained.report.split("eval")
    assert predict(trained.report.out, ["Not bad at all, I'd happily go back."]) == ["positive"]


def test_metrics_json_holds_the_report(trained: Trained) -> None:
    saved = json.loads((trained.report.out / "metrics.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(trained.report.as_dict()))
    held_out = saved["splits"]["eval"]
    assert held_out["confusion"]["labels"] == list(LABELS)
    assert sum(map(sum, held_out["confusion"]["rows_true_columns_predicted"])) == 124
    assert set(held_out["classes"]) == set(LABELS)
    assert saved["options"]["learning_rate"] == 2e-4


def test_the_cli_without_data_trains_on_the_shipped_dataset_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As from an installed wheel: no checkout around, no CSV path to give.
    monkeypatch.chdir(tmp_path)
    from tritonhf.cli.main import main

    code = main(["train", "--out", "clf", "--epochs", "1", "--top-layers", "0"])

    assert code == 0
    assert "training on the package's sentiment dataset" in capsys.readouterr().out
    saved = json.loads((tmp_path / "clf" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["options"]["data"] == str(sentiment.train_path())
    held_out = saved["splits"]["eval"]  # the shipped held-out split, without --eval
    assert sum(map(sum, held_out["confusion"]["rows_true_columns_predicted"])) == 124


def test_the_table_shows_accuracy_f1_per_class_figures_and_confusion(trained: Trained) -> None:
    table = trained.report.table()
    for text in ("accuracy", "macro F1", "precision", "recall", "confusion matrix", "support"):
        assert text in table
    assert table.count("confusion matrix") == 2  # train and eval


def test_frozen_layers_keep_the_base_weights_and_the_trained_ones_change(
    trained: Trained,
) -> None:
    import torch

    base = tensors(resolve_model(DEFAULT_MODEL).path)
    saved = tensors(trained.report.out)
    kept = ("embeddings.", "encoder.layer.0.", "encoder.layer.3.")
    # position_ids is a buffer that is not saved
    frozen = [k for k in base if k.startswith(kept) and f"bert.{k}" in saved]
    assert frozen
    for key in frozen:
        assert torch.equal(saved[f"bert.{key}"], base[key]), key
    for key in ("encoder.layer.4.output.dense.weight", "encoder.layer.5.output.dense.weight"):
        assert not torch.equal(saved[f"bert.{key}"], base[key]), key
    assert not torch.equal(saved["bert.pooler.dense.weight"], base["pooler.dense.weight"])
    assert saved["classifier.weight"].shape == (2, 384)


# reproducibility, other modes ----------------------------------------------------------------


def test_the_same_seed_gives_identical_metrics_and_weights(
    small_data: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch

    train, evaluation = small_data
    runs = [
        train_classifier(
            TrainingOptions(
                data=train, eval_data=evaluation, out=tmp_path / name, epochs=2, seed=seed
            )
        )
        for name, seed in (("first", 7), ("second", 7), ("other-seed", 8))
    ]
    first, second, other = runs
    assert first.splits == second.splits
    assert [e.loss for e in first.epochs] == [e.loss for e in second.epochs]
    weights = [tensors(run.out) for run in runs]
    trained_keys = [
        k
        for k in weights[0]
        if k.startswith(("classifier.", "bert.pooler.", "bert.encoder.layer.5."))
    ]
    for key in trained_keys:
        assert torch.equal(weights[0][key], weights[1][key]), key
    assert not torch.equal(weights[0]["classifier.weight"], weights[2]["classifier.weight"])
    assert [e.loss for e in first.epochs] != [e.loss for e in other.epochs]


def test_head_only_training_leaves_every_encoder_layer_alone(
    small_data: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch

    train, _ = small_data
    report = train_classifier(
        TrainingOptions(data=train, out=tmp_path / "head", top_layers=0, epochs=2)
    )
    assert report.method == "head only, from cached encoder activations"
    assert [s.split for s in report.splits] == ["train"]
    base, saved = tensors(resolve_model(DEFAULT_MODEL).path), tensors(tmp_path / "head")
    for key in (
        k for k in base if k.startswith(("embeddings.", "encoder.")) and f"bert.{k}" in saved
    ):
        assert torch.equal(saved[f"bert.{key}"], base[key]), key


def test_a_short_full_fine_tune_runs_and_changes_the_encoder(tmp_path: Path) -> None:
    import torch

    rows = balanced_subset(sentiment.train_path(), 24)
    train = write_csv(tmp_path / "train.csv", rows)
    lines: list[str] = []
    report = train_classifier(
        TrainingOptions(
            data=train, out=tmp_path / "full", full_finetune=True, epochs=1, batch_size=8
        ),
        progress=lines.append,
    )
    assert report.method == "full fine-tune of every parameter"
    assert report.options.resolved_learning_rate == 5e-5
    assert len([line for line in lines if line.startswith("epoch 1/1")]) == 1
    train_split = report.split("train")
    assert train_split is not None
    assert train_split.examples == 24
    base, saved = tensors(resolve_model(DEFAULT_MODEL).path), tensors(tmp_path / "full")
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(saved[f"bert.{key}"], base[key])


def tiny_model(folder: Path, kind: str) -> Path:
    """A small random model of another architecture, with the MiniLM tokenizer."""
    import shutil

    from transformers import AutoModelForSequenceClassification, DistilBertConfig, RobertaConfig

    size = {"vocab_size": 30522, "max_position_embeddings": 160, "pad_token_id": 0}
    if kind == "distilbert":
        config: Any = DistilBertConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=2, **size)
    else:
        config = RobertaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **size
        )
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(resolve_model(DEFAULT_MODEL).path / name, folder / name)
    return folder


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("roberta", "head + top 1 layer, from cached activations of the frozen layers"),
        ("distilbert", "head mode, the frozen encoder run on every step (no cached path: "),
    ],
)
def test_other_architectures_train_through_the_cached_path_or_the_model_forward(
    small_data: tuple[Path, Path], tmp_path: Path, kind: str, method: str
) -> None:
    import torch

    base = tiny_model(tmp_path / kind, kind)
    train, evaluation = small_data
    report = train_classifier(
        TrainingOptions(
            base=str(base),
            data=train,
            eval_data=evaluation,
            out=tmp_path / "out",
            top_layers=1,
            epochs=1,
        )
    )
    assert report.method.startswith(method)
    before, after = tensors(base), tensors(tmp_path / "out")
    embeddings = next(k for k in before if "word_embeddings" in k)
    assert torch.equal(before[embeddings], after[embeddings])
    assert report.labels == LABELS


# errors ---------------------------------------------------------------------------------------


def error_for(tmp_path: Path, train_rows: str, eval_rows: str | None = None) -> str:
    train = tmp_path / "train.csv"
    train.write_text(train_rows, encoding="utf-8")
    evaluation = None
    if eval_rows is not None:
        evaluation = tmp_path / "eval.csv"
        evaluation.write_text(eval_rows, encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        load_training_data(train=train, eval_data=evaluation)
    return str(caught.value)


GOOD = "text,label\ngreat stuff,positive\nawful stuff,negative\n"


@pytest.mark.parametrize(
    ("train_rows", "eval_rows", "expected"),
    [
        (
            "review,label\nnice,positive\n",
            None,
            "train.csv, line 1: the header ['review', 'label'] lacks the column(s) ['text']",
        ),
        ("text\nnice\n", None, "lacks the column(s) ['label']"),
        ("text,label\ngood,positive\n   ,negative\n", None, "train.csv, line 3: the text is empty"),
        ("text,label\ngood,positive\nbad,\n", None, "train.csv, line 3: the label is empty"),
        (
            "text,label\ngood,positive\nbad, really bad,negative\n",
            None,
            "train.csv, line 3: 3 field(s) where the header has 2; put texts that contain "
            "commas in double quotes",
        ),
        (
            'text,label\n"two\nlines",positive\n\nbad,negative\n,negative\n',
            None,
            "train.csv, line 6: the text is empty",
        ),
        (
            "text,label\ngood,positive\nnice,positive\n",
            None,
            "every one of its 2 rows has the label 'positive'; a classifier needs examples of "
            "at least 2 labels",
        ),
        ("", None, "train.csv: the file is empty"),
        (
            '{"text": "good", "label": "positive"}\n',
            None,
            "train.csv looks like JSON; training data is a CSV file with a header line",
        ),
        ("text,label\n", None, "train.csv: no rows after the header"),
        (
            GOOD,
            "text,label\nfine,positive\nmeh,neutral\n",
            "eval.csv, line 3: the label 'neutral' does not occur in the training data",
        ),
        (GOOD, "text;label\nfine;positive\n", "eval.csv, line 1: the header ['text;label'] lacks"),
        (
            "text,label,Text\ngood,positive,x\nbad,negative,y\n",
            None,
            "train.csv, line 1: the header ['text', 'label', 'Text'] names 'text' more than once",
        ),
    ],
)
def test_bad_csvs_fail_with_the_file_line_and_problem(
    tmp_path: Path, train_rows: str, eval_rows: str | None, expected: str
) -> None:
    message = error_for(tmp_path, train_rows, eval_rows)
    assert expected in message
    assert str(tmp_path) in message


def test_a_csv_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\ngood,positive\ncaf\xe9 was bad,negative\n")
    with pytest.raises(DatasetError, match=r"train.csv, line 3: not valid UTF-8"):
        load_training_data(train=path, eval_data=None)


def test_a_missing_csv_and_a_byte_order_mark(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.csv: no such file"):
        load_training_data(train=tmp_path / "nope.csv", eval_data=None)
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_training_data(train=path, eval_data=None).labels == LABELS


def test_dataset_errors_belong_to_the_package_tree_and_mean_bad_input() -> None:
    assert issubclass(DatasetError, TrainingError)
    assert issubclass(TrainingError, TritonHFError)
    assert issubclass(DatasetError, ValueError)  # the CLI exits 2 for bad input


def test_labels_are_sorted_so_ids_are_stable(tmp_path: Path) -> None:
    rows = [("b", "zebra"), ("a", "apple"), ("c", "mango"), ("d", "apple")]
    data = load_training_data(train=write_csv(tmp_path / "t.csv", rows), eval_data=None)
    assert data.labels == ("apple", "mango", "zebra")
    assert data.label_ids(data.train) == [2, 0, 1, 0]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"epochs": 0}, "epochs must be a whole number >= 1, got 0"),
        ({"batch_size": -1}, "batch_size must be"),
        ({"learning_rate": 5.0}, "learning_rate must be between 0 and 1"),
        ({"top_layers": -1}, "top_layers must be >= 0"),
        ({"seed": -3}, "seed must be in"),
        ({"class_weight": "balanced"}, "class_weight must be one of none, balanced"),
    ],
)
def test_bad_options_are_config_errors(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        TrainingOptions(data=Path("t.csv"), out=Path("out"), **overrides)


def test_a_non_empty_output_folder_needs_overwrite_and_must_be_an_earlier_output(
    tmp_path: Path,
) -> None:
    data = write_csv(tmp_path / "t.csv", [("good", "positive"), ("bad", "negative")])
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        train_classifier(TrainingOptions(data=data, out=occupied))
    with pytest.raises(
        ConfigError, match=r"has no metrics\.json, so it is not a `tritonhf train` output"
    ):
        train_classifier(TrainingOptions(data=data, out=occupied, overwrite=True))
    assert (occupied / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_output_under_a_file_is_refused_before_training(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", [("good", "positive"), ("bad", "negative")])
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="afile is a file"):
        train_classifier(TrainingOptions(data=data, out=tmp_path / "afile" / "sub"))


def test_an_output_that_cannot_be_written_is_refused_before_training_and_a_failed_save_is_one_line(
    small_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only or full --out failed after the training, with a traceback (probe E2)."""
    import errno

    from tritonhf import folders
    from tritonhf.errors import TrainingError
    from tritonhf.train import trainer

    train, _ = small_data
    with monkeypatch.context() as patched:  # as a user without write access sees it
        patched.setattr(folders.os, "access", lambda *_: False)
        with pytest.raises(ConfigError, match=r"--out .* cannot be written: .* is not writable"):
            train_classifier(TrainingOptions(data=train, out=tmp_path / "out"))

    def full(built: Path, out: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    monkeypatch.setattr(trainer, "_publish", full)
    with pytest.raises(TrainingError, match=r"could not save the classifier to .*No space left"):
        train_classifier(TrainingOptions(data=train, out=tmp_path / "out", top_layers=0, epochs=1))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # nothing half-saved


def test_a_max_length_past_a_roberta_position_table_names_the_usable_one(
    small_data: tuple[Path, Path], tmp_path: Path
) -> None:
    base = tiny_model(tmp_path / "roberta", "roberta")  # 160 positions from pad id 0 + 1
    train, _ = small_data
    with pytest.raises(ConfigError, match="use at most 159"):
        train_classifier(
            TrainingOptions(base=str(base), data=train, out=tmp_path / "out", max_length=160)
        )
    assert not (tmp_path / "out").exists()


def test_too_many_top_layers_is_a_config_error(
    small_data: tuple[Path, Path], tmp_path: Path
) -> None:
    train, _ = small_data
    with pytest.raises(
        ConfigError, match="7 top layers requested but BertForSequenceClassification has 6"
    ):
        train_classifier(TrainingOptions(data=train, out=tmp_path / "out", top_layers=7))
    assert not (tmp_path / "out").exists()


def test_overwrite_replaces_an_earlier_output(
    small_data: tuple[Path, Path], tmp_path: Path
) -> None:
    train, _ = small_data
    out = tmp_path / "out"
    options = TrainingOptions(data=train, out=out, top_layers=0, epochs=1)
    train_classifier(options)
    (out / "stale.txt").write_text("old", encoding="utf-8")
    train_classifier(TrainingOptions(data=train, out=out, top_layers=0, epochs=1, overwrite=True))
    assert not (out / "stale.txt").exists()
    assert (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# metrics --------------------------------------------------------------------------------------


def test_metrics_agree_with_scikit_learn() -> None:
    metrics_module = pytest.importorskip("sklearn.metrics")
    import numpy as np

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=200).tolist()
    predicted = [t if rng.random() < 0.7 else int(rng.integers(0, 3)) for t in truth]
    ours = classification_metrics(
        split="x", labels=("a", "b", "c"), true_ids=truth, predicted_ids=predicted
    )
    assert ours.accuracy == pytest.approx(metrics_module.accuracy_score(truth, predicted))
    assert ours.macro_f1 == pytest.approx(
        metrics_module.f1_score(truth, predicted, average="macro")
    )
    precision, recall, f1, support = metrics_module.precision_recall_fscore_support(
        truth, predicted
    )
    assert [c.precision for c in ours.classes] == pytest.approx(precision.tolist())
    assert [c.recall for c in ours.classes] == pytest.approx(recall.tolist())
    assert [c.f1 for c in ours.classes] == pytest.approx(f1.tolist())
    assert [c.support for c in ours.classes] == support.tolist()
    assert [list(r) for r in ours.confusion] == metrics_module.confusion_matrix(
        truth, predicted
    ).tolist()


def test_balanced_class_weights_agree_with_scikit_learn() -> None:
    utils = pytest.importorskip("sklearn.utils")
    import numpy as np

    ids = [0] * 30 + [1] * 240 + [2] * 7
    expected = utils.compute_class_weight("balanced", classes=np.arange(3), y=np.array(ids))
    assert class_weights([30, 240, 7]) == pytest.approx(expected.tolist())


# imbalanced data ------------------------------------------------------------------------------


def test_balanced_class_weights_let_a_rare_class_be_predicted(tmp_path: Path) -> None:
    """180 positive and 30 negative rows: unweighted, the held-out negatives are lost."""
    rows = shipped_rows(sentiment.train_path())
    positive = [r for r in rows if r[1] == "positive"][:180]
    negative = [r for r in rows if r[1] == "negative"][:30]
    train = write_csv(tmp_path / "train.csv", positive + negative)
    held_out = write_csv(tmp_path / "eval.csv", balanced_subset(sentiment.eval_path(), 40))
    evals: dict[ClassWeight, SplitMetrics] = {}
    lines: dict[ClassWeight, list[str]] = {}
    for weight in ClassWeight:
        lines[weight] = []
        options = TrainingOptions(
            data=train, eval_data=held_out, out=tmp_path / weight.value, class_weight=weight
        )
        split = train_classifier(options, progress=lines[weight].append).split("eval")
        assert split is not None
        evals[weight] = split

    unweighted, balanced = evals[ClassWeight.NONE], evals[ClassWeight.BALANCED]
    assert unweighted.classes[0].recall < 0.1 < 0.3 < balanced.classes[0].recall  # negative
    assert balanced.macro_f1 > unweighted.macro_f1 + 0.25
    assert any("6.0x the training rows" in line for line in lines[ClassWeight.NONE])
    assert not any("warning" in line for line in lines[ClassWeight.BALANCED])
    weights = "class weights negative 3.50, positive 0.58"
    assert any(weights in line for line in lines[ClassWeight.BALANCED])
    saved = json.loads((tmp_path / "balanced" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["options"]["class_weight"] == "balanced"
