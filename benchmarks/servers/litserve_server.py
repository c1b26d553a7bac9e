"""LitServe serving the ONNX graph + tokenizer with its own batching (a peer in the harness).

    <litserve venv>/bin/python litserve_server.py --onnx M --tokenizer T --port P
POST /predict {"text": "..."} -> {"embedding": [...]}
"""

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import litserve as ls
from onnx_embedder import OnnxEmbedder


class EmbedAPI(ls.LitAPI):  # type: ignore[misc]
    """One text per request; LitServe groups requests into batches."""

    def __init__(self, onnx: Path, tokenizer: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.paths = (onnx, tokenizer)

    def setup(self, device: str) -> None:
        """Load the graph and tokenizer in the worker."""
        self.embedder = OnnxEmbedder(*self.paths)

    def decode_request(self, request):  # type: ignore[no-untyped-def]  # no annotation: LitServe reads it
        """The text of ``{"text": ...}``."""
        return str(request["text"])

    def predict(self, texts: list[str]) -> Any:
        """Embed one batch."""
        return self.embedder.embed(texts)

    def encode_response(self, output: Any) -> dict[str, Any]:
        """One embedding as JSON."""
        return {"embedding": output.tolist()}


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    args = parser.parse_args()
    api = EmbedAPI(
        args.onnx,
        args.tokenizer,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False)


if __name__ == "__main__":
    main()
