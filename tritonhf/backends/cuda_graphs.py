"""Replay a PyTorch encoder as CUDA graphs, one per padded (rows, width) bucket.

A small batch of a small encoder is bound by kernel launches, not arithmetic: MiniLM at
batch 1 x 19 tokens takes 2.7-4.1 ms in eager fp16 on an H100, and 0.31 ms replayed as one
CUDA graph (docs/benchmarks.md, GPU). A graph fixes its tensor shapes, so a
batch is padded up to the nearest bucket (rows to a power of two, width to the next of
`WIDTHS`) and the padding rows and tokens are masked: the real rows' outputs do not depend
on them. Graphs are captured on first use of a bucket (tens of milliseconds each) and share
one memory pool; a shape past the largest bucket, or a model whose forward cannot be
captured, runs eagerly.

Used by the python-torch step (`backends.torch_runtime`) on a ``KIND_GPU`` instance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

WIDTHS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
"""Token widths a batch is padded up to (finer where short texts crowd); wider runs eagerly."""
WARM_ROWS = (1, 2, 4, 8)
WARM_WIDTHS = (16, 32, 64)
"""Buckets captured when the step loads, so the first short requests do not pay for it."""

log = logging.getLogger(__name__)


def bucket(size: int, sizes: tuple[int, ...]) -> int | None:
    """The smallest of ``sizes`` that holds ``size``; None past the largest."""
    return next((s for s in sizes if s >= size), None)


def width_buckets(max_width: int) -> tuple[int, ...]:
    """`WIDTHS` up to ``max_width``, then ``max_width`` itself (0: all of `WIDTHS`).

    A bucket must not be wider than the model's position table: its capture would index
    past it (on CUDA, a device-side assert that ends the process).
    """
    if max_width <= 0:
        return WIDTHS
    narrower = tuple(w for w in WIDTHS if w < max_width)
    return (*narrower, max_width) if max_width <= WIDTHS[-1] else narrower


def row_buckets(max_rows: int) -> tuple[int, ...]:
    """Powers of two up to ``max_rows``, and ``max_rows`` itself."""
    rows = [1]
    while rows[-1] * 2 < max_rows:
        rows.append(rows[-1] * 2)
    return (*rows, max_rows) if rows[-1] < max_rows else tuple(rows)


@dataclass
class _Graph:
    graph: Any
    ids: Any
    mask: Any
    output: Any


class CudaGraphs:
    """``module(ids, mask)`` on CUDA, replayed from graphs captured per bucket."""

    def __init__(self, module: Any, device: Any, *, max_rows: int, max_width: int = 0) -> None:
        import torch

        self.module = module
        self.device = device
        self.rows = row_buckets(max_rows)
        self.widths = width_buckets(max_width)
        self.graphs: dict[tuple[int, int], _Graph | None] = {}
        self.pool = torch.cuda.graph_pool_handle()

    def warm(self) -> None:
        """Capture the small buckets now."""
        for rows in WARM_ROWS:
            for width in WARM_WIDTHS:
                key = (bucket(rows, self.rows), bucket(width, self.widths))
                if None not in key:
                    self._graph(key)  # type: ignore[arg-type]

    def __call__(self, ids: Any, mask: Any) -> Any:
        """The module's output for ``ids``/``mask`` (int64 [rows, width] on the device)."""
        rows, width = ids.shape
        key = (bucket(rows, self.rows), bucket(width, self.widths))
        graph = None if None in key else self._graph(key)  # type: ignore[arg-type]
        if graph is None:
            return self.module(ids, mask)
        graph.ids.zero_()
        graph.mask.zero_()
        graph.mask[:, 0] = 1  # padding rows attend to one token: no 0/0 anywhere in the graph
        graph.ids[:rows, :width].copy_(ids)
        graph.mask[:rows, :width].copy_(mask)
        graph.graph.replay()
        return graph.output[:rows]

    def _graph(self, key: tuple[int, int]) -> _Graph | None:
        if key not in self.graphs:
            self.graphs[key] = self._capture(*key)
        return self.graphs[key]

    def _capture(self, rows: int, width: int) -> _Graph | None:
        import torch

        ids = torch.zeros((rows, width), dtype=torch.int64, device=self.device)
        mask = torch.ones((rows, width), dtype=torch.int64, device=self.device)
        try:
            side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):  # lazy initialisation (cuBLAS handles, autotuning) first
                    self.module(ids, mask)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, stream=side):
                output = self.module(ids, mask)
        except RuntimeError as exc:
            log.warning(
                "CUDA graph capture failed for %dx%d; running it eagerly: %s", rows, width, exc
            )
            return None
        return _Graph(graph=graph, ids=ids, mask=mask, output=output)
