"""Python-backend steps, copied into the model repository as ``model.py``.

Each module here is self-contained: in a model version folder it can import only what the
server-side environment has (numpy, tokenizers, onnxruntime) plus ``triton_python_backend_utils``.
"""

from __future__ import annotations

import json
from typing import Any

from tritonhf.spec import DRIFT_PARAMETER


def string_parameters(config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` of Triton's model config (JSON form), as name -> string value."""
    return {name: value["string_value"] for name, value in config.get("parameters", {}).items()}


def refusal_message(request_id: str, error: object) -> str:
    """``error``'s message, led by the request's id as Triton's own errors are.

    A client streaming many requests (or reading the log) can then tell which one failed.
    """
    return f"[request id: {request_id}] {error}" if request_id else str(error)


def counts_for_drift(request: Any) -> bool:
    """False when the request's parameters say ``tritonhf_drift: false`` (`DRIFT_PARAMETER`)."""
    try:
        value = json.loads(request.parameters() or "{}").get(DRIFT_PARAMETER, True)
    except (AttributeError, TypeError, ValueError):
        return True
    return value is not False and str(value).lower() != "false"
