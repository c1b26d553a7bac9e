"""What ``tritonhf export`` accepts, and every check of it that needs no model.

A bad option is a `ConfigError` (the CLI's exit 2) raised before the model is downloaded or
loaded, not after minutes of export work: the values alone are checked when the options are
built, the repository and the reference file by `check_options`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonhf.errors import ConfigError, RepositoryError
from tritonhf.export.onnx_export import DEFAULT_OPSET, check_opset
from tritonhf.export.source import DEFAULT_MODEL
from tritonhf.export.validate import DEFAULT_ATOL
from tritonhf.export.variants import VariantRequest, check_request
from tritonhf.folders import check_output_folder
from tritonhf.gate.agreement import Thresholds
from tritonhf.observability.reference import ReferenceTexts, read_reference_texts
from tritonhf.repository.compat import version_folders
from tritonhf.repository.configs import DEFAULT_TUNING, StepTuning
from tritonhf.repository.writer import EXPORT_MANIFEST, check_owner, read_config
from tritonhf.spec import DEFAULT_MODEL_NAME, Layout, PipelineSpec, Precision, Runtime, Task

# The widths of the Triton ModelConfig fields the options end up in.
TRITON_MAX_BATCH_SIZE = 2**31 - 1
"""``max_batch_size`` is an int32."""
TRITON_MAX_QUEUE_SIZE = 2**32 - 1
"""``default_queue_policy.max_queue_size`` is a uint32."""
TRITON_MAX_QUEUE_TIMEOUT_MS = (2**64 - 1) // 1000
"""``default_timeout_microseconds`` is a uint64."""
TRITON_MAX_VERSION = 2**63 - 1
"""A version folder's name is read as an int64."""


@dataclass(frozen=True)
class ExportOptions:
    """Everything ``tritonhf export`` accepts."""

    model: str = DEFAULT_MODEL
    name: str = DEFAULT_MODEL_NAME
    repo: Path = Path("model_repository")
    task: Task | None = None
    """None: detected from the model's config (``*ForSequenceClassification`` -> classification)."""
    runtime: Runtime = Runtime.PYTHON_ONNX
    max_length: int | None = None
    max_batch_size: int = 64
    opset: int = DEFAULT_OPSET
    atol: float = DEFAULT_ATOL
    allow_pickle_weights: bool = False
    revision: str | None = None
    version: int = 1
    tuning: StepTuning = DEFAULT_TUNING
    precision: Precision = Precision.FP32
    layout: Layout = Layout.SPLIT
    """merged: the model step tokenizes too (Python runtimes; one hop fewer per request)."""
    optimize: bool = False
    """Apply ONNX Runtime's transformer fusions (attention, LayerNorm, GELU)."""
    thresholds: Thresholds | None = None
    """Acceptance-gate bounds for a fused/fp16/int8 variant; None: the precision's defaults."""
    drift_reference: Path | None = None
    """Texts whose profile drift is measured against (a CSV with a ``text`` column or one text
    per line: a classifier's training CSV); None: the package corpus."""
    gate_data: Path | None = None
    """Texts the acceptance gate compares a fused/fp16/int8 variant on (a CSV with a ``text``
    column or one text per line); None: the package corpus. In-domain texts judge a
    classifier where it is used: generic sentences sit near its decision boundary."""

    def __post_init__(self) -> None:
        # Triton reads version folder names as int64; a larger one stops it at start.
        _check_range("--version", self.version, 1, TRITON_MAX_VERSION)
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(
                f"--max-length must be at least 2 tokens (a text's special tokens), "
                f"got {self.max_length}"
            )
        _check_range("--max-batch-size", self.max_batch_size, 1, TRITON_MAX_BATCH_SIZE)
        batching = self.tuning.batching
        _check_range("--max-queue-size", batching.max_queue_size, 0, TRITON_MAX_QUEUE_SIZE)
        _check_range(
            "--queue-timeout-ms", batching.queue_timeout_ms, 0, TRITON_MAX_QUEUE_TIMEOUT_MS
        )
        if not (math.isfinite(self.atol) and self.atol >= 0):
            raise ConfigError(
                f"--atol must be a finite tolerance >= 0, got {self.atol}; the default is "
                f"{DEFAULT_ATOL:g}"
            )
        check_opset(self.opset)
        # Runtime/precision/--optimize combinations no runtime serves; the classifier-only
        # refusals wait for the task when the model's config decides it.
        check_request(
            VariantRequest(
                precision=self.precision,
                optimize=self.optimize,
                runtime=self.runtime,
                task=self.task or Task.EMBEDDING,
            )
        )
        # After check_request: a combination no runtime serves is the refusal to show.
        gated = (self.optimize or self.precision is not Precision.FP32) and self.runtime not in (
            Runtime.TENSORRT,
            Runtime.PYTHON_TORCH,
        )
        if self.gate_data is not None and not gated:
            raise ConfigError(
                "--gate-data names the texts the acceptance gate compares a variant on; this "
                "export builds none (it needs --optimize or --precision fp16/int8, with the "
                "python-onnx or onnxruntime runtime)"
            )
        # The spec's own checks of the fields known now (the name; merged needs a Python
        # runtime); the full spec needs the model.
        PipelineSpec(
            name=self.name,
            runtime=self.runtime,
            max_batch_size=self.max_batch_size,
            precision=self.precision,
            layout=self.layout,
        )

    def fixed_by_version_1(self) -> dict[str, Any]:
        """The spec fields (manifest names) these options set that every version shares."""
        fields: dict[str, Any] = {
            "runtime": self.runtime.value,
            "precision": self.precision.value,
            "layout": self.layout.value,
            "max_batch_size": self.max_batch_size,
        }
        if self.task is not None:
            fields["task"] = self.task.value
        if self.max_length is not None:
            fields["max_length"] = self.max_length
        return fields


def _check_range(flag: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{flag} must be in {low}..{high}, got {value}")


def check_options(options: ExportOptions) -> ReferenceTexts:
    """Check the options against the files they name; return the drift reference texts.

    Runs before the model is fetched or loaded: a ``--repo`` that cannot be written, a
    ``--name`` whose folders belong to another pipeline, a missing, empty, binary or huge
    ``--drift-reference``, and a ``--version N`` that cannot go beside the pipeline's version
    1, are refused at once.
    """
    check_output_folder(options.repo, flag="--repo")
    reference = read_reference_texts(options.drift_reference)
    check_new_version(options)
    try:
        check_owner(spec=PipelineSpec(name=options.name), repo=options.repo)
    except RepositoryError as exc:
        raise ConfigError(str(exc)) from exc
    return reference


def check_new_version(options: ExportOptions, *, task: Task | None = None) -> None:
    """Refuse a version after 1 that has no pipeline to join, or that changes what it fixed.

    Compared with the pipeline's export manifest, on the fields the options set, and on
    ``task`` once the model's config has given it (`export_model` checks again then); what
    only the model decides (labels, a default ``--max-length``) and the step tuning are
    compared later with the configs themselves (`tritonhf.repository.writer.check_target`).
    """
    if options.version == 1:
        return
    flag = f"--version {options.version} of {options.name!r}"
    ensemble = options.repo / options.name
    if not ensemble.is_dir():
        raise ConfigError(
            f"{flag} goes beside a served version 1, but {options.repo} has no pipeline "
            f"{options.name!r}: export version 1 first"
        )
    served = _served_spec(ensemble / EXPORT_MANIFEST)
    changed = [
        f"{field} ({served[field]} -> {value})"
        for field, value in (
            options.fixed_by_version_1() | ({"task": task.value} if task else {})
        ).items()
        if field in served and served[field] != value
    ]
    if changed:
        raise ConfigError(
            f"{flag} would change its {', '.join(changed)}, which every version shares: a new "
            "version keeps the task, labels, sizes, precision, runtime and layout. Export it "
            "under another --name (and serve both), or as --version 1 to replace the pipeline"
        )


def replacement_note(
    options: ExportOptions, task: Task, labels: tuple[str, ...] = ()
) -> str | None:
    """What a version-1 export replaces in ``options.repo``: other versions, a task, labels."""
    if options.version != 1 or not (options.repo / options.name).is_dir():
        return None
    model_step = options.repo / PipelineSpec(name=options.name).model_name
    others = sorted(int(p.name) for p in version_folders(model_step) if p.name != "1")
    served = _served_spec(options.repo / options.name / EXPORT_MANIFEST).get("task")
    changes = [f"task {served} -> {task.value}"] if served and served != task.value else []
    served_labels = _served_labels(options.repo / options.name)
    if served == task.value == Task.CLASSIFICATION.value and served_labels != labels:
        changes += [f"labels {list(served_labels)} -> {list(labels)}"]
    changes += [f"version(s) {', '.join(map(str, others))} deleted"] if others else []
    if not changes:
        return None
    return (
        f"note: version 1 replaces pipeline {options.name!r} ({'; '.join(changes)}). A server "
        "that serves it keeps serving what it loaded until `tritonhf deploy --model "
        f"{options.name}` loads the new pipeline (requests fail while its ensemble switches) "
        "or the server restarts"
    )


def _served_labels(ensemble: Path) -> tuple[str, ...]:
    """The class names of the ensemble in ``ensemble``; empty when it names none."""
    config = read_config(ensemble)
    if config is None or "labels" not in config.parameters:
        return ()
    try:
        return tuple(json.loads(config.parameters["labels"].string_value))
    except ValueError:
        return ()


def _served_spec(manifest: Path) -> dict[str, Any]:
    """The ``spec`` of an export manifest; empty when there is none to read."""
    try:
        spec = json.loads(manifest.read_text(encoding="utf-8")).get("spec")
    except (OSError, ValueError, AttributeError):
        return {}
    return spec if isinstance(spec, dict) else {}
