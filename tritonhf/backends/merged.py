"""Triton Python-backend step for the merged layout: tokenize and run the model in one step.

Copied into the model repository as ``<name>_model/1/model.py`` when the export asks for
``--layout merged``. It is the tokenizer step and the runtime's model step (python-onnx or
python-torch, from the ``runtime`` parameter) in one process: the ensemble has one step, so a
request crosses one Python-backend boundary instead of two. Tokenization, padding, length
groups, thread widening, errors, metrics and logs are those of the two steps it wraps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside the server, by the unit tests
    pb_utils = None

from tritonhf.backends.onnx_runtime import TritonPythonModel as OnnxStep
from tritonhf.backends.onnx_runtime import observed
from tritonhf.backends.tokenizer import (
    TOKENIZER_FILE,
    TokenizerSettings,
    error_response,
    load_tokenizer,
    tokenize_requests,
)
from tritonhf.observability.drift import PROFILE_FILE
from tritonhf.observability.steps import RequestOutcome, TokenizerObserver, now


def runtime_step(runtime: str) -> OnnxStep:
    """A fresh model step for ``runtime`` (the torch one is imported only when asked for)."""
    if runtime == "python-torch":
        from tritonhf.backends.torch_runtime import TritonPythonModel as TorchStep

        return TorchStep()
    if runtime != "python-onnx":
        raise ValueError(f"a merged step runs python-onnx or python-torch, not {runtime!r}")
    return OnnxStep()


class TritonPythonModel:
    """The merged step as Triton's Python backend sees it: TEXT in, the ensemble's outputs out."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the tokenizer and the runtime's model step from the files beside this one."""
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.engine = runtime_step(params.get("runtime", "python-onnx"))
        self.engine.initialize(args)
        self.settings = TokenizerSettings.from_model_config(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = load_tokenizer(version_dir / TOKENIZER_FILE, self.settings.max_length)
        self.observer = TokenizerObserver.create(
            pb_utils, self.settings.pipeline, version_dir / PROFILE_FILE
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Tokenize the dynamic batch in one call, then run it as the model step does."""
        started = now()
        outcomes = [RequestOutcome(r.request_id()) for r in requests]
        batches = tokenize_requests(
            self.tokenizer,
            self.settings,
            [pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy() for r in requests],
            outcomes,
        )
        responses: list[Any] = [
            error_response(str(outcome.error)) if batch is None else None
            for batch, outcome in zip(batches, outcomes, strict=True)
        ]
        accepted = [(index, batch) for index, batch in enumerate(batches) if batch is not None]
        results = self.engine.infer(
            [{"input_ids": b.input_ids, "attention_mask": b.attention_mask} for _, b in accepted]
        )
        for (index, batch), outputs in zip(accepted, results, strict=True):
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[
                    *(pb_utils.Tensor(name, array) for name, array in outputs.items()),
                    pb_utils.Tensor("NUM_TOKENS", batch.num_tokens),
                    pb_utils.Tensor("TRUNCATED", batch.truncated),
                ]
            )
        self.observer.record(outcomes, started)
        request_ids = [requests[index].request_id() for index, _ in accepted]
        self.engine.observer.record(request_ids, [observed(r) for r in results], [], started)
        return responses

    def finalize(self) -> None:
        """Release what the model step holds."""
        self.engine.finalize()
