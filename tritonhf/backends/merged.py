"""Triton Python-backend step for the merged layout: tokenize and run the model in one step.

Served as ``<name>_model/1/model.py`` (a one-line shim that imports this module) when the
export asks for ``--layout merged``. It is the tokenizer step and the runtime's model step
(python-onnx or python-torch, from the ``runtime`` parameter) in one process: the ensemble has
one step, so a request crosses one Python-backend boundary instead of two. Tokenization,
padding, length groups, thread widening, errors, metrics and logs are those of the two steps it
wraps.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside the server, by the unit tests
    pb_utils = None

from tritonhf.backends import refusal_message, string_parameters
from tritonhf.backends.execute_clock import clocked
from tritonhf.backends.loads import counted
from tritonhf.backends.onnx_runtime import TritonPythonModel as OnnxStep
from tritonhf.backends.onnx_runtime import observed
from tritonhf.backends.tokenizer import TritonPythonModel as TokenizerStep
from tritonhf.backends.tokenizer import error_response
from tritonhf.observability.steps import now


def runtime_step(runtime: str) -> OnnxStep:
    """A fresh model step for ``runtime`` (the torch one is imported only when asked for)."""
    if runtime == "python-torch":
        from tritonhf.backends.torch_runtime import TritonPythonModel as TorchStep

        return TorchStep()
    if runtime != "python-onnx":
        raise ValueError(f"a merged step runs python-onnx or python-torch, not {runtime!r}")
    return OnnxStep()


@counted
@clocked
class TritonPythonModel(TokenizerStep):
    """The merged step as Triton's Python backend sees it: TEXT in, the ensemble's outputs out."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the tokenizer and the runtime's model step from the files beside this one."""
        super().initialize(args)
        parameters = string_parameters(json.loads(args["model_config"]))
        self.engine = runtime_step(parameters.get("runtime", "python-onnx"))
        self.engine.initialize(args)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Tokenize the dynamic batch in one call, then run it as the model step does."""
        started = now()
        outcomes, batches = self.tokenize(requests)
        responses: list[Any] = [
            error_response(refusal_message(outcome.request_id, outcome.error))
            if batch is None
            else None
            for batch, outcome in zip(batches, outcomes, strict=True)
        ]
        accepted = [(index, batch) for index, batch in enumerate(batches) if batch is not None]
        tensors = [
            (index, {"input_ids": b.input_ids, "attention_mask": b.attention_mask})
            for index, b in accepted
        ]
        results = self.engine.infer_or_answer(tensors, requests, responses)
        if results is None:
            return responses
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
        drift = [outcomes[index].drift for index, _ in accepted]
        self.engine.observer.record(request_ids, [observed(r) for r in results], [], started, drift)
        return responses

    def finalize(self) -> None:
        """Record what is still queued and release what the model step holds."""
        super().finalize()
        self.engine.finalize()
