"""A thin typed client for tritonhf pipelines on Triton, over gRPC or HTTP.

Light on purpose: it never imports torch, transformers, onnx or the export code.
"""

from tritonhf.client.client import RetryPolicy, TritonHFClient
from tritonhf.client.connection import Protocol
from tritonhf.client.results import (
    Classification,
    EmbeddingResult,
    ModelState,
    Served,
    ServerHealth,
)
from tritonhf.errors import (
    ClientError,
    DeployError,
    DeployPendingError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    PermissionDeniedError,
    ServerUnavailableError,
    WrongProtocolError,
)
from tritonhf.observability.client_metrics import ClientMetrics

__all__ = [
    "Classification",
    "ClientError",
    "ClientMetrics",
    "DeployError",
    "DeployPendingError",
    "EmbeddingResult",
    "InferenceError",
    "InferenceTimeoutError",
    "InvalidInputError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelState",
    "OverloadedError",
    "PermissionDeniedError",
    "Protocol",
    "RetryPolicy",
    "Served",
    "ServerHealth",
    "ServerUnavailableError",
    "TritonHFClient",
    "WrongProtocolError",
]
