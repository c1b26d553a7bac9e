"""A graph whose weights live outside it (a model over 2 GiB), as torch's exporter writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonhf.repository.onnx_files import (
    check_graph,
    data_file,
    external_data_files,
    gather_external_data,
    save_graph,
)
from tritonhf.repository.writer import StepArtifacts, write_repository
from tritonhf.spec import PipelineSpec

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def scattered(path: Path) -> Path:
    """The graph at ``path`` rewritten as torch's exporter writes one over 2 GiB: each weight
    in a file of its own beside it, named after the weight."""
    model = onnx.load(str(path))
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=False,
        size_threshold=0,
    )  # fmt: skip
    return path


def embed(path: Path) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = np.array([[101, 7592, 102, 0]], dtype=np.int64)
    return session.run(None, {"input_ids": ids, "attention_mask": np.sign(ids)})[0]


def test_a_graph_under_2_gib_has_no_data_file_and_is_left_as_it_is(tiny_onnx: Path) -> None:
    before = tiny_onnx.read_bytes()

    assert gather_external_data(tiny_onnx) == []
    assert external_data_files(tiny_onnx) == []
    assert tiny_onnx.read_bytes() == before


def test_weights_in_many_files_are_gathered_into_one_beside_the_graph(tiny_onnx: Path) -> None:
    expected = embed(tiny_onnx)
    scattered(tiny_onnx)
    assert {p.name for p in external_data_files(tiny_onnx)} == {"axes", "weight"}

    assert gather_external_data(tiny_onnx) == [data_file(tiny_onnx)]

    assert sorted(p.name for p in tiny_onnx.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert external_data_files(tiny_onnx) == [tiny_onnx.parent / "model.onnx.data"]
    check_graph(tiny_onnx)
    np.testing.assert_array_equal(embed(tiny_onnx), expected)


def test_saving_again_replaces_the_data_file_instead_of_appending_to_it(tiny_onnx: Path) -> None:
    """onnx appends to an existing data file: the old weights stayed in it, for good."""
    gather_external_data(scattered(tiny_onnx))
    size = data_file(tiny_onnx).stat().st_size

    save_graph(onnx.load(str(tiny_onnx)), tiny_onnx, external=True)

    assert data_file(tiny_onnx).stat().st_size == size
    check_graph(tiny_onnx)


def test_the_model_step_gets_the_graph_and_its_data_file(
    tmp_path: Path, tiny_onnx: Path, tokenizer_json: Path
) -> None:
    """Only model.onnx was copied: the served step could not find its weights."""
    expected = embed(tiny_onnx)
    gather_external_data(scattered(tiny_onnx))
    artifacts = StepArtifacts(
        onnx_path=tiny_onnx, tokenizer_json=tokenizer_json, pad_token_id=0, vocab_size=30522
    )

    write_repository(spec=PipelineSpec(), repo=tmp_path / "repo", artifacts=artifacts)

    version = tmp_path / "repo" / "minilm_model" / "1"
    assert {"model.onnx", "model.onnx.data"} <= {p.name for p in version.iterdir()}
    np.testing.assert_array_equal(embed(version / "model.onnx"), expected)
