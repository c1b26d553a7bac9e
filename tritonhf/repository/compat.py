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
import re
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


def repository_needs(repo: Path) -> list[ModelNeeds]:
    """Each model's backend, and the TensorRT version a plan was built with (manifests).

    Raise `RepositoryError` naming a config or manifest that cannot be read: Triton would fail
    on it at start, and serve nothing.
    """
    from tritonhf.repository.configs import parse_pbtxt

    plan_versions: dict[str, str] = {}
    # Version 1's manifest is the ensemble's; a later version's is in its model step's folder,
    # and the newest (what serves) names the TensorRT it was built with.
    later = sorted(repo.glob(f"*_model/[0-9]*/{MANIFEST}"), key=lambda m: int(m.parent.name))
    for manifest in [*repo.glob(f"*/{MANIFEST}"), *later]:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RepositoryError(f"unreadable export manifest {manifest}: {exc}") from exc
        if not isinstance(data, dict):
            raise RepositoryError(f"export manifest {manifest} is not a JSON object")
        version = (data.get("tensorrt") or {}).get("version")
        if version:
            step = manifest.parent
            name = step.parent.name if step.name.isdigit() else f"{step.name}_model"
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
        if backend == "python":
            code = config.default_model_filename or "model.py"
            folder = config_path.parent
            versions = [v for v in folder.iterdir() if v.name.isdigit() and v.is_dir()]
            missing = tuple(
                sorted(f"{v.name}/{code}" for v in versions if not (v / code).is_file())
            )
            for path in (v / code for v in versions if (v / code).is_file()):
                source = path.read_text(encoding="utf-8", errors="replace")
                for module in _STEP_MODULE.findall(source):
                    packages.update(STEP_PACKAGES.get(module, ()))
        needs.append(
            ModelNeeds(name, backend, plan_versions.get(name), missing, tuple(sorted(packages)))
        )
    return needs


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


def check_servable(
    repo: Path,
    *,
    backends: frozenset[str],
    tensorrt_version: str | None,
    server: str,
) -> None:
    """Raise `RepositoryError` naming every model this server cannot run, and why."""
    needs = repository_needs(repo)
    missing = [f"{m.name}/{path}" for m in needs for path in m.missing_code]
    if missing:
        raise RepositoryError(
            f"{repo} has Python-backend models without their code: {', '.join(missing)} (Triton "
            "would wait on them, then serve nothing); re-export, or remove those version folders"
        )
    check_step_packages(needs)
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
            "(docker compose / make up), or re-export with --runtime python-onnx for this server"
        )


def _same_release(built: str, serving: str) -> bool:
    """Plans load only on the TensorRT major.minor.patch they were built with."""
    return built.split(".")[:3] == serving.split(".")[:3]


def available_backends(backend_dir: Path) -> frozenset[str]:
    """The backends a server's backend directory holds."""
    return frozenset(p.name for p in backend_dir.iterdir() if p.is_dir())
