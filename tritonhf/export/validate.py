"""Compare the exported ONNX graph with the PyTorch model on real sentences.

Like optimum's validation, but stricter on inputs: real text in padded batches whose size and
length differ from the traced dummy, so dynamic axes and padding masks are exercised; shapes
are checked and the max absolute difference is reported per output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonhf.errors import ValidationError
from tritonhf.export.onnx_export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from tritonhf.gate.agreement import shown_bound, shown_figure
from tritonhf.gate.reference import encode_batches
from tritonhf.spec import ATTENTION_MASK, EMBEDDING, INPUT_IDS, LABEL

DEFAULT_ATOL = 1e-4


@dataclass(frozen=True)
class OutputDiff:
    """How far one output of the ONNX graph is from PyTorch."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float
    tolerance: float | None = None
    """Own bound (0 for labels, which must agree exactly); None: the report's atol."""

    def passes(self, atol: float) -> bool:
        """True when the difference is within the output's tolerance (default ``atol``)."""
        return self.max_abs_diff <= (atol if self.tolerance is None else self.tolerance)


@dataclass(frozen=True)
class ValidationReport:
    """The result of validating one exported graph."""

    outputs: tuple[OutputDiff, ...]
    atol: float
    num_texts: int
    batch_size: int

    @property
    def passed(self) -> bool:
        """True when every output is within the tolerance."""
        return all(d.passes(self.atol) for d in self.outputs)

    def table(self) -> str:
        """A printable table: one line per output, with its bound."""
        lines = [f"{'output':<14} {'shape':<14} {'max |onnx - torch|':>20} {'bound':>11}  ok"]
        for diff in self.outputs:
            bound = self.atol if diff.tolerance is None else diff.tolerance
            measured = shown_figure(diff.max_abs_diff, bound, style="e", digits=3)
            ok = "yes" if diff.passes(self.atol) else "NO"
            lines.append(
                f"{diff.name:<14} {diff.shape!s:<14} {measured:>20} "
                f"{'<= ' + shown_bound(bound):>11}  {ok}"
            )
        return "\n".join(lines)

    def advice(self) -> str:
        """What to do about a failed validation.

        A tolerance tighter than float32 rounding is the user's to loosen; a real difference
        (or a disagreeing label) is the graph's.
        """
        failed = [d for d in self.outputs if not d.passes(self.atol)]
        if all(d.tolerance is None and d.max_abs_diff <= DEFAULT_ATOL for d in failed):
            return (
                "the difference is float32 rounding between two runtimes (the default --atol "
                f"is {DEFAULT_ATOL:g}): raise --atol"
            )
        return "try another --opset, or report the model architecture"


PADDING_TOLERANCE = 1e-3
"""How far a text's PyTorch output may move with its batch (rounding: ~1e-7 in float32;
a model that reads padded positions: ~0.1)."""


def _each_text_alone(encoder: Any, encoding: dict[str, Any]) -> Any:
    """The PyTorch output of each row of a right-padded ``encoding`` run alone, unpadded."""
    lengths = encoding[ATTENTION_MASK].sum(dim=1).tolist()
    rows = [
        encoder.reference({name: value[i : i + 1, :length] for name, value in encoding.items()})
        for i, length in enumerate(lengths)
    ]
    return np.concatenate([row.numpy() for row in rows])


def validate_onnx(
    *,
    encoder: Any,
    tokenizer: Any,
    onnx_path: Path,
    texts: list[str],
    max_length: int,
    batch_size: int = 8,
    atol: float = DEFAULT_ATOL,
    output: str = EMBEDDING,
    labels: tuple[str, ...] = (),
) -> ValidationReport:
    """Run ``texts`` through PyTorch and ONNX Runtime; raise `ValidationError` above ``atol``.

    ``output`` is the tensor both produce; with ``labels`` (a classifier) the graph's
    ``LABEL`` must also name the class PyTorch ranks first, for every text (reported as the
    fraction of texts that disagree, which must be 0).
    """
    import onnxruntime as ort
    import torch

    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types, one per status
        reason = " ".join(str(exc).split())
        raise ValidationError(
            f"ONNX Runtime cannot load the exported graph ({reason[:300]}); another --opset "
            f"({MIN_OPSET}..{MAX_OPSET}, default {DEFAULT_OPSET}) often exports the operator "
            "in a form it runs"
        ) from exc
    names = [output, LABEL] if labels else [output]
    worst, disagreeing, shape = 0.0, 0, ()
    for batch in encode_batches(tokenizer, texts, max_length, batch_size):
        feeds = {name: batch[name] for name in (INPUT_IDS, ATTENTION_MASK)}
        try:
            onnx_out, *onnx_labels = session.run(names, feeds)
        except Exception as exc:  # onnxruntime's own exception types, one per status
            reason = " ".join(str(exc).split())
            rows, width = feeds[INPUT_IDS].shape
            raise ValidationError(
                f"ONNX Runtime fails on the exported graph with {rows} texts of {width} tokens "
                f"({reason[:300]}): the exporter recorded a shape of its example input as a "
                "constant; --runtime python-torch serves the model without ONNX"
            ) from exc
        with torch.no_grad():  # the model as HuggingFace runs it: the tokenizer's every tensor
            encoding = {name: torch.from_numpy(value) for name, value in batch.items()}
            torch_out = encoder.reference(encoding).numpy()
            alone = _each_text_alone(encoder, encoding)
        if onnx_out.shape != torch_out.shape:
            raise ValidationError(
                f"ONNX output {output} has shape {onnx_out.shape}, PyTorch {torch_out.shape}"
            )
        if (moved := float(np.abs(torch_out - alone).max())) > max(atol, PADDING_TOLERANCE):
            raise ValidationError(
                f"the model's {output} for a text depends on the texts batched with it (PyTorch "
                f"itself: max abs diff {moved:.3g} between a text alone and in a right-padded "
                "batch): it reads padded positions (XLNet's classifier reads the last one), and "
                "the served steps pad batches on the right, so no runtime would serve it right"
            )
        worst = max(worst, float(np.abs(onnx_out - torch_out).max()))
        if labels:
            expected = [labels[i] for i in torch_out.argmax(axis=1)]
            disagreeing += sum(
                str(got) != want
                for got, want in zip(onnx_labels[0].reshape(-1), expected, strict=True)
            )
        shape = (len(texts), *torch_out.shape[1:])
    diffs = [OutputDiff(output, shape, worst)]
    if labels:
        diffs.append(OutputDiff(LABEL, (len(texts), 1), disagreeing / len(texts), tolerance=0.0))
    report = ValidationReport(
        outputs=tuple(diffs), atol=atol, num_texts=len(texts), batch_size=batch_size
    )
    if not report.passed:
        raise ValidationError(
            f"ONNX export differs from PyTorch beyond atol={atol:g}:\n{report.table()}\n"
            + report.advice()
        )
    return report
