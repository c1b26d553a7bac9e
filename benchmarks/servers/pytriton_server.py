"""PyTriton serving the ONNX graph + tokenizer with dynamic batching (a peer in the harness).

    <pytriton venv>/bin/python pytriton_server.py --onnx M --tokenizer T --http-port H --grpc-port G
Model ``embed``: TEXT bytes [1] -> EMBEDDING fp32 [dim]; the @batch decorator stacks requests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
from onnx_embedder import OnnxEmbedder
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=32)
    args = parser.parse_args()
    embedder = OnnxEmbedder(args.onnx, args.tokenizer)

    @batch  # type: ignore[misc]
    def infer(TEXT: Any) -> dict[str, Any]:
        texts = [row[0].decode("utf-8") for row in TEXT]
        return {"EMBEDDING": embedder.embed(texts).astype(np.float32)}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name="embed",
            infer_func=infer,
            inputs=[Tensor(name="TEXT", dtype=bytes, shape=(1,))],
            outputs=[Tensor(name="EMBEDDING", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=args.max_batch_size, batcher=DynamicBatcher()),
        )
        triton.serve()


if __name__ == "__main__":
    main()
