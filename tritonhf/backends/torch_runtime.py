"""Triton Python-backend step: run the HuggingFace model with PyTorch (``python-torch``).

Served as ``<name>_model/1/model.py`` (a one-line shim that imports this module). It serves
architectures that do not export to ONNX, and is the same-server baseline for the ONNX and
TensorRT paths. The HuggingFace folder (safetensors) sits beside it in ``hf/``, with the
weights of an embedding model's Dense modules; ``torch_step.json`` holds the sentence head
(pooling, Dense, Normalize) or the labels (classifiers) and the precision. On a ``KIND_GPU``
instance it runs on that GPU, in fp16 when the export asked for it, replayed as CUDA graphs
(`backends.cuda_graphs`) unless the config's ``cuda_graphs`` parameter is ``0``.

Batching, ragged inputs, length groups, metrics and logs are the python-onnx step's: this
step only replaces its ONNX Runtime session with a PyTorch one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside the server, by the unit tests
    pb_utils = None

from tritonhf.backends.onnx_runtime import TritonPythonModel as OnnxStep
from tritonhf.export.head import HEAD_WEIGHTS_FILE, SentenceHead, saved_head

HF_FOLDER = "hf"
SETTINGS_FILE = "torch_step.json"


class TorchSession:
    """PyTorch behind ONNX Runtime's ``run(names, feeds)`` interface."""

    def __init__(
        self,
        folder: Path,
        settings: dict[str, Any],
        device: str,
        *,
        graph_rows: int | None = None,
        max_length: int = 0,
    ) -> None:
        """Load the model onto ``device``.

        On CUDA with ``graph_rows``, batches of up to that many rows and ``max_length``
        tokens (0: the largest bucket) are replayed as CUDA graphs.
        """
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification

        from tritonhf.export.onnx_export import classifier_probabilities, sentence_encoder
        from tritonhf.export.source import quiet_transformers

        self.labels: tuple[str, ...] = tuple(settings.get("labels", ()))
        self.device = torch.device(device)
        if self.device.type == "cuda":  # graph capture and new streams use the current device
            if self.device.index is None:
                self.device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(self.device)
        half = settings.get("precision") == "fp16" and self.device.type == "cuda"
        loader: Any = AutoModelForSequenceClassification if self.labels else AutoModel
        with quiet_transformers():  # no load report or progress bar in the server's log
            model = loader.from_pretrained(  # nosec B615  # a local folder the exporter wrote
                str(folder), trust_remote_code=False, use_safetensors=True
            )
        # Exports before the setting existed gave zeros to every model that takes them.
        token_types = bool(settings.get("token_type_ids", True))
        if self.labels:
            module = classifier_probabilities(model, token_types=token_types)
        else:
            head = SentenceHead.from_dict(settings["head"])
            layers = saved_head(head, folder / HEAD_WEIGHTS_FILE)
            module = sentence_encoder(model, head, layers, token_types=token_types)
        self.module = module.to(self.device, dtype=torch.float16 if half else torch.float32).eval()
        self.forward: Any = self.module
        if graph_rows is not None and self.device.type == "cuda":
            from tritonhf.backends.cuda_graphs import CudaGraphs

            self.forward = CudaGraphs(
                self.module, self.device, max_rows=graph_rows, max_width=max_length
            )
            with torch.inference_mode():
                self.forward.warm()

    def run(self, names: list[str], feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        """Outputs ``names`` for one padded batch, as numpy arrays (LABEL as ``str``)."""
        import torch

        with torch.inference_mode():
            ids = torch.from_numpy(feeds["input_ids"]).to(self.device)
            mask = torch.from_numpy(feeds["attention_mask"]).to(self.device)
            values = self.forward(ids, mask).float().cpu().numpy()
        if not self.labels:
            return [values for _ in names]
        best = values.argmax(axis=1)
        outputs = {
            "PROBABILITIES": values,
            "SCORE": values.max(axis=1, keepdims=True),
            "LABEL": np.array([[self.labels[i]] for i in best], dtype=object),
        }
        return [outputs[name] for name in names]


def device_for(args: dict[str, str]) -> str:
    """``cuda:N`` for a ``KIND_GPU`` instance (when CUDA is there), else ``cpu``."""
    import torch

    if args.get("model_instance_kind") == "GPU" and torch.cuda.is_available():
        return f"cuda:{int(args.get('model_instance_device_id', 0))}"
    return "cpu"


class TritonPythonModel(OnnxStep):
    """The python-onnx step with a PyTorch session."""

    widens_when_idle = False
    """PyTorch's OpenMP threads spin: with the cores oversubscribed (the tokenizer, the other
    instance, Triton), one MiniLM request took 35 ms on one thread and 340 ms on two on this
    2-core machine. So a CPU instance runs on ``intra_op_threads`` only."""

    def open_session(self, version_dir: Path, args: dict[str, str], *, threads: int) -> Any:
        """The HuggingFace model stored beside this file, loaded onto the instance's device.

        On the CPU it runs on ``threads`` threads (0: PyTorch's default). PyTorch's count is
        per process, and each instance is a stub process of its own.
        """
        import torch

        config = json.loads(args["model_config"])
        settings = json.loads((version_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
        session = TorchSession(
            version_dir / HF_FOLDER,
            settings,
            device_for(args),
            graph_rows=int(config["max_batch_size"]) if self.settings.cuda_graphs else None,
            max_length=self.settings.max_length,
        )
        if session.device.type == "cpu" and threads > 0:
            torch.set_num_threads(threads)
        return session

    def input_array(self, request: Any, name: str) -> NDArray[Any]:
        """The input through DLPack: the 2.51 stub's own numpy conversion breaks under numpy 2.

        The stub was built against numpy 1 and reads numpy 2's descriptors wrongly (every
        element becomes the first), while torch converts correctly under either.
        """
        from torch.utils.dlpack import from_dlpack

        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return from_dlpack(tensor.to_dlpack()).numpy()

    def output_tensor(self, name: str, array: NDArray[Any]) -> Any:
        """Numeric outputs through DLPack (see `input_array`); string ones as they are."""
        import torch

        if array.dtype == object:
            return pb_utils.Tensor(name, array)
        return pb_utils.Tensor.from_dlpack(name, torch.from_numpy(np.ascontiguousarray(array)))
