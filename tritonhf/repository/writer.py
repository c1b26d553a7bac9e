"""Write a pipeline's models (tokenizer, model, ensemble, feedback) into a Triton repository.

The merged layout writes no tokenizer: the model step tokenizes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from importlib import resources
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
    return resources.files("tritonhf.backends").joinpath(f"{module}.py").read_text("utf-8")


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
    for a hot reload (`tritonhf deploy`); it must keep the same tensor contract.
    """
    if version < 1:
        raise RepositoryError(f"model versions start at 1, got {version}")
    if not artifacts.tokenizer_json.is_file():
        raise RepositoryError(
            f"cannot write the repository: {artifacts.tokenizer_json} does not exist"
        )
    model_files = _model_step_files(spec, artifacts)
    try:
        repo.mkdir(parents=True, exist_ok=True)
        folders = []
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
                    tokenizer_config(spec, pad_token_id=artifacts.pad_token_id, tuning=tuning),
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
                model_config(spec, tuning=tuning, pad_token_id=artifacts.pad_token_id),
                model_files,
                version_number=version,
            ),
            _write_model(repo, spec.name, ensemble_config(spec), {}),
            _write_model(
                repo,
                spec.feedback_name,
                feedback_config(spec),
                {"model.py": _backend_source("feedback")},
            ),
        ]
        manifest = {"spec": _spec_dict(spec), "version": version, **artifacts.manifest}
        (repo / spec.name / EXPORT_MANIFEST).write_text(
            json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8"
        )
    except OSError as exc:
        raise RepositoryError(f"could not write the model repository at {repo}: {exc}") from exc
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
