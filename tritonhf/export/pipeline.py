"""The export job: load, export to ONNX, validate, write the Triton repository."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tritonhf.errors import ConfigError, RepositoryError
from tritonhf.export.head import HEAD_WEIGHTS_FILE, load_head, read_json, save_head
from tritonhf.export.limits import (
    check_runs_batches,
    default_limit_note,
    resolve_max_length,
    runnable_max_length,
)
from tritonhf.export.onnx_export import (
    OnnxGraphInfo,
    add_label_outputs,
    classifier_probabilities,
    export_onnx,
    feeds_token_types,
    load_encoder,
    sentence_encoder,
)
from tritonhf.export.optimize import check_fusable, check_memory_for_fusion
from tritonhf.export.options import ExportOptions as ExportOptions  # re-exported: the export API
from tritonhf.export.options import check_new_version, check_options, replacement_note
from tritonhf.export.source import (
    DEFAULT_MODEL,
    check_vocabulary,
    class_names,
    load_fast_tokenizer,
    resolve_model,
)
from tritonhf.export.tensorrt import OptimizationProfile, build_plan, tensorrt_module
from tritonhf.export.validate import ValidationReport, validate_onnx
from tritonhf.export.variants import Variant, VariantRequest, build_variant, check_request
from tritonhf.observability.drift import EMBEDDING_SIMILARITY, MIN_EMBEDDED_REFERENCE, PROFILE_FILE
from tritonhf.observability.reference import (
    Classifier,
    ReferenceTexts,
    build_reference_profile,
    default_reference_note,
    onnx_outputs_of,
    torch_outputs_of,
)
from tritonhf.repository.checks import check_config_matches_onnx
from tritonhf.repository.configs import StepTuning, model_config
from tritonhf.repository.writer import (
    ONNX_FILE,
    PLAN_FILE,
    StepArtifacts,
    check_target,
    pipeline_configs,
    write_repository,
)
from tritonhf.server.process import own_folder, pid_in_name, running
from tritonhf.spec import (
    EMBEDDING,
    PROBABILITIES,
    Layout,
    PipelineSpec,
    Precision,
    Runtime,
    Task,
    look_alike_labels,
    look_alike_warning,
)

VALIDATION_TEXTS = 64


def validation_texts() -> list[str]:
    """63 corpus sentences, and the whole corpus as one text that the tokenizer truncates.

    The graph is then also checked at its full token limit, furthest from the traced shapes.
    """
    from tritonhf import data

    sentences = data.sentences()
    return [*sentences[: VALIDATION_TEXTS - 1], " ".join(sentences)]


WORK_PREFIX = "tritonhf-export-"
"""An export's work folder (its ONNX graphs) in the temp folder: ``tritonhf-export-<pid>-*``."""


def _clear_killed_work_folders() -> None:
    """Delete the work folders of exports that were killed (a graph each, up to gigabytes)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        pid = pid_in_name(folder.name, WORK_PREFIX)
        if pid is not None and not running(pid) and own_folder(folder):
            shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and measured."""

    spec: PipelineSpec
    folders: tuple[Path, ...]
    onnx: OnnxGraphInfo | None
    """The served graph; None for the tensorrt and python-torch runtimes."""
    validation: ValidationReport | None
    """ONNX vs PyTorch; None for the python-torch runtime (no ONNX)."""
    seconds: float


@dataclass(frozen=True)
class _OnnxStep:
    """The exported graph, its validation, and the variant built from it."""

    info: OnnxGraphInfo
    report: ValidationReport
    variant: Variant


def cuda_available() -> bool:
    """True when PyTorch sees a CUDA GPU (the python-torch step then runs there)."""
    import torch

    return bool(torch.cuda.is_available())


def _export_graph(
    *,
    options: ExportOptions,
    request: VariantRequest,
    spec: PipelineSpec,
    model: Any,
    encoder: Any,
    tokenizer: Any,
    output: str,
    labels: tuple[str, ...],
    work: Path,
    gate_texts: list[str],
    progress: Callable[[str], None],
) -> _OnnxStep:
    """Export to ONNX, validate against PyTorch, and build the requested variant."""
    progress(f"exporting ONNX (opset {options.opset}, max length {spec.max_length})")
    info = export_onnx(encoder, work / ONNX_FILE, opset=options.opset, output=output)
    if labels:
        add_label_outputs(info.path, labels)
    progress("validating ONNX Runtime against PyTorch")
    report = validate_onnx(
        encoder=encoder,
        tokenizer=tokenizer,
        onnx_path=info.path,
        texts=validation_texts(),
        max_length=spec.max_length,
        atol=options.atol,
        output=output,
        labels=labels,
    )
    progress(report.table())
    variant = build_variant(
        graph=info.path,
        work=work,
        request=request,
        encoder=encoder,
        tokenizer=tokenizer,
        texts=gate_texts,
        max_length=spec.max_length,
        output=output,
        labels=labels,
        model_config=model.config,
        progress=progress,
    )
    check_config_matches_onnx(
        model_config(replace(spec, runtime=Runtime.PYTHON_ONNX, layout=Layout.SPLIT)),
        variant.path,
    )
    return _OnnxStep(info, report, variant)


def _step_tuning(options: ExportOptions) -> StepTuning:
    """The options' tuning, with the python-torch step on the GPU when there is one."""
    if options.runtime is not Runtime.PYTHON_TORCH:
        return options.tuning
    tuning = replace(options.tuning, model_on_gpu=cuda_available())
    if options.precision is Precision.FP16 and not tuning.model_on_gpu:
        raise ConfigError(
            "--precision fp16 with the python-torch runtime halves the model on CUDA, and "
            "this machine has none (the step would run fp32 on the CPU): export on the GPU "
            "machine, or use fp32 here"
        )
    return tuning


def _save_reference_profile(
    path: Path,
    *,
    reference: ReferenceTexts,
    spec: PipelineSpec,
    tokenizer: Any,
    graph: Path | None,
    encoder: Any,
    progress: Callable[[str], None],
) -> None:
    """Write the drift reference profile of ``reference`` to ``path``.

    A classifier's reference labels and an embedder's reference embeddings come from the
    model the pipeline serves: its ONNX ``graph`` (the variant written to the repository), or,
    without one (python-torch), the PyTorch ``encoder``; so they are what the server would
    return.
    """
    output = PROBABILITIES if spec.labels else EMBEDDING
    outputs = (
        onnx_outputs_of(
            graph,
            tokenizer,
            output=output,
            max_length=spec.max_length,
            texts_alone=spec.precision.runs_texts_alone,
        )
        if graph is not None
        else torch_outputs_of(encoder, tokenizer, max_length=spec.max_length)
    )
    profile = build_reference_profile(
        texts=reference.texts,
        source=reference.source,
        tokenizer=tokenizer,
        max_length=spec.max_length,
        classifier=Classifier(spec.labels, outputs) if spec.labels else None,
        embedder=None if spec.labels else outputs,
    )
    profile.save(path)
    if not spec.labels and EMBEDDING_SIMILARITY not in profile.features:
        progress(
            f"note: the drift reference has {len(set(reference.texts))} distinct texts, fewer "
            f"than the {MIN_EMBEDDED_REFERENCE} the embeddings' drift (embedding_similarity) "
            "needs to tell a new subject from noise: only token lengths are scored; pass a "
            "larger --drift-reference"
        )


def _gate_data_source(options: ExportOptions) -> str:
    """What the manifest says the gate compared on: an absolute path, or the package corpus."""
    return str(options.gate_data.resolve()) if options.gate_data else "the package corpus"


def export_model(
    options: ExportOptions, *, progress: Callable[[str], None] = lambda _: None
) -> ExportResult:
    """Export ``options.model`` into a Triton model repository and return what was done."""
    from tritonhf.gate.acceptance import MIN_GATE_TEXTS, read_texts

    started = time.perf_counter()
    reference = check_options(options)
    # A bad file is refused before any export work.
    gate_texts = read_texts(options.gate_data, minimum=MIN_GATE_TEXTS, flag="--gate-data")
    tuning = _step_tuning(options)
    source = resolve_model(
        options.model,
        revision=options.revision,
        allow_pickle_weights=options.allow_pickle_weights,
    )
    task = options.task or source.task
    request = VariantRequest(
        precision=options.precision,
        optimize=options.optimize,
        runtime=options.runtime,
        task=task,
        thresholds=options.thresholds,
    )
    check_request(request)
    if options.runtime is Runtime.TENSORRT:
        tensorrt_module()  # fail before the minutes of export work, not after
    if options.optimize:
        check_fusable(str(read_json(source.path / "config.json").get("model_type", "")))
    head = source.head
    what = f"head: {head.describe()}" if task is Task.EMBEDDING else "classifier"
    progress(f"loading {source.path} (task: {task.value}, {what})")
    if options.drift_reference is None:
        progress(default_reference_note(source.path))
    local = options.model == DEFAULT_MODEL or Path(str(options.model)).expanduser().is_dir()
    if options.revision and local:  # the bundled default model is a local folder too
        progress(
            f"note: --revision pins a hub model's commit; {options.model} is a local folder, "
            "read as it is"
        )
    check_new_version(options, task=task)
    if source.default_prompt and task is Task.EMBEDDING:
        progress(
            f"note: sentence-transformers puts the default prompt {source.default_prompt!r} "
            "before every text; the served model does not: clients send it as part of the text"
            + (
                ""
                if source.prompt_pooled
                else ". This model's pooling leaves the prompt's tokens out (include_prompt: "
                "false) and the served graph pools every token, so that gives encode(prompt + "
                "text), not encode(text): close, not equal"
            )
        )
    if options.task is None and not read_json(source.path / "config.json").get("architectures"):
        progress(
            "note: config.json names no architectures, so this exports an embedding model; "
            "pass --task classification for a classifier"
        )
    if source.generative and task is Task.EMBEDDING:
        progress(
            "note: this is a text generator, not a sentence-transformers model: it serves "
            f"its hidden states through {head.describe()}, which were never trained as sentence "
            "embeddings; check them on your own texts before relying on them"
        )
    model = load_encoder(source, allow_pickle_weights=options.allow_pickle_weights, task=task)
    if options.optimize:  # the fp32 graph holds every weight: refused now, not minutes in
        check_memory_for_fusion(4 * sum(p.numel() for p in model.parameters()))
    tokenizer = load_fast_tokenizer(source)
    labels = class_names(model) if task is Task.CLASSIFICATION else ()
    for group in look_alike_labels(labels):
        progress(
            f"warning: {look_alike_warning(group)}; they are served as separate classes, with "
            "metric labels and feedback corrections of their own: if they are one class, "
            "rename them in the model's id2label"
        )
    if note := replacement_note(options, task, labels):
        progress(note)
    token_types = feeds_token_types(tokenizer)
    layers = None
    if task is Task.CLASSIFICATION:
        encoder, output = classifier_probabilities(model, token_types=token_types), PROBABILITIES
    else:
        layers = load_head(head, allow_pickle_weights=options.allow_pickle_weights)
        encoder = sentence_encoder(model, head, layers, token_types=token_types)
        output = EMBEDDING
    vocab_size = int(model.get_input_embeddings().num_embeddings)
    if note := check_vocabulary(tokenizer, vocab_size):
        progress(note)
    check_runs_batches(encoder, tokenizer)  # with the tokenizer's ids: checked to fit above
    limit = resolve_max_length(options.max_length, source, model, tokenizer, encoder=encoder)
    if options.max_length is None and (note := default_limit_note(source, model, tokenizer)):
        progress(note)
    max_length = runnable_max_length(
        encoder, tokenizer, limit, requested=options.max_length is not None, progress=progress
    )
    spec = PipelineSpec(
        name=options.name,
        task=task,
        runtime=options.runtime,
        embedding_size=head.embedding_size(int(model.config.hidden_size)),
        normalized=head.normalized,
        max_length=max_length,
        max_batch_size=options.max_batch_size,
        labels=labels,
        precision=options.precision,
        layout=options.layout,
    )
    pad_token_id = int(tokenizer.pad_token_id or 0)
    try:  # what the model decides (labels, a default max length) against the served configs
        check_target(
            spec=spec,
            repo=options.repo,
            configs=pipeline_configs(
                spec, tuning=tuning, pad_token_id=pad_token_id, vocab_size=vocab_size
            ),
            version=options.version,
            quiet=True,  # what it keeps or drops is said once, when the writer checks again
        )
    except RepositoryError as exc:  # the options conflict with the repository: exit 2
        raise ConfigError(str(exc)) from exc
    _clear_killed_work_folders()
    with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-") as tmp:
        work = Path(tmp)
        graph: _OnnxStep | None = None
        payload: dict[str, Any] = {}
        manifest: dict[str, Any] = {
            "source": str(options.model),
            "source_path": str(source.path),  # what was read (a hub id's snapshot, a folder)
            "head": head.to_dict() if task is Task.EMBEDDING else None,
        }
        if source.default_prompt and task is Task.EMBEDDING:
            manifest["default_prompt_not_applied"] = source.default_prompt
            manifest["prompt_pooled"] = source.prompt_pooled
        if options.runtime is Runtime.PYTHON_TORCH:
            on_gpu = tuning.model_on_gpu
            device = "GPU" if on_gpu else "CPU"
            progress(f"saving the model for the python-torch runtime ({device})")
            model.save_pretrained(work / "hf", safe_serialization=True)
            settings: dict[str, Any] = {
                "labels": list(labels),
                "precision": options.precision.value,
                "token_type_ids": token_types,
            }
            if layers is not None:
                save_head(layers, work / "hf" / HEAD_WEIGHTS_FILE)
                settings["head"] = head.to_dict()
            payload = {"hf_folder": work / "hf", "torch_settings": settings}
            manifest["torch"] = {**settings, "gpu": on_gpu}
        else:
            graph = _export_graph(
                options=options,
                request=request,
                spec=spec,
                model=model,
                encoder=encoder,
                tokenizer=tokenizer,
                output=output,
                labels=labels,
                work=work,
                gate_texts=gate_texts,
                progress=progress,
            )
            manifest.update(
                onnx={"opset": graph.info.opset, "ir_version": graph.info.ir_version},
                variant=graph.variant.manifest
                | (
                    {"gate_data": _gate_data_source(options)}
                    if graph.variant.gate is not None
                    else {}
                ),
                validation={
                    "atol": graph.report.atol,
                    "texts": graph.report.num_texts,
                    "max_abs_diff": {d.name: d.max_abs_diff for d in graph.report.outputs},
                },
            )
            payload = {"onnx_path": graph.variant.path}
            if options.runtime is Runtime.TENSORRT:
                progress("building the TensorRT plan")
                plan = build_plan(
                    graph.variant.path,
                    work / PLAN_FILE,
                    profile=OptimizationProfile.for_spec(spec),
                    input_names=tuple(t.name for t in spec.token_tensors),
                    fp16=options.precision is Precision.FP16,
                )
                payload = {"onnx_path": None, "plan_path": plan.path}
                manifest["tensorrt"] = {
                    "version": plan.tensorrt_version,
                    "fp16": plan.fp16,
                    "profile": plan.profile.as_dict(),
                }
        # The serving step truncates on the side the tokenizer does: tokenizer.json says which.
        tokenizer.backend_tokenizer.enable_truncation(
            spec.max_length, direction=tokenizer.truncation_side
        )
        tokenizer.save_pretrained(work / "tokenizer")
        progress("recording the drift reference profile")
        _save_reference_profile(
            work / PROFILE_FILE,
            reference=reference,
            spec=spec,
            tokenizer=tokenizer,
            graph=graph.variant.path if graph is not None else None,
            encoder=encoder,
            progress=progress,
        )
        artifacts = StepArtifacts(
            onnx_path=payload.pop("onnx_path", None),
            tokenizer_json=work / "tokenizer" / "tokenizer.json",
            pad_token_id=pad_token_id,
            vocab_size=vocab_size,
            drift_reference=work / PROFILE_FILE,
            manifest=manifest,
            **payload,
        )
        folders = write_repository(
            spec=spec,
            repo=options.repo,
            artifacts=artifacts,
            tuning=tuning,
            version=options.version,
        )
    final_onnx = None
    if graph is not None and options.runtime in (Runtime.PYTHON_ONNX, Runtime.ONNXRUNTIME):
        final_onnx = OnnxGraphInfo(
            path=options.repo / spec.model_name / str(options.version) / ONNX_FILE,
            opset=graph.info.opset,
            ir_version=graph.info.ir_version,
        )
    return ExportResult(
        spec=spec,
        folders=tuple(folders),
        onnx=final_onnx,
        validation=graph.report if graph else None,
        seconds=time.perf_counter() - started,
    )
