"""Write a pipeline's models (tokenizer, model, ensemble, feedback) into a Triton repository.

The merged layout writes no tokenizer: the model step tokenizes. The folders are written
beside the repository first and renamed in (`tritonhf.repository.staging`), so a failed export
leaves the repository as it was.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import py_compile
import shutil
from contextlib import suppress
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
    with_run_tuning_of,
)
from tritonhf.repository.onnx_files import external_data_files
from tritonhf.repository.staging import (
    CrossDevice,
    export_lock,
    link_or_copy,
    move_in,
    staging_area,
)
from tritonhf.spec import Layout, PipelineSpec, Runtime

log = logging.getLogger(__name__)

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
    if target == ONNX_FILE:  # a graph over 2 GiB: its weights' file, under the name it gives
        files.update({data.name: data for data in external_data_files(path)})
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
    root: Path,
    name: str,
    config: Any,
    files: dict[str, Path | str],
    *,
    version_number: int = 1,
    keep_from: Path | None = None,
) -> Path:
    """Version 1 replaces the whole model folder; a later version is added beside the others.

    ``keep_from``: the serving folder, when writing into a staging area; its other versions
    are hard-linked into the staged folder (no copy of the weights), its config rewritten.
    """
    folder = root / name
    version = folder / str(version_number)
    if version_number == 1 and folder.exists():
        shutil.rmtree(folder)
    elif version.exists():
        shutil.rmtree(version)
    if version_number != 1 and keep_from is not None and keep_from.is_dir():
        skipped = {str(version_number), CONFIG_FILE}
        shutil.copytree(
            keep_from,
            folder,
            copy_function=link_or_copy,
            ignore=lambda where, names: skipped & set(names) if Path(where) == keep_from else (),
        )
    version.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(to_pbtxt(config), encoding="utf-8")
    for target, content in files.items():
        if isinstance(content, Path) and content.is_dir():
            shutil.copytree(content, version / target)
        elif isinstance(content, Path):
            shutil.copyfile(content, version / target)
        else:
            (version / target).write_text(content, encoding="utf-8")
            if target.endswith(".py"):
                _compile_ahead(version / target)
    return folder


def _compile_ahead(source: Path) -> None:
    """Write ``source``'s bytecode now, valid by its content, so loading it writes nothing.

    Triton's stub imports ``model.py``, and Python writes ``__pycache__`` beside it; Triton
    then takes the step's folder for modified, and the next load of its ensemble from the
    repository reloads the step from disk, newest version: a rollback (`deploy --version 1`)
    of a version first loaded then was undone at once. A checked-hash file is rewritten only
    if the source changes (another Python writes its own, for its version).
    """
    py_compile.compile(
        str(source),
        cfile=importlib.util.cache_from_source(str(source)),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )


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


def check_target(
    *, spec: PipelineSpec, repo: Path, configs: dict[str, Any], version: int, quiet: bool = False
) -> None:
    """Refuse, before any work, an export that would break what ``repo`` already serves.

    Every folder the export writes must be free or already this pipeline's: a ``--name``
    equal to another pipeline's step (``minilm_tokenizer``) would overwrite it. A version
    after 1 goes beside a serving one and shares its configs, so it must leave them as they
    are: other labels, sizes, runtime or layout make the old and new versions disagree. Where
    only what no flag sets differs (instance counts, threads: `with_run_tuning_of`), the served
    config is kept: ``configs`` then holds it, for the writer.
    """
    if version < 1:
        raise RepositoryError(f"model versions start at 1, got {version}")
    check_owner(spec=spec, repo=repo)
    if version == 1:
        if not quiet:
            _note_dropped_tuning(spec=spec, repo=repo, configs=configs)
        return
    ensemble = read_config(repo / spec.name)
    if ensemble is None:
        raise RepositoryError(
            f"version {version} of {spec.name!r} goes beside a served version 1, but {repo} "
            f"has no pipeline {spec.name!r}: export version 1 first"
        )
    for name, config in configs.items():
        existing = read_config(repo / name)
        tuning_only = existing is not None and with_run_tuning_of(config, existing) == existing
        if existing != config and tuning_only:
            # Only what no flag sets differs (instances, threads, batching): keep the served.
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "version %d of %r keeps %s's served tuning (instances, threads, batching delay "
                "and sizes, parameters of its own)",
                version, spec.name, name,
            )  # fmt: skip
            configs[name] = existing
            continue
        added = sorted({*config.parameters} - {*existing.parameters}) if existing else []
        if added and _only_parameters_added(existing, config, added):
            raise RepositoryError(
                f"version {version} of {spec.name!r} cannot join the served one: {name}'s "
                f"config was written by an older tritonhf, without the parameters this one "
                f"writes ({', '.join(added)}), and every version shares it. Export it as "
                "version 1 to replace the pipeline (`tritonhf deploy` then loads it whole; "
                "requests fail while its ensemble switches), or under another --name"
            )
        if existing != config:
            changed = "; ".join(_differences(existing, config)) if existing is not None else "new"
            raise RepositoryError(
                f"version {version} of {spec.name!r} would change {name}'s config ({changed}), "
                "which every version shares: a new version keeps the task, labels, sizes, "
                "precision, runtime, layout and the queue limits, and a flag left out takes "
                "its default, not version 1's (repeat version 1's flags). Export it under "
                "another --name (and serve both), or as version 1 to replace the pipeline"
            )


def _only_parameters_added(existing: Any, config: Any, added: list[str]) -> bool:
    """Whether ``config`` is ``existing`` (tuning aside) plus the parameters ``added``."""
    grown = type(existing)()
    grown.CopyFrom(existing)
    for key in added:
        grown.parameters[key].CopyFrom(config.parameters[key])
    return bool(with_run_tuning_of(config, grown) == grown)


def _note_dropped_tuning(*, spec: PipelineSpec, repo: Path, configs: dict[str, Any]) -> None:
    """Say what hand tuning a version-1 export replaces with the defaults (it keeps none)."""
    for name, config in configs.items():
        existing = read_config(repo / name)
        tuned = None if existing is None else with_run_tuning_of(config, existing)
        if tuned is None or tuned == config:
            continue
        dropped = "; ".join(_differences(tuned, config))
        log.warning(
            "version 1 of %r replaces %s's tuning with the defaults (%s): edit its "
            "config.pbtxt again if you tuned it (a later --version keeps what serves)",
            spec.name, name, dropped,
        )  # fmt: skip


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
    if not artifacts.tokenizer_json.is_file():
        raise RepositoryError(
            f"cannot write the repository: {artifacts.tokenizer_json} does not exist"
        )
    model_files = _model_step_files(spec, artifacts)
    if artifacts.drift_reference is not None:
        model_files[PROFILE_FILE] = artifacts.drift_reference
    created = _missing_folders(repo)
    try:
        repo.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RepositoryError(f"could not write the model repository at {repo}: {exc}") from exc
    try:
        return _write_into(
            repo, spec, artifacts, configs, model_files, version, fresh=bool(created)
        )
    except BaseException:  # a repository this export made stays absent if it got nothing
        for folder in created:
            with suppress(OSError):
                folder.rmdir()
        raise


def _missing_folders(repo: Path) -> list[Path]:
    """``repo`` and its ancestors that do not exist yet, ``repo`` first."""
    return [folder for folder in (repo, *repo.parents) if not folder.exists()]


def _write_into(
    repo: Path,
    spec: PipelineSpec,
    artifacts: StepArtifacts,
    configs: dict[str, Any],
    model_files: dict[str, Path | str],
    version: int,
    *,
    fresh: bool,
) -> list[Path]:
    """`write_repository`'s work once ``repo`` exists (``fresh``: it made the folder)."""
    # A merged export at version 1 replaces a split one: its tokenizer folder goes.
    removed = [spec.tokenizer_name] if spec.layout is Layout.MERGED and version == 1 else []
    folders = _pipeline_folders(spec, artifacts, model_files, version)
    manifest = {"spec": _spec_dict(spec), "version": version, **artifacts.manifest}
    written: list[str] = []
    with export_lock(repo), staging_area(repo) as staging:
        # Checked under the lock: an export that finished since the first check may have
        # added a version or a step this one must keep.
        check_target(spec=spec, repo=repo, configs=configs, version=version)
        in_place = staging is None
        try:
            if staging is not None:
                try:
                    _write_pipeline(staging, spec, folders, configs, manifest, written, repo)
                    move_in(staging, repo, written, removed)
                    return [repo / name for name in written]
                except CrossDevice:  # a bind mount: one filesystem, but no rename into it
                    log.warning(
                        "writing %s in place: it refuses renames from beside it (a bind "
                        "mount); an export that fails partway leaves it mixed",
                        repo,
                    )
                    written.clear()
                    in_place = True
            _write_pipeline(repo, spec, folders, configs, manifest, written, None)
            for name in removed:
                shutil.rmtree(repo / name, ignore_errors=True)
        except OSError as exc:
            raise RepositoryError(
                _failed_write(repo, spec, written, staged=not in_place, fresh=fresh, exc=exc)
            ) from exc
    return [repo / name for name in written]


def _write_pipeline(
    root: Path,
    spec: PipelineSpec,
    folders: list[tuple[str, dict[str, Path | str], int]],
    configs: dict[str, Any],
    manifest: dict[str, Any],
    written: list[str],
    serving: Path | None,
) -> None:
    """Write ``folders`` and the manifest under ``root``, naming each in ``written`` when done.

    ``serving``: the repository, when ``root`` is a staging area beside it. Version 1's
    manifest is the ensemble's; a later version's goes in its model step's version folder, so
    the ensemble's keeps describing version 1 while that one serves.
    """
    for name, files, version in folders:
        keep_from = None if serving is None else serving / name
        _write_model(root, name, configs[name], files, version_number=version, keep_from=keep_from)
        written.append(name)
    (root / _manifest_folder(spec, int(manifest["version"])) / EXPORT_MANIFEST).write_text(
        json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8"
    )


def _manifest_folder(spec: PipelineSpec, version: int) -> str:
    """Where an export of ``version`` leaves its manifest, relative to the repository."""
    return spec.name if version == 1 else f"{spec.model_name}/{version}"


def _pipeline_folders(
    spec: PipelineSpec, artifacts: StepArtifacts, model_files: dict[str, Path | str], version: int
) -> list[tuple[str, dict[str, Path | str], int]]:
    """Each folder to write: name, files of its version folder, that version's number.

    A later version writes its steps only: the ensemble and the feedback model it shares with
    version 1 stay as they are (their configs must not change; `check_target`).
    """
    folders: list[tuple[str, dict[str, Path | str], int]] = []
    if spec.layout is Layout.SPLIT:
        tokenizer_files: dict[str, Path | str] = {
            "model.py": _backend_source("tokenizer"),
            "tokenizer.json": artifacts.tokenizer_json,
        }
        if artifacts.drift_reference is not None:
            tokenizer_files[PROFILE_FILE] = artifacts.drift_reference
        folders.append((spec.tokenizer_name, tokenizer_files, version))
    folders.append((spec.model_name, model_files, version))
    if version == 1:
        folders.append((spec.name, {}, 1))
        folders.append((spec.feedback_name, {"model.py": _backend_source("feedback")}, 1))
    return folders


def _failed_write(
    repo: Path, spec: PipelineSpec, names: list[str], *, staged: bool, fresh: bool, exc: OSError
) -> str:
    message = f"could not write the model repository at {repo}: {exc}"
    if staged and fresh:  # `write_repository` removes the folders it made, empty
        return message + "; nothing was written (it did not exist before)"
    if staged:
        return message + "; the repository is as it was (the export is written beside it first)"
    if names:
        return message + (
            f". {', '.join(names)} had been written already, so {spec.name!r} now mixes this "
            "export with what was there (it was written in place, see the warning above): "
            "fix the cause and export again before serving it"
        )
    return message


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
