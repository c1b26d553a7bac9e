"""Precision variants and runtimes, served and judged by the acceptance gate (`tritonhf validate`).

The variants are exported beside the session's models and loaded into its running server in
explicit model-control mode, so they go through the whole serving path.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLASSIFIER
from tests.integration.loaded import unload_pipelines
from tests.integration.models import SENTIMENT_LABELS, tiny_model
from tritonhf import data
from tritonhf.cli.main import main
from tritonhf.client import InvalidInputError, TritonHFClient
from tritonhf.errors import ConfigError, ExportError, RepositoryError, ValidationError
from tritonhf.export.pipeline import ExportOptions, export_model
from tritonhf.gate.acceptance import AcceptanceOptions, run_acceptance
from tritonhf.gate.agreement import Thresholds
from tritonhf.server.launcher import TritonServer
from tritonhf.spec import Precision, Runtime

TEXTS = data.sentences()[:96]


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny-embedder"))


@pytest.fixture(scope="module")
def grpc(server: TritonServer) -> Iterator[TritonHFClient]:
    with TritonHFClient(server.config.grpc_url, timeout_s=120) as client:
        yield client


@pytest.fixture(scope="module")
def variants(
    repo: Path,
    classifier_source: Path,
    tiny_embedder: Path,
    grpc: TritonHFClient,
    server: TritonServer,
) -> Iterator[dict[str, str]]:
    """Export and load: int8 of both tasks, an fp32 tiny embedder, python-torch of both."""
    exports = {
        "cls_int8": dict(model=str(classifier_source), precision=Precision.INT8),
        "emb_fp32": dict(model=str(tiny_embedder)),
        "emb_int8": dict(model=str(tiny_embedder), precision=Precision.INT8, optimize=True),
        "cls_torch": dict(model=str(classifier_source), runtime=Runtime.PYTHON_TORCH),
        "minilm_torch": dict(runtime=Runtime.PYTHON_TORCH),
    }
    try:
        for name, options in exports.items():
            export_model(ExportOptions(name=name, repo=repo, max_batch_size=16, **options))  # type: ignore[arg-type]
            grpc.load_model(name)
        yield {name: name for name in exports}
    finally:
        # Leave the session's repository and server as they were: later tests use both.
        unload_pipelines(grpc, server, repo, exports)


def test_the_served_fp32_embedder_passes_the_gate_against_pytorch(server: TritonServer) -> None:
    report = run_acceptance(
        AcceptanceOptions(reference="default", model="minilm", url=server.config.grpc_url)
    )
    assert report.passed, report.table()
    assert report.precision is Precision.FP32
    figures = {c.name: c.value for c in report.criteria}
    assert figures["min cosine"] >= 0.9999
    assert figures["top-5 agreement"] >= 0.98
    assert report.num_texts == len(data.sentences())


def test_the_served_fp32_classifier_passes_the_gate(
    server: TritonServer, classifier_source: Path
) -> None:
    report = run_acceptance(
        AcceptanceOptions(
            reference=str(classifier_source),
            model=CLASSIFIER,
            url=server.config.http_url,
            protocol="http",
        )
    )
    assert report.passed, report.table()
    figures = {c.name: c.value for c in report.criteria}
    assert figures["label agreement"] == 1.0
    assert figures["max probability diff"] < 1e-4


@pytest.mark.parametrize(
    ("model", "reference"), [("minilm", "classifier"), (CLASSIFIER, "default")]
)
def test_a_reference_of_the_other_kind_is_refused_before_any_text_is_sent(
    server: TritonServer, classifier_source: Path, model: str, reference: str
) -> None:
    path = str(classifier_source) if reference == "classifier" else reference
    with pytest.raises(ConfigError, match=r"pass the model .* was exported from"):
        run_acceptance(AcceptanceOptions(reference=path, model=model, url=server.config.grpc_url))


@pytest.mark.parametrize("model", ["cls_int8", "emb_int8"])
def test_int8_variants_declare_their_precision_and_pass_the_int8_gate(
    server: TritonServer,
    variants: dict[str, str],
    classifier_source: Path,
    tiny_embedder: Path,
    model: str,
) -> None:
    reference = classifier_source if model.startswith("cls") else tiny_embedder
    report = run_acceptance(
        AcceptanceOptions(reference=str(reference), model=model, url=server.config.grpc_url)
    )
    assert report.precision is Precision.INT8
    assert report.passed, report.table()


@pytest.mark.parametrize("model", ["cls_int8", "emb_int8"])
def test_a_served_int8_text_gets_its_own_output_whatever_it_is_batched_with(
    grpc: TritonHFClient, variants: dict[str, str], model: str
) -> None:
    # Dynamic int8 scales activations per call; the step runs each text alone so that a
    # text's answer does not depend on its neighbours or their padding.
    texts = ["short", "a longer sentence about a parcel that never arrived on time", "fine"]

    def answers(batch: list[str]) -> list[object]:
        if model.startswith("emb"):
            return [row.tolist() for row in grpc.embed(batch, model=model)]
        return [(c.label, c.score, c.top) for c in grpc.classify(batch, model=model)]

    assert answers(texts) == [answer for text in texts for answer in answers([text])]


def test_int8_really_changes_the_graph(repo: Path, variants: dict[str, str]) -> None:
    manifest = json.loads((repo / "emb_int8" / "tritonhf.json").read_text())
    assert manifest["spec"]["precision"] == "int8"
    assert manifest["variant"]["int8"]["quantized"] > 0
    assert manifest["variant"]["optimized"] is True
    assert manifest["variant"]["gate"]["passed"] is True
    fp32 = (repo / "emb_fp32_model" / "1" / "model.onnx").stat().st_size
    int8 = (repo / "emb_int8_model" / "1" / "model.onnx").stat().st_size
    assert int8 < fp32


def test_validate_exits_1_with_the_table_when_the_served_model_is_not_the_reference(
    server: TritonServer,
    variants: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Same weights, CLS pooling instead of mean: the embeddings move, the gate must say so.
    other = tiny_model(tmp_path / "cls-pooling", pooling="cls_token")
    data_file = tmp_path / "eval.csv"
    with data_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([text, "x"] for text in TEXTS[:40])
    code = main(
        ["validate", "--url", server.config.grpc_url, "--model", "emb_fp32",
         "--reference", str(other), "--data", str(data_file)]
    )  # fmt: skip
    captured = capsys.readouterr()
    out = captured.out
    assert code == 1, captured.err
    assert "verdict: FAIL" in out, captured.err
    assert "min cosine" in out
    assert "(fp32, 40 texts)" in out


def test_validate_reports_accuracy_on_labelled_data_and_refuses_labels_the_model_lacks(
    server: TritonServer,
    classifier_source: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def validate_on(labels: list[str]) -> int:
        data_file = tmp_path / "labelled.csv"
        with data_file.open("w", newline="") as handle:
            csv.writer(handle).writerows(
                [("text", "label"), *zip(TEXTS[:12], labels, strict=False)]
            )
        return main(
            ["validate", "--url", server.config.grpc_url, "--model", CLASSIFIER,
             "--reference", str(classifier_source), "--data", str(data_file), "--json"]
        )  # fmt: skip

    gold = [SENTIMENT_LABELS[i % 3] for i in range(12)]
    assert validate_on(gold) == 0
    criteria = json.loads(capsys.readouterr().out)["criteria"]
    served, reference = criteria["served accuracy"], criteria["PyTorch accuracy"]
    assert served["bound"] is None
    assert served["value"] == reference["value"]  # fp32: the same labels as PyTorch
    assert 0.0 <= served["value"] <= 1.0

    assert validate_on([*gold[:11], "sport"]) == 2  # bad input
    assert "its labels ['sport'] are not the model's" in capsys.readouterr().err


def test_validate_json_reports_each_criterion(
    server: TritonServer, variants: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["validate", "--url", server.config.grpc_url, "--model", "minilm", "--reference",
         "default", "--limit", "32", "--json"]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["passed"] is True
    assert report["num_texts"] == 32
    assert set(report["criteria"]) == {"min cosine", "mean cosine", "top-5 agreement"}


@pytest.mark.parametrize(
    ("torch_model", "onnx_model"), [("cls_torch", CLASSIFIER), ("minilm_torch", "minilm")]
)
def test_the_python_torch_runtime_serves_what_the_onnx_graph_serves(
    grpc: TritonHFClient, variants: dict[str, str], torch_model: str, onnx_model: str
) -> None:
    if torch_model == "cls_torch":
        ours, theirs = (
            grpc.classify(TEXTS, model=torch_model),
            grpc.classify(TEXTS, model=onnx_model),
        )
        assert [r.label for r in ours] == [r.label for r in theirs]
        assert np.allclose([r.score for r in ours], [r.score for r in theirs], atol=1e-5)
    else:
        ours_e = grpc.embed(TEXTS, model=torch_model)
        theirs_e = grpc.embed(TEXTS, model=onnx_model)
        assert (ours_e * theirs_e).sum(axis=1).min() >= 0.9999
    config = grpc.model_config(f"{torch_model}_model")
    assert config["backend"] == "python"
    assert config["instance_group"][0]["kind"] == "KIND_CPU"  # no CUDA here


def test_the_python_torch_step_refuses_ids_past_its_vocabulary(
    grpc: TritonHFClient, variants: dict[str, str]
) -> None:
    module = grpc._module()
    tensors = []
    for name, values in (("input_ids", [[101, 30522, 102]]), ("attention_mask", [[1, 1, 1]])):
        tensor = module.InferInput(name, [1, 3], "INT64")
        tensor.set_data_from_numpy(np.array(values, dtype=np.int64))
        tensors.append(tensor)

    with pytest.raises(InvalidInputError, match=r"must lie in \[0, 30522\)"):
        grpc._call("minilm_torch_model", "infer", "minilm_torch_model", tensors)

    assert grpc.embed(["still serving"], model="minilm_torch").shape == (1, 384)


def test_export_refuses_a_variant_below_the_gate_and_writes_nothing(
    tiny_embedder: Path, tmp_path: Path
) -> None:
    impossible = Thresholds(
        label_agreement=1.0, max_probability_diff=0.0, min_cosine=1.0, mean_cosine=1.0,
        top5_agreement=1.0,
    )  # fmt: skip
    repo = tmp_path / "repo"
    with pytest.raises(ValidationError, match="int8 refused") as refused:
        export_model(
            ExportOptions(
                model=str(tiny_embedder),
                name="strict",
                repo=repo,
                precision=Precision.INT8,
                thresholds=impossible,
            )
        )
    assert "min cosine" in str(refused.value)
    assert not repo.exists()


def test_the_gate_judges_a_variant_on_the_texts_given_and_the_manifest_says_which(
    tiny_embedder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # as the CLI logs
    texts = tmp_path / "in-domain.csv"
    subjects = ("my refund", "the parcel", "support", "the invoice", "my account")
    states = ("never arrived", "was great", "is late", "looks wrong")
    rows = [f"{n},{s} {t}" for n, (s, t) in enumerate(itertools.product(subjects, states))]
    texts.write_text("id,text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    progress: list[str] = []
    repo = tmp_path / "repo"

    export_model(
        ExportOptions(model=str(tiny_embedder), repo=repo, optimize=True, gate_data=texts),
        progress=progress.append,
    )

    assert "computing PyTorch reference outputs for the gate (20 texts)" in progress
    manifest = json.loads((repo / "minilm" / "tritonhf.json").read_text(encoding="utf-8"))
    assert manifest["variant"]["gate_data"] == str(texts.resolve())
    assert manifest["variant"]["gate"]["num_texts"] == 20
    # The fusion optimizer's per-pattern INFO lines stay out of the export's output.
    assert not [r.getMessage() for r in caplog.records if not r.name.startswith("tritonhf")]


def test_tensorrt_without_tensorrt_is_a_clear_error_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="tensorrt") as info:
        export_model(ExportOptions(repo=tmp_path / "repo", runtime=Runtime.TENSORRT))
    assert "python-onnx" in str(info.value)
    assert not (tmp_path / "repo").exists()


def test_a_native_runtime_repository_is_refused_by_the_wheel_server_with_the_reason(
    tiny_embedder: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    export_model(ExportOptions(model=str(tiny_embedder), repo=repo, runtime=Runtime.ONNXRUNTIME))
    from tests.conftest import server_config

    with pytest.raises(RepositoryError, match="onnxruntime backend") as info:
        TritonServer(server_config(repo)).start()
    assert "--runtime python-onnx" in str(info.value)
