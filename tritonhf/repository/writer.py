"""Write a pipeline's models (tokenizer, model, ensemble, feedback) into a Triton repository.

The merged layout writes no tokenizer: the model step tokenizes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonhf.errors import RepositoryError
from tritonhf.observability.drift import PROFILE_FILE
from tritonhf.repository.configs import (
    DEFAULT_TUNING,
    StepTuning,
    ensemble_config,
    feedback_config,
    model_config,
    parse_pbtxt,
    to_pbtxt,
    tokenizer_config,
)
from tritonhf.spec import Layout, PipelineSpec, Runtime

CONFIG_FILE = "config.pbtxt"
ONNX_FILE = "model.onnx"
PLAN_FILE = "model.plan"
HF_FOLDER = "hf"
TORCH_SETTINGS_FILE = "torch_step.json"
EXPORT_MANIFEST = "tritonhf.json"
"""Provenance written beside the ensemble's config: source model, opset, validation figures."""


@dataclass(frozen=True)
class StepArtifacts:
    """Files produced by the exporter that the repository needs."""

    onnx_path: Path | None
    """The graph (python-onnx, onnxruntime runtimes)."""
    tokenizer_json: Path
    pad_token_id: int
    vocab_size: int = 0
    """Rows of the model's token embedding; the Python model steps refuse larger ids."""
    manifest: dict[str, Any] = field(default_factory=dict)
    drift_reference: Path | None = None
    """The reference profile for drift (JSON), copied beside the tokenizer and model steps."""
    plan_path: Path | None = None
    """The TensorRT engine (tensorrt runtime)."""
    hf_folder: Path | None = None
    """The HuggingFace model folder, safetensors (python-torch runtime)."""
    torch_settings: dict[str, Any] = field(default_factory=dict)
    """The sentence head (embeddings) or labels, and the precision the python-torch step applies."""


def _model_step_files(spec: PipelineSpec, artifacts: StepArtifacts) -> dict[str, Path | str]:
    """What goes into ``<name>_model/<version>/`` for the spec's runtime."""
    wanted = {
        Runtime.TENSORRT: ("TensorRT plan", artifacts.plan_path, PLAN_FILE),
        Runtime.PYTHON_TORCH: ("HuggingFace folder", artifacts.hf_folder, HF_FOLDER),
    }.get(spec.runtime, ("ONNX graph", artifacts.onnx_path, ONNX_FILE))
    what, path, target = wanted
    if path is None or not path.exists():
        raise RepositoryError(
            f"cannot write the {spec.runtime.value} model step: its {what} ({path}) is missing"
        )
    files: dict[str, Path | str] = {target: path}
    if spec.runtime is Runtime.PYTHON_ONNX:
        files["model.py"] = _backend_source("onnx_runtime")
    elif spec.runtime is Runtime.PYTHON_TORCH:
        files["model.py"] = _backend_source("torch_runtime")
        files[TORCH_SETTINGS_FILE] = json.dumps(artifacts.torch_settings, indent=2) + "\n"
    if spec.layout is Layout.MERGED:
        files["model.py"] = _backend_source("merged")
        files["tokenizer.json"] = artifacts.tokenizer_json
    return files


def _backend_source(module: str) -> str:
    """A step's ``model.py``: the step class of the tritonhf installed where Triton runs.

    Not a copy of the module: a copy is frozen at export time while the package code it
    imports is whatever is installed at serve time, so a repository exported before an
    update failed to load after it.
    """
    return (
        f'"""A Triton Python-backend step written by `tritonhf export`: '
        f'`tritonhf.backends.{module}`."""\n\n'
        f"from tritonhf.backends.{module} import TritonPythonModel\n\n"
        '__all__ = ["TritonPythonModel"]\n'
    )


def _write_model(
    repo: Path, name: str, config: Any, files: dict[str, Path | str], *, version_number: int = 1
) -> Path:
    """Version 1 replaces the whole model folder; a later version is added beside the others."""
    folder = repo / name
    version = folder / str(version_number)
    if version_number == 1 and folder.exists():
        shutil.rmtree(folder)
    elif version.exists():
        shutil.rmtree(version)
    version.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(to_pbtxt(config), encoding="utf-8")
    for target, content in files.items():
        if isinstance(content, Path) and content.is_dir():
            shutil.copytree(content, version / target)
        elif isinstance(content, Path):
            shutil.copyfile(content, version / target)
        else:
            (version / target).write_text(content, encoding="utf-8")
    return folder


def pipeline_configs(
    spec: PipelineSpec,
    *,
    tuning: StepTuning = DEFAULT_TUNING,
    pad_token_id: int = 0,
    vocab_size: int = 0,
) -> dict[str, Any]:
    """Every model of the pipeline (folder name -> ModelConfig), in the order they are written."""
    configs: dict[str, Any] = {}
    if spec.layout is Layout.SPLIT:
        configs[spec.tokenizer_name] = tokenizer_config(
            spec, pad_token_id=pad_token_id, tuning=tuning
        )
    configs[spec.model_name] = model_config(
        spec, tuning=tuning, pad_token_id=pad_token_id, vocab_size=vocab_size
    )
    configs[spec.name] = ensemble_config(spec)
    configs[spec.feedback_name] = feedback_config(spec)
    return configs


def read_config(folder: Path) -> Any | None:
    """The ModelConfig in ``folder``, or None when there is none or it does not parse."""
    from google.protobuf import text_format

    try:
        return parse_pbtxt((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, text_format.ParseError):
        return None


def check_owner(*, spec: PipelineSpec, repo: Path) -> None:
    """Refuse to write a folder of ``repo`` that belongs to another pipeline, or to no pipeline.

    Needs only the pipeline's name: its folders are the ensemble, its steps and its feedback
    model (merged layout: the tokenizer step's folder is removed, so it counts too).
    """
    ensemble = read_config(repo / spec.name)
    our_steps = set()
    if ensemble is not None and ensemble.platform == "ensemble":
        our_steps = {step.model_name for step in ensemble.ensemble_scheduling.step}
    names = {spec.name, spec.model_name, spec.tokenizer_name, spec.feedback_name}
    for name in sorted(names):
        folder = repo / name
        if not folder.exists():
            continue
        config = read_config(folder)
        owner = None
        if config is not None and "pipeline" in config.parameters:
            owner = config.parameters["pipeline"].string_value
        elif config is not None and config.platform == "ensemble":
            owner = config.name
        if owner == spec.name or (owner is None and name in our_steps):
            continue
        whose = f"a model of pipeline {owner!r}" if owner else "a model tritonhf did not write"
        raise RepositoryError(
            f"--name {spec.name!r} would overwrite {folder}, {whose}; pick another --name "
            "or remove that folder"
        )


def check_target(*, spec: PipelineSpec, repo: Path, configs: dict[str, Any], version: int) -> None:
    """Refuse, before any work, an export that would break what ``repo`` already serves.

    Every folder the export writes must be free or already this pipeline's: a ``--name``
    equal to another pipeline's step (``minilm_tokenizer``) would overwrite it. A version
    after 1 goes beside a serving one and shares its configs, so it must leave them as they
    are: other labels, sizes, runtime or layout make the old and new versions disagree.
    """
    if version < 1:
        raise RepositoryError(f"model versions start at 1, got {version}")
    check_owner(spec=spec, repo=repo)
    if version == 1:
        return
    ensemble = read_config(repo / spec.name)
    if ensemble is None:
        raise RepositoryError(
            f"version {version} of {spec.name!r} goes beside a served version 1, but {repo} "
            f"has no pipeline {spec.name!r}: export version 1 first"
        )
    for name, config in configs.items():
        existing = read_config(repo / name)
        if existing != config:
            changed = "; ".join(_differences(existing, config)) if existing is not None else "new"
            raise RepositoryError(
                f"version {version} of {spec.name!r} would change {name}'s config ({changed}), "
                "which every version shares: a new version keeps the task, labels, sizes, "
                "precision, runtime, layout and the steps' tuning, and a flag left out takes "
                "its default, not version 1's (repeat version 1's flags). Export it under "
                "another --name (and serve both), or as version 1 to replace the pipeline"
            )


def _differences(old: Any, new: Any) -> list[str]:
    """What differs between two ModelConfigs: one short line per parameter or field."""
    from google.protobuf import text_format

    def text(descriptor: Any, value: Any) -> str:
        parts = list(value) if descriptor.is_repeated else [value]
        if descriptor.message_type is None:
            return ", ".join(str(part) for part in parts)
        return ", ".join(text_format.MessageToString(p, as_one_line=True) for p in parts)

    found = []
    for key in sorted({*old.parameters, *new.parameters}):
        before = old.parameters[key].string_value if key in old.parameters else None
        after = new.parameters[key].string_value if key in new.parameters else None
        if before != after:
            found.append(f"{key}: {before!r} -> {after!r}")
    for descriptor in new.DESCRIPTOR.fields:
        name = descriptor.name
        if name == "parameters":  # a map, compared key by key above
            continue
        before = text(descriptor, getattr(old, name))
        after = text(descriptor, getattr(new, name))
        if before != after:
            found.append(f"{name}: {_around_first_difference(before, after)}")
    return found


def _around_first_difference(before: str, after: str, width: int = 48) -> str:
    """``before -> after``, each cut to ``width`` characters around where they first differ."""
    same = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), None)
    start = max(0, (min(len(before), len(after)) if same is None else same) - width // 2)

    def cut(value: str) -> str:
        part = value[start : start + width]
        return ("..." if start else "") + part + ("..." if start + width < len(value) else "")

    return f"{cut(before)!r} -> {cut(after)!r}"


def write_repository(
    *,
    spec: PipelineSpec,
    repo: Path,
    artifacts: StepArtifacts,
    tuning: StepTuning = DEFAULT_TUNING,
    version: int = 1,
) -> list[Path]:
    """Write the pipeline's model folders under ``repo``; return them.

    ``version`` 1 (a fresh export) replaces the folders. A later version adds
    ``<step>/<version>/`` to the tokenizer and model steps beside the versions already there,
    for a hot reload (`tritonhf deploy`); it must keep every config as it is (`check_target`).
    """
    configs = pipeline_configs(
        spec, tuning=tuning, pad_token_id=artifacts.pad_token_id, vocab_size=artifacts.vocab_size
    )
    check_target(spec=spec, repo=repo, configs=configs, version=version)
    if not artifacts.tokenizer_json.is_file():
        raise RepositoryError(
            f"cannot write the repository: {artifacts.tokenizer_json} does not exist"
        )
    model_files = _model_step_files(spec, artifacts)
    folders: list[Path] = []
    try:
        repo.mkdir(parents=True, exist_ok=True)
        if artifacts.drift_reference is not None:
            model_files[PROFILE_FILE] = artifacts.drift_reference
        if spec.layout is Layout.SPLIT:
            tokenizer_files: dict[str, Path | str] = {
                "model.py": _backend_source("tokenizer"),
                "tokenizer.json": artifacts.tokenizer_json,
            }
            if artifacts.drift_reference is not None:
                tokenizer_files[PROFILE_FILE] = artifacts.drift_reference
            folders.append(
                _write_model(
                    repo,
                    spec.tokenizer_name,
                    configs[spec.tokenizer_name],
                    tokenizer_files,
                    version_number=version,
                )
            )
        elif version == 1:
            shutil.rmtree(repo / spec.tokenizer_name, ignore_errors=True)  # a split export's
        folders += [
            _write_model(
                repo,
                spec.model_name,
                configs[spec.model_name],
                model_files,
                version_number=version,
            ),
            _write_model(repo, spec.name, configs[spec.name], {}),
            _write_model(
                repo,
                spec.feedback_name,
                configs[spec.feedback_name],
                {"model.py": _backend_source("feedback")},
            ),
        ]
        manifest = {"spec": _spec_dict(spec), "version": version, **artifacts.manifest}
        (repo / spec.name / EXPORT_MANIFEST).write_text(
            json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8"
        )
    except OSError as exc:
        written = ", ".join(folder.name for folder in folders)
        raise RepositoryError(
            f"could not write the model repository at {repo}: {exc}"
            + (
                f". {written} had been written already, so {spec.name!r} now mixes this export "
                "with what was there: fix the cause and export again before serving it"
                if written
                else ""
            )
        ) from exc
    return folders


def _spec_dict(spec: PipelineSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "task": spec.task.value,
        "runtime": spec.runtime.value,
        "embedding_size": spec.embedding_size,
        "normalized": spec.normalized,
        "max_length": spec.max_length,
        "max_batch_size": spec.max_batch_size,
        "precision": spec.precision.value,
        "layout": spec.layout.value,
    }
