"""Can this server serve this repository? Checked before starting it, with a clear message.

Three things Triton itself reports only as a model that fails to load, deep in its log:
a model whose backend the server lacks (the ``nvidia-pytriton`` wheel ships only the Python
backend: no onnxruntime, no TensorRT), a TensorRT plan built with another TensorRT than
the server's (plans are not portable across TensorRT versions), and a Python step whose
packages this environment, where `tritonhf serve` runs the steps, lacks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from tritonhf.errors import RepositoryError

# Triton's platform names and the backend directory that serves each.
PLATFORM_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "tensorrt_plan": "tensorrt",
    "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
}
MANIFEST = "tritonhf.json"

STEP_PACKAGES = {
    "tokenizer": ("tokenizers",),
    "onnx_runtime": ("onnxruntime",),
    "merged": ("tokenizers", "onnxruntime"),
    "torch_runtime": ("torch", "transformers"),
}
"""What each of tritonhf's Python steps (``tritonhf.backends.<module>``) imports beyond numpy."""
PACKAGE_EXTRAS = {"tokenizers": "serve", "onnxruntime": "serve", "torch": "export"}
"""The extra that brings each package (``transformers`` comes with torch's)."""
_STEP_MODULE = re.compile(r"^from tritonhf\.backends\.(\w+) import", re.MULTILINE)
# Exports before 2026-11-28 copied the whole step into model.py, which imports the installed
# tritonhf's internals: an update can break it (a changed signature), and nothing else says so.
_COPIED_STEP = re.compile(r"Copied into the model repository(?s:.*)^from tritonhf\.", re.MULTILINE)
MODEL_FILES = {
    "model.onnx": "onnxruntime",
    "model.plan": "tensorrt",
    "model.pt": "pytorch",
    "model.savedmodel": "tensorflow",
    "model.py": "python",
}
"""The backend Triton picks for a model folder without a config.pbtxt, by its version's file."""


@dataclass(frozen=True)
class ModelNeeds:
    """What one model folder of the repository needs from the server."""

    name: str
    backend: str | None
    """None for ensembles, which the server core runs."""
    tensorrt_version: str | None = None
    missing_code: tuple[str, ...] = ()
    """Version folders of a Python-backend model without its ``model.py``."""
    packages: tuple[str, ...] = ()
    """What a Python-backend model's code imports (for tritonhf's steps; others: nothing)."""
    copied_step: bool = False
    """Its ``model.py`` is a copy of an older tritonhf's step, not an import of this one's."""
    max_length: str | None = None
    """Its ``max_length`` parameter (tritonhf's tokenizer and model steps)."""
    exported_length: int | None = None
    """The token length its pipeline's export ran and validated the model at (manifest)."""


def is_version_folder(name: str) -> bool:
    """Whether Triton serves a model's subfolder ``name`` as a version (``2``; not ``2.bak``)."""
    return name.isascii() and name.isdigit()


def repository_needs(repo: Path) -> list[ModelNeeds]:
    """Each model's backend, and the TensorRT version a plan was built with (manifests).

    Raise `RepositoryError` naming a config or manifest that cannot be read: Triton would fail
    on it at start, and serve nothing.
    """
    from tritonhf.repository.configs import parse_pbtxt

    plan_versions: dict[str, str] = {}
    exported_lengths: dict[str, int] = {}  # each step's pipeline's, by the step's name
    # Version 1's manifest is the ensemble's; a later version's is in its model step's folder,
    # and the newest (what serves) names the TensorRT it was built with.
    later = sorted(
        (m for m in repo.glob(f"*_model/*/{MANIFEST}") if is_version_folder(m.parent.name)),
        key=lambda m: int(m.parent.name),
    )
    for manifest in [*repo.glob(f"*/{MANIFEST}"), *later]:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RepositoryError(f"unreadable export manifest {manifest}: {exc}") from exc
        if not isinstance(data, dict):
            raise RepositoryError(f"export manifest {manifest} is not a JSON object")
        spec = data["spec"] if isinstance(data.get("spec"), dict) else {}
        if isinstance(spec.get("max_length"), int) and isinstance(spec.get("name"), str):
            for suffix in ("_tokenizer", "_model"):
                exported_lengths[spec["name"] + suffix] = spec["max_length"]
        version = (data.get("tensorrt") or {}).get("version")
        if version:
            step = manifest.parent
            name = step.parent.name if is_version_folder(step.name) else f"{step.name}_model"
            plan_versions[name] = str(version)
    needs = []
    for config_path in sorted(repo.glob("*/config.pbtxt")):
        try:
            config = parse_pbtxt(config_path.read_text(encoding="utf-8"))
        except Exception as exc:  # OSError, UnicodeDecodeError, protobuf's ParseError
            reason = " ".join(str(exc).split())
            raise RepositoryError(
                f"{config_path} is not a model config Triton can read ({reason}); fix or "
                "remove that model folder"
            ) from exc
        name = config.name or config_path.parent.name
        if config.platform == "ensemble":
            backend = None
        elif config.backend:
            backend = config.backend
        else:
            backend = PLATFORM_BACKENDS.get(config.platform, config.platform or None)
        missing: tuple[str, ...] = ()
        packages: set[str] = set()
        copied = False
        if backend == "python":
            code = config.default_model_filename or "model.py"
            versions = version_folders(config_path.parent)
            missing = tuple(
                sorted(f"{v.name}/{code}" for v in versions if not (v / code).is_file())
            )
            for path in (v / code for v in versions if (v / code).is_file()):
                source = path.read_text(encoding="utf-8", errors="replace")
                for module in _STEP_MODULE.findall(source):
                    packages.update(STEP_PACKAGES.get(module, ()))
                copied = copied or bool(_COPIED_STEP.search(source))
        length = (
            config.parameters["max_length"].string_value
            if "max_length" in config.parameters
            else None
        )
        needs.append(
            ModelNeeds(
                name,
                backend,
                plan_versions.get(name),
                missing,
                tuple(sorted(packages)),
                copied,
                length,
                exported_lengths.get(name),
            )
        )
    for folder in sorted(p for p in repo.iterdir() if p.is_dir()):
        with suppress(OSError):  # unreadable: `not_model_folders` names it
            if not (folder / "config.pbtxt").exists():  # Triton completes the config itself
                files = {f.name for v in version_folders(folder) for f in v.iterdir()}
                backends = sorted({MODEL_FILES[f] for f in files if f in MODEL_FILES})
                needs += [ModelNeeds(folder.name, backend) for backend in backends[:1]]
    return needs


def version_folders(model: Path) -> list[Path]:
    """The version folders of the model folder ``model`` (none in one that cannot be read)."""
    try:
        return [v for v in model.iterdir() if is_version_folder(v.name) and v.is_dir()]
    except OSError:
        return []


def check_readable(paths: list[Path], repo: Path) -> None:
    """Raise `RepositoryError` naming the first of ``paths`` (in ``repo``) this process cannot read.

    An export made by another user under umask 077 (a root job filling a volume that a
    non-root server mounts): Triton would fail on it deep in its log.
    """
    unreadable = [
        path for path in paths if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0))
    ]
    if unreadable:
        first = unreadable[0]
        info = first.stat()
        more = f" and {len(unreadable) - 1} more" if len(unreadable) > 1 else ""
        raise RepositoryError(
            f"cannot read {first}{more} of the model repository: it belongs to uid {info.st_uid} "
            f"with mode {stat.filemode(info.st_mode)}, and this process runs as uid "
            f"{os.getuid()}; make the repository readable (`chmod -R a+rX {repo}`) or serve as "
            "its owner"
        )


def not_model_folders(repo: Path) -> list[str]:
    """Folders of ``repo`` that Triton would fail to load as models, stopping its start.

    Triton takes every folder of the repository for a model, hidden ones too (``.git``,
    ``.ipynb_checkpoints``, ``lost+found``): one with neither a config.pbtxt nor a version
    folder is refused.
    """
    return sorted(p.name for p in repo.iterdir() if p.is_dir() and not _is_model_folder(p))


def _is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` has a config.pbtxt or a version folder.

    False if it cannot be read (a volume's ``lost+found`` is root's alone): nor can Triton.
    """
    try:
        return (folder / "config.pbtxt").is_file() or bool(version_folders(folder))
    except OSError:
        return False


def check_step_packages(needs: list[ModelNeeds]) -> None:
    """Raise `RepositoryError` naming the packages the Python steps need and this env lacks."""
    absent: dict[str, list[str]] = {}
    for model in needs:
        for package in model.packages:
            if importlib.util.find_spec(package) is None:
                absent.setdefault(package, []).append(model.name)
    if not absent:
        return
    extras = ",".join(sorted({PACKAGE_EXTRAS.get(package, "export") for package in absent}))
    lacking = "; ".join(f"{name} (for {', '.join(models)})" for name, models in absent.items())
    raise RepositoryError(
        f"the Python steps import packages this environment lacks, so Triton would fail to "
        f"load them: {lacking}; install them here: pip install 'tritonhf[{extras}]'"
    )


def check_step_lengths(needs: list[ModelNeeds]) -> None:
    """Raise `RepositoryError` where a pipeline's tokenizer and model step differ in max_length.

    A hand edit of one of them served: the model step refused every text longer than its
    own length as the client's bad input, or ONNX Runtime failed on texts past the model's
    positions, while health was green.
    """
    lengths = {  # tritonhf's steps only: a team's own models may read max_length otherwise
        model.name: model.max_length
        for model in needs
        if model.max_length and (model.packages or model.copied_step)
    }
    differing = []
    for name, length in lengths.items():
        model = f"{name.removesuffix('_tokenizer')}_model"
        if name.endswith("_tokenizer") and lengths.get(model, length) != length:
            differing.append(f"{name}: {length} tokens, but {model}: {lengths[model]}")
    if differing:
        raise RepositoryError(
            f"a tokenizer step and its model step differ in their max_length parameter "
            f"({'; '.join(differing)}): the model step would refuse longer texts; set both to "
            "one value no larger than the model's positions, or re-export with --max-length"
        )


def check_servable(
    repo: Path,
    *,
    backends: frozenset[str],
    tensorrt_version: str | None,
    server: str,
) -> list[str]:
    """Raise `RepositoryError` naming every model this server cannot run, and why.

    Return warnings: models that may not load, or not as exported.
    """
    check_readable([repo], repo)
    if strays := not_model_folders(repo):
        raise RepositoryError(
            f"{repo} has folders that are not models: {', '.join(strays)} (neither a "
            "config.pbtxt nor a version folder, or unreadable); Triton takes every folder of "
            "the repository for a model and would refuse to start: move them out of the "
            "repository (a volume's lost+found: serve a folder inside the volume)"
        )
    check_readable(list(repo.rglob("*")), repo)  # rglob skips the folders it cannot list
    needs = repository_needs(repo)
    missing = [f"{m.name}/{path}" for m in needs for path in m.missing_code]
    if missing:
        raise RepositoryError(
            f"{repo} has Python-backend models without their code: {', '.join(missing)} (Triton "
            "would wait on them, then serve nothing); re-export, or remove those version folders"
        )
    check_step_packages(needs)
    check_step_lengths(needs)
    problems = []
    for model in needs:
        if model.backend is not None and model.backend not in backends:
            problems.append(
                f"{model.name} needs Triton's {model.backend} backend, which {server} lacks"
            )
        elif (
            model.tensorrt_version
            and tensorrt_version
            and not _same_release(model.tensorrt_version, tensorrt_version)
        ):
            problems.append(
                f"{model.name} is a TensorRT {model.tensorrt_version} plan; {server} runs "
                f"TensorRT {tensorrt_version}: rebuild it with the server's TensorRT"
            )
    if problems:
        raise RepositoryError(
            f"{repo} cannot be served here:\n  "
            + "\n  ".join(problems)
            + "\nserve native runtimes (onnxruntime, tensorrt) in the NGC Triton container "
            "(docker compose / make up); a tritonhf pipeline can also be re-exported with "
            "--runtime python-onnx for this server"
        )
    warnings = []
    if copies := [m.name for m in needs if m.copied_step]:
        warnings.append(
            f"{', '.join(copies)} run a copy of an older tritonhf's step code (exported before "
            "2026-11-28), which imports this tritonhf's internals: it may fail to load or "
            "behave differently; re-export (`tritonhf export ... --repo REPO`) to run this "
            "version's steps"
        )
    longer = [
        f"{m.name} {m.max_length} (exported at {m.exported_length})"
        for m in needs
        if m.exported_length and m.max_length and m.max_length.isdigit()
        and int(m.max_length) > m.exported_length
    ]  # fmt: skip
    if longer:
        warnings.append(
            f"max_length raised by hand past the length the export ran and validated the model "
            f"at: {', '.join(longer)}; a text longer than the model's positions fails its "
            "request: re-export with --max-length N, which checks that the model runs it"
        )
    return warnings


def _same_release(built: str, serving: str) -> bool:
    """Plans load only on the TensorRT major.minor.patch they were built with."""
    return built.split(".")[:3] == serving.split(".")[:3]


def available_backends(backend_dir: Path) -> frozenset[str]:
    """The backends a server's backend directory holds."""
    return frozenset(p.name for p in backend_dir.iterdir() if p.is_dir())
