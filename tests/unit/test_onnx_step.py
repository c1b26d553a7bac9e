from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tritonhf.backends import onnx_runtime as step
from tritonhf.repository.configs import StepTuning, model_config
from tritonhf.spec import PipelineSpec, Runtime, Task


def request(rows: list[list[int]]) -> dict[str, np.ndarray]:
    ids = np.array(rows, dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def test_step_module_imports_outside_the_server_without_pb_utils() -> None:
    assert step.pb_utils is None


def test_stack_ragged_pads_shorter_requests_with_zeros_and_keeps_request_order() -> None:
    stacked = step.stack_ragged(
        [request([[101, 7, 102]]), request([[101, 5, 6, 7, 102], [101, 8, 9, 10, 102]])]
    )

    assert stacked["input_ids"].tolist() == [
        [101, 7, 102, 0, 0],
        [101, 5, 6, 7, 102],
        [101, 8, 9, 10, 102],
    ]
    assert stacked["attention_mask"].tolist() == [
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
    ]


def test_stack_ragged_keeps_int64_and_a_single_request_unchanged() -> None:
    one = request([[101, 1, 102], [101, 2, 102]])

    stacked = step.stack_ragged([one])

    assert stacked["input_ids"].dtype == np.int64
    assert stacked["attention_mask"].dtype == np.int64
    np.testing.assert_array_equal(stacked["input_ids"], one["input_ids"])
    assert stacked["attention_mask"] is one["attention_mask"]  # passed through, not copied


def test_stack_ragged_output_runs_through_an_onnx_graph(tiny_onnx: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    stacked = step.stack_ragged([request([[1, 2]]), request([[3, 4, 5, 6]])])

    (output,) = session.run(["EMBEDDING"], stacked)

    assert output.shape == (2, 384)
    # The tiny graph sums masked ids: padding contributes nothing.
    assert output[:, 0].tolist() == [3.0, 18.0]


@pytest.mark.parametrize(
    ("ids_shape", "mask_shape"),
    [((2, 3), (2, 4)), ((2, 3), (1, 3)), ((1, 0), (1, 0)), ((3,), (3,)), ((1, 2, 3), (1, 2, 3))],
    ids=["length-mismatch", "batch-mismatch", "empty", "1d", "3d"],
)
def test_check_token_inputs_rejects_mismatched_empty_or_non_2d_tensors(
    ids_shape: tuple[int, ...], mask_shape: tuple[int, ...]
) -> None:
    tensors = {
        "input_ids": np.ones(ids_shape, dtype=np.int64),
        "attention_mask": np.ones(mask_shape, dtype=np.int64),
    }

    with pytest.raises(ValueError, match="must be equal, non-empty") as info:
        step.check_token_inputs(tensors)

    assert str(ids_shape) in str(info.value)
    assert str(mask_shape) in str(info.value)


def test_check_token_inputs_accepts_equal_2d_tensors() -> None:
    step.check_token_inputs(request([[101, 102], [101, 102]]), max_length=2, vocab_size=103)


def test_check_token_inputs_refuses_rows_longer_than_the_pipeline_tokenizes() -> None:
    with pytest.raises(step.TokenTensorError, match=r"3 tokens per row, more than .* 2") as info:
        step.check_token_inputs(request([[101, 7, 102]]), max_length=2)

    assert info.value.reason == "bad_shape"


@pytest.mark.parametrize("bad_id", [-1, 30522, 2**40])
def test_check_token_inputs_refuses_ids_outside_the_vocabulary(bad_id: int) -> None:
    with pytest.raises(step.TokenTensorError, match=r"must lie in \[0, 30522\)") as info:
        step.check_token_inputs(request([[101, bad_id, 102]]), vocab_size=30522)

    assert info.value.reason == "bad_token_id"
    assert str(bad_id) in str(info.value)


def test_check_token_inputs_without_a_vocabulary_size_still_refuses_negative_ids() -> None:
    step.check_token_inputs(request([[10**9]]))
    with pytest.raises(step.TokenTensorError, match="must lie in"):
        step.check_token_inputs(request([[-5]]))


def test_session_settings_read_the_json_model_config() -> None:
    config = {
        "output": [{"name": "EMBEDDING", "data_type": "TYPE_FP32", "dims": ["384"]}],
        "parameters": {"intra_op_threads": {"string_value": "4"}},
    }

    assert step.SessionSettings.from_model_config(config) == step.SessionSettings(("EMBEDDING",), 4)


def test_session_settings_default_to_onnxruntime_picking_the_threads() -> None:
    config = {"output": [{"name": "EMBEDDING"}]}

    assert step.SessionSettings.from_model_config(config).intra_op_threads == 0


def test_session_settings_read_what_the_config_writer_writes() -> None:
    from google.protobuf import json_format

    config = model_config(
        PipelineSpec(runtime=Runtime.PYTHON_ONNX),
        tuning=StepTuning(intra_op_threads=2),
        vocab_size=30522,
    )
    as_json: dict[str, Any] = json.loads(
        json_format.MessageToJson(config, preserving_proto_field_name=True)
    )

    assert step.SessionSettings.from_model_config(as_json) == step.SessionSettings(
        ("EMBEDDING",),
        2,
        spinning=False,
        group_slack=1.5,
        run_token_budget=512,
        widen_when_idle=True,
        pipeline="minilm",
        max_length=256,
        vocab_size=30522,
    )


def test_cuda_graphs_are_on_unless_the_config_turns_them_off() -> None:
    config: dict[str, Any] = {"output": [{"name": "EMBEDDING"}]}
    assert step.SessionSettings.from_model_config(config).cuda_graphs

    config["parameters"] = {"cuda_graphs": {"string_value": "0"}}
    assert not step.SessionSettings.from_model_config(config).cuda_graphs


def test_string_outputs_become_utf8_bytes_for_triton() -> None:
    labels = np.array([["positive"], ["négatif"]], dtype=object)

    converted = step.as_triton_array(labels)

    assert converted.tolist() == [[b"positive"], ["négatif".encode()]]
    numbers = np.ones((2, 3), dtype=np.float32)
    assert step.as_triton_array(numbers) is numbers


def test_session_settings_list_every_output_of_a_classifier() -> None:
    from google.protobuf import json_format

    spec = PipelineSpec(task=Task.CLASSIFICATION, labels=("neg", "pos"))
    as_json = json.loads(
        json_format.MessageToJson(model_config(spec), preserving_proto_field_name=True)
    )

    settings = step.SessionSettings.from_model_config(as_json)
    assert settings.output_names == ("LABEL", "SCORE", "PROBABILITIES")


@pytest.mark.parametrize(
    "mask", [[[1, -1, 1]], [[1, 2, 1]], [[0, 0, 0]]], ids=["negative", "two", "all-zero"]
)
def test_check_token_inputs_refuses_masks_other_than_zeros_and_ones(mask: list[list[int]]) -> None:
    tensors = {"input_ids": np.array([[101, 7, 102]]), "attention_mask": np.array(mask)}

    with pytest.raises(
        step.TokenTensorError, match="attention_mask must hold only 0 and 1"
    ) as info:
        step.check_token_inputs(tensors)

    assert info.value.reason == "bad_mask"


class BatchSensitiveSession:
    """Records each call; its output depends on the whole batch, as dynamic int8's does."""

    def __init__(self) -> None:
        self.calls: list[list[list[int]]] = []

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ids = feeds["input_ids"]
        self.calls.append(ids.tolist())
        return [(ids.sum(axis=1, keepdims=True) * ids.size).astype(np.float32)]


def test_rows_alone_runs_each_row_by_itself_with_its_trailing_padding_cut() -> None:
    padded = {
        "input_ids": np.array([[101, 7, 102, 0, 0], [101, 5, 6, 7, 102]], dtype=np.int64),
        "attention_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.int64),
    }
    model = step.TritonPythonModel()
    model.settings = step.SessionSettings(("EMBEDDING",), group_slack=1.5, rows_alone=True)
    session = BatchSensitiveSession()

    (output,) = model.run_grouped(session, ["EMBEDDING"], [padded, request([[101, 9, 102]])])

    assert session.calls == [[[101, 7, 102]], [[101, 5, 6, 7, 102]], [[101, 9, 102]]]
    # Each row's output is what it gets alone: 210 * 3 tokens, 221 * 5, 212 * 3.
    assert output[:, 0].tolist() == [630.0, 1105.0, 636.0]


def test_only_an_int8_model_step_runs_rows_alone() -> None:
    from google.protobuf import json_format

    from tritonhf.spec import Precision

    def settings(precision: Precision) -> step.SessionSettings:
        spec = PipelineSpec(runtime=Runtime.PYTHON_ONNX, precision=precision)
        config = json_format.MessageToJson(model_config(spec), preserving_proto_field_name=True)
        return step.SessionSettings.from_model_config(json.loads(config))

    assert settings(Precision.INT8).rows_alone
    assert not settings(Precision.FP32).rows_alone


class RowSumSession(BatchSensitiveSession):
    """Records each call; a row's output is its own id sum, whatever it is batched with."""

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append(feeds["input_ids"].tolist())
        return [feeds["input_ids"].sum(axis=1, keepdims=True).astype(np.float32)]


def test_a_requests_short_texts_are_grouped_apart_from_its_long_one() -> None:
    long_row = [101, *range(1, 40), 102]
    mixed = {  # one request: a long text, and a short one padded to it
        "input_ids": np.array([long_row, [101, 7, 102] + [0] * 38], dtype=np.int64),
        "attention_mask": np.array([[1] * 41, [1] * 3 + [0] * 38], dtype=np.int64),
    }
    model = step.TritonPythonModel()
    model.settings = step.SessionSettings(("EMBEDDING",), group_slack=1.5)
    session = RowSumSession()

    (output,) = model.run_grouped(session, ["EMBEDDING"], [mixed, request([[101, 9, 102]])])

    assert sorted(session.calls) == sorted([[long_row], [[101, 7, 102], [101, 9, 102]]])
    assert output[:, 0].tolist() == [sum(long_row), 210.0, 212.0]  # in request order
