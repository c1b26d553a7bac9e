"""The same ONNX graph + tokenizer every ONNX peer serves (imports only numpy, tokenizers, ORT).

The peers run in their own virtual environments without tritonhf, so this module stands alone.
A peer's ONNX Runtime threads spin (ORT's default) unless ``BENCH_ORT_SPINNING=0`` is set: the
harness runs each peer both ways (``side_by_side.py --peer-sessions``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SPINNING_ENV = "BENCH_ORT_SPINNING"
"""``0`` turns off the intra-op threads' spinning in a peer's session (as tritonhf serves)."""


class OnnxEmbedder:
    """Tokenize a batch, pad it to its longest text, run the graph (pooling is inside it)."""

    def __init__(
        self,
        onnx_path: Path,
        tokenizer_json: Path,
        *,
        max_length: int = 256,
        spinning: bool | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        if spinning is None:
            spinning = os.environ.get(SPINNING_ENV, "1") != "0"
        options = ort.SessionOptions()
        # ORT's default is to spin; tritonhf's served step turns it off (docs/benchmarks.md).
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        self.session = ort.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.output = self.session.get_outputs()[0].name

    def feeds(self, texts: Sequence[str]) -> dict[str, Any]:
        """Token tensors for a batch, padded to its longest text."""
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def embed(self, texts: Sequence[str]) -> Any:
        """Embeddings [len(texts), dim], L2-normalised by the graph."""
        return self.session.run([self.output], self.feeds(texts))[0]
