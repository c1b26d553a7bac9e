"""Export a HuggingFace encoder to ONNX with its sentence head (pooling, Dense, Normalize) inside.

We use ``torch.onnx.export`` (TorchScript exporter) rather than optimum's exporter:
``optimum-onnx`` pins transformers < 4.58, which pins huggingface-hub < 1.0, which the Gradio
demo cannot share an environment with. The TorchScript exporter writes one self-contained
file (no external ``.onnx.data``) with dynamic batch and sequence axes, and the validation in
`tritonhf.export.validate` is at least as strict as optimum's.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonhf.errors import (
    EXPORT_MEMORY_ADVICE,
    ConfigError,
    ExportError,
    ModelSourceError,
    first_line,
    out_of_memory,
)
from tritonhf.export.head import Pooling, SentenceHead, read_json, unreadable_weights
from tritonhf.export.source import ModelSource, quiet_transformers
from tritonhf.repository.onnx_files import (
    check_graph,
    external_data_files,
    gather_external_data,
    save_graph,
)
from tritonhf.spec import (
    ATTENTION_MASK,
    EMBEDDING,
    INPUT_IDS,
    LABEL,
    PROBABILITIES,
    SCORE,
    Task,
)

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# What Triton 2.51 (NGC 24.10, ONNX Runtime 1.19) accepts.
TRITON_MAX_OPSET = 21
TRITON_MAX_IR_VERSION = 10
TORCHSCRIPT_MAX_OPSET = 20
"""The newest opset torch's TorchScript exporter writes (``ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET``
in the pinned torch; a unit test checks the two agree)."""
MIN_OPSET = 10
"""The oldest opset a transformer exports at: the dynamic sequence axis needs ``Slice`` with
tensor inputs (opset 10); at 7-9 the exporter refuses every model tried."""
MAX_OPSET = min(TORCHSCRIPT_MAX_OPSET, TRITON_MAX_OPSET)


@dataclass(frozen=True)
class OnnxGraphInfo:
    """What was written, for the export report and the compatibility check."""

    path: Path
    opset: int
    ir_version: int


def load_encoder(
    source: ModelSource, *, allow_pickle_weights: bool = False, task: Task = Task.EMBEDDING
) -> Any:
    """Load the PyTorch model: safetensors only unless pickle weights are explicitly allowed.

    Embeddings use the bare encoder (``AutoModel``); classification the model with its head.
    """
    import torch
    import transformers
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = read_json(source.path / "config.json").get("model_type")
    if isinstance(model_type, str) and model_type not in CONFIG_MAPPING:
        raise ExportError(
            f"{source.path}: transformers {transformers.__version__} does not know its model "
            f"type {model_type!r} (config.json); tritonhf runs no model code from the "
            "checkpoint (trust_remote_code), so it exports the architectures transformers ships"
        )
    loader = AutoModelForSequenceClassification if task is Task.CLASSIFICATION else AutoModel
    try:
        with quiet_transformers():
            model, loading = loader.from_pretrained(  # nosec B615
                source.path,
                trust_remote_code=False,
                use_safetensors=None if allow_pickle_weights else True,
                attn_implementation="eager",
                output_loading_info=True,
                # float32 whatever the checkpoint holds: a float16 or bfloat16 checkpoint
                # otherwise traces a half-precision graph (--precision makes the variants).
                dtype=torch.float32,
            )
    except OSError as exc:
        pickle_only = not any(source.path.glob("*.safetensors")) and any(source.path.glob("*.bin"))
        if allow_pickle_weights or not pickle_only:
            raise ExportError(f"could not load {source.path}: {exc}") from exc
        raise ExportError(
            f"could not load {source.path} with safetensors weights ({exc}); pickle weights "
            "(pytorch_model.bin) run arbitrary code when loaded: convert them, or pass "
            "--allow-pickle-weights if you trust the source"
        ) from exc
    except ValueError as exc:
        raise ExportError(f"could not load {source.path}: {exc}") from exc
    except Exception as exc:  # safetensors' and torch's readers raise their own types
        raise unreadable_weights(source.path, exc) from exc
    _check_no_random_weights(source, task, loading["missing_keys"], model_type=model_type)
    if not hasattr(model.get_input_embeddings(), "num_embeddings"):
        raise ExportError(
            f"{source.path} holds a {type(model).__name__}, which does not take token ids: "
            "tritonhf exports text models (a tokenizer in front, a transformer behind)"
        )
    return model.eval()


# Weights an embedding never runs: BERT's pooler (the sentence head pools instead) and the
# decoder of a T5-style model (its encoder alone embeds; see `sentence_encoder`).
_UNUSED_BY_EMBEDDINGS = ("pooler.",)
_UNUSED_BY_ENCODER_ONLY = ("pooler.", "decoder.")


def _check_no_random_weights(
    source: ModelSource, task: Task, missing: set[str], *, model_type: object
) -> None:
    """Refuse a model that transformers had to complete with newly initialised weights.

    Those are random and change at every load, so the export would serve noise that no
    later validation can reproduce: typically ``--task classification`` on a model that was
    never fine-tuned (no classifier weights in the checkpoint).
    """
    if task is Task.EMBEDDING:
        unused = _UNUSED_BY_ENCODER_ONLY if model_type in ENCODER_ONLY else _UNUSED_BY_EMBEDDINGS
        missing = {key for key in missing if not key.startswith(unused)}
    if not missing:
        return
    names = ", ".join(sorted(missing)[:4]) + (
        f" and {len(missing) - 4} more" if len(missing) > 4 else ""
    )
    if task is Task.CLASSIFICATION:  # the model or --task is wrong: bad input (exit 2)
        raise ModelSourceError(
            f"{source.path} is not a trained classifier: its checkpoint has no weights for "
            f"{names}, which would be random; fine-tune it first (`tritonhf train --base "
            "MODEL`), or export it as an embedding model (--task embedding)"
        )
    raise ModelSourceError(
        f"{source.path}: its checkpoint has no weights for {names}, which would be random; "
        "check that the folder holds the model's weights (model.safetensors)"
    )


# Encoder-decoder models whose encoder stack alone embeds a text (sentence-transformers loads
# T5 and mT5 so; their forward cannot run without decoder inputs). Others, BART say, run whole,
# the decoder fed the shifted text, as sentence-transformers runs them.
ENCODER_ONLY = ("t5", "mt5", "umt5", "longt5")


def feeds_token_types(tokenizer: Any) -> bool:
    """Whether the model expects ``token_type_ids``: its tokenizer makes them.

    BERT-style tokenizers give zeros for a single sentence, which the wrapped model then gets
    from the graph itself. GPT-2's does not make any: its forward takes the argument, but
    any value adds a token-type embedding the model was never trained with.
    """
    return "token_type_ids" in getattr(tokenizer, "model_input_names", ())


def _wrap(model: Any, head: Callable[[Any, Any], Any], *, token_types: bool) -> Any:
    """A module taking ``(input_ids, attention_mask)`` that returns ``head(outputs, mask)``.

    Single-sentence inputs: with ``token_types`` (see `feeds_token_types`) a model that takes
    ``token_type_ids`` gets zeros, made in the graph, so the tokenizer step sends two tensors
    for every architecture. Padding positions (mask 0) get the model's pad id whatever the
    batch holds there: a batch of requests is padded with zeros, and a GPT-2-style classifier
    finds each text's last token by the pad id. ``reference`` runs the model on a tokenizer's
    whole encoding, as HuggingFace and sentence-transformers do, for validations to compare
    against.
    """
    import torch

    accepted = set(inspect.signature(model.forward).parameters)
    zero_types = token_types and "token_type_ids" in accepted
    pad_id = getattr(model.config, "pad_token_id", None)

    def padded_with_pad_id(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if pad_id is None:
            return input_ids
        return torch.where(attention_mask.bool(), input_ids, torch.full_like(input_ids, pad_id))

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            extra = {"token_type_ids": torch.zeros_like(input_ids)} if zero_types else {}
            input_ids = padded_with_pad_id(input_ids, attention_mask)
            outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
            return head(outputs, attention_mask)  # type: ignore[no-any-return]

        def reference(self, encoding: dict[str, torch.Tensor]) -> torch.Tensor:
            """``head`` of the model run on every tensor of ``encoding`` its forward takes."""
            mask = encoding["attention_mask"]
            feeds = {name: value for name, value in encoding.items() if name in accepted}
            feeds["input_ids"] = padded_with_pad_id(encoding["input_ids"], mask)
            return head(self.model(**feeds), mask)  # type: ignore[no-any-return]

    return Wrapped().eval()


def pool(hidden: Any, attention_mask: Any, modes: tuple[Pooling, ...]) -> Any:
    """Sentence vectors from token vectors, as sentence-transformers' Pooling computes them.

    Several modes concatenate in the order given. Rows are padded on the right (the tokenizer
    step pads that way), so the first token is CLS and the last real one is at ``length - 1``.
    """
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    vectors = []
    for mode in modes:
        if mode is Pooling.CLS:
            vectors.append(hidden[:, 0])
        elif mode is Pooling.MAX:
            vectors.append(hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1))
        elif mode is Pooling.LAST_TOKEN:
            last = (attention_mask.sum(1) - 1).clamp(min=0).to(torch.int64)
            index = last.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
            vectors.append(torch.gather(hidden, 1, index).squeeze(1))
        else:
            # Weighted mean: token i of a row counts i times (1-based, padding excluded).
            weights = mask * mask.cumsum(1) if mode is Pooling.WEIGHTED_MEAN else mask
            total = weights.sum(1).clamp(min=1e-9)
            summed = (hidden * weights).sum(1)
            vectors.append(summed / (total.sqrt() if mode is Pooling.MEAN_SQRT_LEN else total))
    return vectors[0] if len(vectors) == 1 else torch.cat(vectors, dim=1)


def sentence_encoder(model: Any, head: SentenceHead, layers: Any, *, token_types: bool) -> Any:
    """Wrap ``model`` so its forward returns sentence embeddings.

    ``head``'s pooling, then ``layers`` (`tritonhf.export.head.load_head`: Dense, Normalize);
    ``token_types`` as `_wrap` takes it.
    """

    def embed(outputs: Any, attention_mask: Any) -> Any:
        return layers(pool(outputs.last_hidden_state, attention_mask, head.pooling))

    if getattr(model.config, "model_type", "") in ENCODER_ONLY:
        model = model.get_encoder()  # as sentence-transformers embeds with T5
    wrapped = _wrap(model, embed, token_types=token_types)
    wrapped.head = layers  # a submodule: follows the model's device and dtype
    return wrapped


def classifier_probabilities(model: Any, *, token_types: bool) -> Any:
    """Wrap a sequence classifier so its forward returns its class probabilities.

    Softmax over the classes; a multi-label model (``problem_type: multi_label_classification``)
    scores each label on its own with a sigmoid, as it was trained to. ``token_types`` as
    `_wrap` takes it.
    """
    import torch

    multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"

    def probabilities(outputs: Any, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = outputs.logits.float()
        return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)

    return _wrap(model, probabilities, token_types=token_types)


def add_label_outputs(path: Path, labels: tuple[str, ...]) -> None:
    """Append the top label (a string) and its score to a graph that outputs PROBABILITIES.

    ``ArgMax`` picks the class, ``ai.onnx.ml.LabelEncoder`` turns its index into the class
    name, ``ReduceMax`` gives its probability: the label lives in the graph, so neither a
    postprocess step nor client-side lookups are needed.
    """
    import onnx
    from onnx import TensorProto, helper

    external = bool(external_data_files(path))
    model = onnx.load(str(path))
    graph = model.graph
    graph.node.extend(
        [
            helper.make_node("ArgMax", [PROBABILITIES], ["label_index"], axis=1, keepdims=1),
            helper.make_node(
                "LabelEncoder",
                ["label_index"],
                [LABEL],
                domain="ai.onnx.ml",
                keys_int64s=list(range(len(labels))),
                values_strings=list(labels),
                default_string="",
            ),
            _reduce_max_over_classes(graph, _opset_of(model)),
        ]
    )
    probabilities = graph.output.pop()
    graph.output.extend(
        [
            helper.make_tensor_value_info(LABEL, TensorProto.STRING, ["batch", 1]),
            helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, ["batch", 1]),
            probabilities,
        ]
    )
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    save_graph(model, path, external=external)
    check_graph(path)


def check_opset(opset: int) -> None:
    """Refuse (`ConfigError`) an opset outside what both the exporter and Triton handle."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(
            f"--opset {opset} is outside {MIN_OPSET}..{MAX_OPSET}: torch's exporter writes "
            f"opsets up to {TORCHSCRIPT_MAX_OPSET}, Triton 2.51 loads up to {TRITON_MAX_OPSET}, "
            f"and transformers need {MIN_OPSET} or newer; pass --opset {DEFAULT_OPSET}"
        )


def _reduce_max_over_classes(graph: Any, opset: int) -> Any:
    """``SCORE = ReduceMax(PROBABILITIES, axis 1)``: from opset 18 the axes are an input."""
    import numpy as np
    from onnx import helper, numpy_helper

    if opset < 18:
        return helper.make_node("ReduceMax", [PROBABILITIES], [SCORE], axes=[1], keepdims=1)
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), name="score_axes")
    graph.initializer.append(axes)
    return helper.make_node("ReduceMax", [PROBABILITIES, axes.name], [SCORE], keepdims=1)


@contextmanager
def _native_stdout_discarded() -> Iterator[None]:
    """Send what native code writes to stdout (file descriptor 1) to /dev/null meanwhile.

    torch's TorchScript exporter logs the whole traced graph there when it fails (its log
    switch tests a function object, so it is always on): ~100 KB per failed export.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def export_onnx(
    encoder: Any, path: Path, *, opset: int = DEFAULT_OPSET, output: str = EMBEDDING
) -> OnnxGraphInfo:
    """Trace ``encoder`` with dynamic batch and sequence axes and write one ONNX file."""
    import onnx
    import torch

    check_opset(opset)
    dummy = (
        torch.ones((2, 16), dtype=torch.int64),
        torch.ones((2, 16), dtype=torch.int64),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings(), _native_stdout_discarded():
        # Tracing warnings are about Python control flow on shapes; the validation step
        # checks the graph on other batch sizes and lengths, which is what matters.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        warnings.filterwarnings("ignore", module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        try:
            torch.onnx.export(
                encoder,
                dummy,
                str(path),
                input_names=[INPUT_IDS, ATTENTION_MASK],
                output_names=[output],
                dynamic_axes={INPUT_IDS: axes, ATTENTION_MASK: axes, output: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        except Exception as exc:  # tracing and the exporter raise many unrelated types
            if out_of_memory(exc):
                raise ExportError(
                    f"could not export {type(encoder.model).__name__} to ONNX "
                    f"({first_line(exc)}): {EXPORT_MEMORY_ADVICE}"
                ) from exc
            higher = (
                f"a higher --opset (up to {MAX_OPSET}) may export it, and "
                if opset < MAX_OPSET
                else ""
            )
            raise ExportError(
                f"the ONNX exporter could not trace {type(encoder.model).__name__} at opset "
                f"{opset} ({first_line(exc, limit=300)}); {higher}--runtime "
                "python-torch serves it without ONNX"
            ) from exc
    gather_external_data(path)  # a model over 2 GiB: its weights beside the graph, in one file
    check_graph(path)
    graph = onnx.load(str(path), load_external_data=False)
    info = OnnxGraphInfo(path=path, opset=_opset_of(graph), ir_version=graph.ir_version)
    check_triton_compatible(info)
    return info


def _opset_of(graph: Any) -> int:
    return int(next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")))


def check_triton_compatible(info: OnnxGraphInfo) -> None:
    """Refuse a graph that Triton 2.51's onnxruntime backend cannot load."""
    if info.ir_version > TRITON_MAX_IR_VERSION or info.opset > TRITON_MAX_OPSET:
        raise ExportError(
            f"{info.path} has IR version {info.ir_version} and opset {info.opset}; Triton "
            f"2.51 accepts IR <= {TRITON_MAX_IR_VERSION} and opset <= {TRITON_MAX_OPSET}"
        )
