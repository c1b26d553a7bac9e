"""Graph fusion refuses a graph this machine has not the memory to fuse, before it starts."""

from __future__ import annotations

import pytest

from tritonhf.errors import ExportError
from tritonhf.export.optimize import (
    FUSION_MEMORY_FACTOR,
    check_memory_for_fusion,
    memory_available,
)


def test_a_graph_too_large_for_the_memory_is_refused_naming_both() -> None:
    """A 2.4 GB graph with --optimize was killed by the kernel past 22 GB, minutes in."""
    size = 10_000
    with pytest.raises(ExportError, match=r"needs ~0.0 GB of memory \(9x the graph\)"):
        check_memory_for_fusion(size, available=size * FUSION_MEMORY_FACTOR - 1)
    check_memory_for_fusion(size, available=size * FUSION_MEMORY_FACTOR)
    check_memory_for_fusion(size, available=0)  # unknown: not refused


def test_the_memory_available_is_read_from_the_kernel() -> None:
    assert memory_available() > 2**20
