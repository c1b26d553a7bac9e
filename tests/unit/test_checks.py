from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto
from tritonclient.grpc import model_config_pb2 as pb

from tritonhf.errors import RepositoryError
from tritonhf.repository.checks import check_config_matches_onnx
from tritonhf.repository.configs import model_config
from tritonhf.spec import PipelineSpec, Runtime

GraphBuilder = Callable[..., Path]
NATIVE = PipelineSpec(runtime=Runtime.ONNXRUNTIME)


def test_tiny_graph_is_a_valid_onnx_model(tiny_onnx: Path) -> None:
    onnx.checker.check_model(onnx.load(str(tiny_onnx)))


@pytest.mark.parametrize("runtime", [Runtime.ONNXRUNTIME, Runtime.PYTHON_ONNX])
def test_model_config_matches_a_graph_with_dynamic_batch_and_sequence(
    tiny_onnx: Path, runtime: Runtime
) -> None:
    check_config_matches_onnx(model_config(PipelineSpec(runtime=runtime)), tiny_onnx)


def test_unbatched_config_is_compared_without_a_batch_dimension(tiny_onnx: Path) -> None:
    config = model_config(NATIVE)
    config.max_batch_size = 0
    for entry in config.input:
        entry.dims[:] = [-1, -1]
    config.output[0].dims[:] = [-1, 384]

    check_config_matches_onnx(config, tiny_onnx)


def test_same_config_without_the_batch_dimension_fails_when_batching(tiny_onnx: Path) -> None:
    config = model_config(NATIVE)
    config.output[0].dims[:] = [-1, 384]

    with pytest.raises(RepositoryError, match="output EMBEDDING: graph dims"):
        check_config_matches_onnx(config, tiny_onnx)


def test_a_config_input_name_the_graph_lacks_is_reported_with_both_name_lists(
    tiny_onnx: Path,
) -> None:
    config = model_config(NATIVE)
    config.input[0].name = "token_ids"

    with pytest.raises(RepositoryError) as info:
        check_config_matches_onnx(config, tiny_onnx)

    message = str(info.value)
    assert "'minilm_model'" in message
    assert str(tiny_onnx) in message
    assert "input names: graph ['attention_mask', 'input_ids']" in message
    assert "config ['attention_mask', 'token_ids']" in message


def test_a_graph_output_name_the_config_lacks_is_reported(tiny_graph: GraphBuilder) -> None:
    graph = tiny_graph(output_name="sentence_embedding")

    with pytest.raises(RepositoryError, match=r"output names: graph \['sentence_embedding'\]"):
        check_config_matches_onnx(model_config(NATIVE), graph)


def test_a_wrong_input_dtype_in_the_config_is_reported(tiny_onnx: Path) -> None:
    config = model_config(NATIVE)
    config.input[1].data_type = pb.TYPE_INT32

    with pytest.raises(
        RepositoryError,
        match="input attention_mask: graph dtype TYPE_INT64, config TYPE_INT32",
    ):
        check_config_matches_onnx(config, tiny_onnx)


def test_a_graph_with_int32_inputs_is_reported_for_each_input(tiny_graph: GraphBuilder) -> None:
    graph = tiny_graph(input_type=TensorProto.INT32)

    with pytest.raises(RepositoryError) as info:
        check_config_matches_onnx(model_config(NATIVE), graph)

    message = str(info.value)
    assert "input input_ids: graph dtype TYPE_INT32, config TYPE_INT64" in message
    assert "input attention_mask: graph dtype TYPE_INT32, config TYPE_INT64" in message


def test_a_graph_with_fp16_output_is_reported(tiny_graph: GraphBuilder) -> None:
    graph = tiny_graph(output_type=TensorProto.FLOAT16)

    with pytest.raises(RepositoryError, match="output EMBEDDING: graph dtype TYPE_FP16"):
        check_config_matches_onnx(model_config(NATIVE), graph)


def test_a_wrong_embedding_size_is_reported_as_a_dims_mismatch(tiny_onnx: Path) -> None:
    config = model_config(PipelineSpec(runtime=Runtime.ONNXRUNTIME, embedding_size=768))

    with pytest.raises(
        RepositoryError, match=r"output EMBEDDING: graph dims \(-1, 384\), config \(-1, 768\)"
    ):
        check_config_matches_onnx(config, tiny_onnx)


def test_a_graph_output_of_another_rank_is_reported(tiny_graph: GraphBuilder) -> None:
    graph = tiny_graph(output_dims=("batch", "sequence", 384))

    with pytest.raises(RepositoryError, match=r"graph dims \(-1, -1, 384\), config \(-1, 384\)"):
        check_config_matches_onnx(model_config(NATIVE), graph)


def test_every_problem_is_listed_in_one_error(tiny_onnx: Path) -> None:
    config = model_config(PipelineSpec(runtime=Runtime.ONNXRUNTIME, embedding_size=768))
    config.input[0].data_type = pb.TYPE_INT32

    with pytest.raises(RepositoryError) as info:
        check_config_matches_onnx(config, tiny_onnx)

    assert "input input_ids: graph dtype" in str(info.value)
    assert "output EMBEDDING: graph dims" in str(info.value)


def test_a_graph_with_a_fixed_batch_of_one_is_rejected_for_a_batching_config(
    tiny_graph: GraphBuilder,
) -> None:
    graph = tiny_graph(input_dims=(1, "sequence"), output_dims=(1, 384))

    with pytest.raises(RepositoryError, match="input_ids"):
        check_config_matches_onnx(model_config(NATIVE), graph)


def test_a_graph_with_a_fixed_sequence_length_is_rejected_for_a_variable_length_config(
    tiny_graph: GraphBuilder,
) -> None:
    graph = tiny_graph(input_dims=("batch", 128))

    with pytest.raises(RepositoryError, match="input_ids"):
        check_config_matches_onnx(model_config(NATIVE), graph)
