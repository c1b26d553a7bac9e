"""Check a written model config against the ONNX graph it serves.

The native onnxruntime backend cannot run on a machine without Triton's full build, so its
config is verified statically: names, element types and dims must match the graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritonhf.errors import RepositoryError

# ONNX TensorProto element type -> Triton config data type name.
_ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    10: "TYPE_FP16",
    8: "TYPE_STRING",
}


def _graph_tensors(values: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    tensors = {}
    for value in values:
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        tensors[value.name] = (_ONNX_TO_TRITON.get(tensor_type.elem_type, "?"), dims)
    return tensors


def _config_tensors(entries: Any, max_batch_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    from tritonclient.grpc import model_config_pb2

    batch: tuple[int, ...] = (-1,) if max_batch_size > 0 else ()
    return {
        e.name: (model_config_pb2.DataType.Name(e.data_type), (*batch, *e.dims)) for e in entries
    }


def check_config_matches_onnx(config: Any, onnx_path: Path) -> None:
    """Raise `RepositoryError` listing every input/output that differs from the graph."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    problems = []
    for kind, graph_side, config_side in (
        (
            "input",
            _graph_tensors(graph.input),
            _config_tensors(config.input, config.max_batch_size),
        ),
        (
            "output",
            _graph_tensors(graph.output),
            _config_tensors(config.output, config.max_batch_size),
        ),
    ):
        if set(graph_side) != set(config_side):
            problems.append(
                f"{kind} names: graph {sorted(graph_side)} vs config {sorted(config_side)}"
            )
            continue
        for name, (dtype, dims) in config_side.items():
            graph_dtype, graph_dims = graph_side[name]
            if graph_dtype != dtype:
                problems.append(f"{kind} {name}: graph dtype {graph_dtype}, config {dtype}")
            # As Triton's onnxruntime backend compares: a graph dim of -1 takes any size; a
            # fixed graph dim must equal the config's (so a config -1 needs a graph -1).
            if len(graph_dims) != len(dims) or any(
                g != -1 and g != c for g, c in zip(graph_dims, dims, strict=True)
            ):
                problems.append(f"{kind} {name}: graph dims {graph_dims}, config {dims}")
    if problems:
        raise RepositoryError(
            f"config of {config.name!r} does not match {onnx_path}: " + "; ".join(problems)
        )
