"""An ONNX graph's files: the graph, and its weights in one file beside it past 2 GiB.

Protobuf cannot hold a message over 2 GiB, so a larger model (bge-m3, multilingual-e5-large,
xlm-roberta-large: ~560M parameters, ~2.2 GB in fp32) keeps its weights outside the graph
file, which names them by a path relative to its folder. torch's exporter writes one file per
weight there; tritonhf gathers them into ``<graph file>.data`` so that the graph is two
files, copied together into the model step's version folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATA_SUFFIX = ".data"


def external_data_files(path: Path) -> list[Path]:
    """The files that hold the weights of the graph at ``path`` outside it (none below 2 GiB)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    locations = {
        entry.value
        for tensor in _tensors(graph)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return sorted(path.parent / location for location in locations)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor the graph holds: its initializers and its nodes' tensor attributes."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def data_file(path: Path) -> Path:
    """Where `save_graph` writes the weights of the graph at ``path`` when they go outside."""
    return path.with_name(path.name + DATA_SUFFIX)


def save_graph(model: Any, path: Path, *, external: bool) -> None:
    """Write ``model`` to ``path``; with ``external``, its weights to `data_file` beside it.

    An existing data file is replaced: onnx appends to one, which would keep the old weights.
    """
    import onnx

    data_file(path).unlink(missing_ok=True)
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_file(path).name,
            size_threshold=1024,
        )
    else:
        onnx.save(model, str(path))


def gather_external_data(path: Path) -> list[Path]:
    """Move the weights that the graph at ``path`` keeps in many files into `data_file`.

    Returns the graph's data files: none for a graph under 2 GiB, which is left as it is.
    """
    import onnx

    scattered = external_data_files(path)
    if not scattered or scattered == [data_file(path)]:
        return scattered
    model = onnx.load(str(path))  # the weights are read into memory, then written in one file
    save_graph(model, path, external=True)
    for stale in scattered:
        if stale != data_file(path):
            stale.unlink(missing_ok=True)
    return [data_file(path)]


def check_graph(path: Path) -> None:
    """Run the ONNX checker on the graph at ``path`` (by path: over 2 GiB it cannot be loaded)."""
    import onnx

    onnx.checker.check_model(str(path))
