"""Render the Kustomize overlays of deploy/k8s without kubectl, and validate what they produce.

No kustomize or kubectl binary is installable here, so this implements the subset of Kustomize
the manifests use (``resources``, ``patches`` by path as strategic merges, ``namespace``,
``labels``, ``images``) and refuses anything else: a kustomization using a feature this renderer
does not know fails instead of being half-rendered. Run it as a module to validate every
overlay with kubernetes-validate: ``python -m tests.deploy.kustomize``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
KUBERNETES_VERSION = "1.30.0"
# Custom resources: kubernetes-validate has schemas for the built-in API only. These kinds are
# skipped by it (and checked field by field in test_drift.py); any other kind without a schema
# fails.
CUSTOM_RESOURCES = frozenset(
    {"ServiceMonitor", "PrometheusRule", "InferenceService", "ServingRuntime"}
)
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass"})
SUPPORTED = frozenset(
    {"apiVersion", "kind", "namespace", "labels", "resources", "patches", "images"}
)
CONTAINER_PATHS = (
    ("spec", "containers"),
    ("spec", "initContainers"),
    ("spec", "template", "spec", "containers"),
    ("spec", "template", "spec", "initContainers"),
)


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not implement, or is inconsistent."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``path``."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Strategic merge: maps merge key by key, lists of named maps merge by ``name``."""
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"patch directive {key!r} is not supported")
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and _named(value + current):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    merge(by_name[item["name"]], item)
                else:
                    current.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _identity(doc: dict[str, Any]) -> tuple[str, str, str]:
    return (doc.get("apiVersion", ""), doc.get("kind", ""), doc["metadata"]["name"])


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize directory`` would print, for the supported subset."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        docs.extend(render(path) if path.is_dir() else load_documents(path))
    for entry in kustomization.get("patches", []):
        if set(entry) != {"path"}:
            raise KustomizeError(f"{directory}: only `patches: - path: FILE` is supported")
        for patch in load_documents(directory / entry["path"]):
            matches = [doc for doc in docs if _identity(doc) == _identity(patch)]
            if len(matches) != 1:
                raise KustomizeError(
                    f"{directory / entry['path']}: patch target {_identity(patch)} matches "
                    f"{len(matches)} resources, expected 1"
                )
            merge(matches[0], patch)
    for label_set in kustomization.get("labels", []):
        if set(label_set) - {"pairs", "includeSelectors"} or label_set.get("includeSelectors"):
            raise KustomizeError(f"{directory}: labels support only pairs without selectors")
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    for image in kustomization.get("images", []):
        _set_image(docs, image)
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    return docs


def _set_image(docs: list[dict[str, Any]], image: dict[str, str]) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise KustomizeError(f"images: unsupported fields in {image}")
    for doc in docs:
        for path in CONTAINER_PATHS:
            node: Any = doc
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            for container in node or []:
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    new_name = image.get("newName", name)
                    new_tag = image.get("newTag", tag)
                    container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def validate(docs: list[dict[str, Any]]) -> list[str]:
    """kubernetes-validate (strict) on every built-in resource; the errors, one line each."""
    errors = []
    for doc in docs:
        where = "/".join(_identity(doc)[1:])
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if doc["kind"] not in CUSTOM_RESOURCES:
                errors.append(f"{where}: no schema, and not a listed custom resource")
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{where}: {error.message} at {'.'.join(map(str, error.path))}")
    return errors


def main() -> int:
    """Render and validate every overlay; print a line per overlay."""
    failed = False
    for overlay in OVERLAYS:
        docs = render(K8S / "overlays" / overlay)
        errors = validate(docs)
        failed |= bool(errors)
        skipped = sorted({d["kind"] for d in docs if d["kind"] in CUSTOM_RESOURCES})
        print(f"{overlay}: {len(docs)} resources, {len(errors)} errors; skipped (CRDs): {skipped}")
        for error in errors:
            print(f"  {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
