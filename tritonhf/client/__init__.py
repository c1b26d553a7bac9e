"""A thin typed client for tritonhf pipelines on Triton, over gRPC or HTTP.

Light on purpose: it never imports torch, transformers, onnx or the export code.
"""

from tritonhf.client.client import (
    EmbeddingResult,
    ModelState,
    Protocol,
    ServerHealth,
    TritonHFClient,
)
from tritonhf.errors import (
    ClientError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    ServerUnavailableError,
)

__all__ = [
    "ClientError",
    "EmbeddingResult",
    "InferenceError",
    "InferenceTimeoutError",
    "InvalidInputError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelState",
    "Protocol",
    "ServerHealth",
    "ServerUnavailableError",
    "TritonHFClient",
]
