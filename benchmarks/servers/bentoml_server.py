"""BentoML serving the ONNX graph + tokenizer with adaptive batching (a peer in the harness).

    cd benchmarks/servers && BENCH_ONNX=M BENCH_TOKENIZER=T \
        <bentoml venv>/bin/python -m bentoml serve bentoml_server:Embed --host 127.0.0.1 --port P
POST /embed {"texts": ["..."]} -> [[...]]

One worker and BentoML's defaults except the batch cap (32, as for the other peers).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bentoml
from onnx_embedder import OnnxEmbedder


@bentoml.service(workers=1)
class Embed:
    """One service, one worker process: the graph and tokenizer load once."""

    def __init__(self) -> None:
        self.embedder = OnnxEmbedder(
            Path(os.environ["BENCH_ONNX"]), Path(os.environ["BENCH_TOKENIZER"])
        )

    @bentoml.api(batchable=True, max_batch_size=32)
    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed a batch; BentoML merges the requests' lists and splits the result."""
        return self.embedder.embed(texts).tolist()
