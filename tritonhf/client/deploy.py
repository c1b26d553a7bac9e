"""Hot reload of a served pipeline: load a new version of its steps while traffic flows."""

from __future__ import annotations

import time
from typing import Any

from tritonhf.client.client import TritonHFClient
from tritonhf.client.results import ModelState
from tritonhf.errors import ConfigError, DeployError, DeployPendingError
from tritonhf.spec import PipelineSpec

STEP_SUFFIXES = ("_model", "_tokenizer", "_feedback")
"""What a pipeline's models are called after it (`PipelineSpec`)."""
SETTLE_S = 10.0
"""How long a deploy waits for Triton to unload the versions it replaced, before it reports."""


def deploy_pipeline(
    client: TritonHFClient, *, model: str, version: int | None = None
) -> list[ModelState]:
    """Serve ``model``'s newest version (or ``version``) of its model and tokenizer steps.

    Needs a server in explicit model-control mode. A pipeline that serves already is
    reloaded: Triton loads each new version beside the old one and switches when it is
    ready; in-flight requests finish on the old version. A version that fails to load, or
    that the ensemble does not accept, raises `DeployError` and the old version keeps
    serving, unless the repository's own ensemble accepts it: a version-1 export that
    replaced the pipeline (another task, other labels) is loaded whole, ensemble and feedback
    model included, and requests fail while the ensemble switches. A pipeline that does not
    serve yet (exported after the server started, or unloaded) is loaded: its steps, its
    ensemble and its feedback model.
    """
    if version is not None and version < 1:
        raise ConfigError(f"model versions start at 1, got --version {version}")
    spec = PipelineSpec(name=model)
    index = client.models()
    in_repository = {s.name for s in index}
    if model not in in_repository:
        raise DeployError(
            f"the server's model repository has no pipeline {model!r}; export it there first "
            "(`tritonhf models` lists what the server has)"
        )
    for suffix in STEP_SUFFIXES:
        pipeline = model.removesuffix(suffix)
        if pipeline != model and pipeline in in_repository:
            raise ConfigError(
                f"{model!r} is a step of pipeline {pipeline!r}: deploy the pipeline "
                f"(--model {pipeline}), which reloads its steps"
            )
    if spec.model_name not in in_repository:
        raise DeployError(
            f"{model!r} is not a tritonhf pipeline: the server's repository has no step "
            f"{spec.model_name!r} to reload (a model of your own loads with Triton's load API: "
            "`TritonHFClient.load_model`, or the ops console)"
        )
    serving = {s.name: s.version for s in index if s.ready}
    # A merged export has no tokenizer step in the repository: its model step tokenizes.
    steps = [spec.model_name] + [s for s in [spec.tokenizer_name] if s in in_repository]
    replaced = False
    if model in serving:
        replaced = _reload(client, model, steps, version, serving)
    else:
        for name in steps:
            client.load_model(name, version=version)
        client.load_model(model)
        if mixed := _mixed_versions(client, steps):
            for name in [model, *steps]:
                client.unload_model(name)
            raise DeployError(mixed)
    if spec.feedback_name in in_repository and (replaced or spec.feedback_name not in serving):
        client.load_model(spec.feedback_name)  # a replaced pipeline's labels may differ
    return _settled(client, model, steps, feedback=spec.feedback_name, version=version)


def _settled(
    client: TritonHFClient, model: str, steps: list[str], *, feedback: str, version: int | None
) -> list[ModelState]:
    """The pipeline's states once Triton has unloaded what they replaced (up to `SETTLE_S`).

    `DeployError` when by then it does not serve what was deployed: the server was stopping
    (its drain unloads everything), or another deploy ran meanwhile.
    """
    wanted = {model, *steps, feedback}
    pinned_again = False
    while True:
        states = _once_settled(client, wanted)
        serving = {s.name: s.version for s in states if s.ready}
        versions = {serving.get(step) for step in steps}
        moved = version is not None and versions != {str(version)}
        if not moved or pinned_again or model not in serving or None in versions:
            break
        # Loading the ensemble from the repository made Triton load the steps' newest version
        # again: it takes a step folder for modified once Python wrote bytecode into it (an
        # export before tritonhf wrote it ahead). Pinned once more, the folders no longer move.
        for step in steps:
            client.load_model(step, version=version)
        pinned_again = True
    if model not in serving or None in versions or moved:
        found = ", ".join(f"{s.name} {s.version} {s.state}" for s in states)
        raise DeployError(
            f"{model!r} does not serve what was deployed ({found}): was the server stopping, "
            "or did another deploy run meanwhile? (`tritonhf models`)"
        )
    return states


def _once_settled(client: TritonHFClient, wanted: set[str]) -> list[ModelState]:
    """The states of the ``wanted`` models once none is loading or unloading (`SETTLE_S`)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        states = sorted((s for s in client.models() if s.name in wanted), key=_order)
        settled = all(s.state not in ("LOADING", "UNLOADING") for s in states)
        if settled or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def _order(state: ModelState) -> tuple[str, int]:
    return state.name, int(state.version) if state.version.isdigit() else 0


def _reload(
    client: TritonHFClient,
    model: str,
    steps: list[str],
    version: int | None,
    serving: dict[str, str],
) -> bool:
    """Load the steps' new version under a serving ensemble; on failure, the old ones again.

    True when the repository's ensemble was loaded with them: the pipeline was replaced.
    """
    # What serves now, config included: a rollback must not read a config edited on disk.
    previous = {name: client.model_config(name) for name in [*steps, model] if name in serving}
    reloaded: list[str] = []
    # The model step first: it is the one most likely to fail (a bad graph). If a later
    # step fails, the steps already reloaded go back to the version that was serving.
    for step in steps:
        try:
            client.load_model(step, version=version)
        except DeployPendingError:  # still loading: a rollback now would race it
            raise
        except DeployError as exc:
            _roll_back(client, reloaded, serving, previous, pipeline=model)
            raise DeployError(f"{exc}; the version that was serving keeps serving") from exc
        reloaded.append(step)
    if client.is_model_ready(model):
        if mixed := _mixed_versions(client, steps):
            _roll_back(client, reloaded, serving, previous, pipeline=model)
            raise DeployError(f"{mixed}; the version that was serving keeps serving")
        # The ensemble took the steps, but a version-1 export that replaced the pipeline with
        # the same tensors (a classifier's classes renamed or reordered) wrote a new ensemble
        # config: load it (Triton reloads a model only when its folder changed).
        try:
            client.load_model(model)
        except DeployPendingError:
            raise
        except DeployError as exc:
            _roll_back(client, reloaded, serving, previous, pipeline=model)
            raise DeployError(f"{exc}; the version that was serving keeps serving") from exc
        return client.model_config(model) != previous.get(model)
    # The steps loaded but the ensemble did not take them (Triton unloads an ensemble whose
    # steps no longer match its tensors). A version-1 export that replaced the pipeline (another
    # task) wrote an ensemble that matches them: load it. Otherwise the old versions go back,
    # then the old ensemble does.
    try:
        client.load_model(model)
    except DeployPendingError:
        raise
    except DeployError:
        pass
    else:
        if client.is_model_ready(model) and not _mixed_versions(client, steps):
            return True
    _roll_back(client, reloaded, serving, previous, pipeline=model)
    try:
        client.load_model(model, config=previous.get(model))
    except DeployError as exc:
        raise DeployError(
            f"{model!r} did not accept the new steps and could not be reloaded with the "
            f"old ones ({exc}); check the server log"
        ) from exc
    raise DeployError(
        f"{model!r} did not accept the new version of its steps (their tensors no longer "
        "match the ensemble; see the server log); the version that was serving keeps serving"
    )


def _mixed_versions(client: TritonHFClient, steps: list[str]) -> str | None:
    """Why the loaded steps do not belong together (versions differ), or None.

    Each step loads its own newest version: a version folder written for one step only (an
    export that stopped halfway, a hand copy) would pair a tokenizer with another model.
    """
    loaded = {s.name: s.version for s in client.models() if s.ready and s.name in steps}
    if len(set(loaded.values())) < 2:
        return None
    found = ", ".join(f"{name} {version}" for name, version in sorted(loaded.items()))
    return (
        f"the steps loaded at different versions ({found}): an export writes every step of a "
        "version; finish or remove the partial version, or pin one with --version N"
    )


def _roll_back(
    client: TritonHFClient,
    reloaded: list[str],
    serving: dict[str, str],
    previous: dict[str, dict[str, Any]],
    *,
    pipeline: str,
) -> None:
    """Load what was serving again (version and config) for every step already reloaded.

    `DeployError` when one cannot be: its version's folder is gone (a version-1 export
    replaced the pipeline), so the pipeline may not serve; `DeployPendingError` when one
    outlasts the client's wait.
    """
    for step in reloaded:
        if serving.get(step, "").isdigit():
            try:
                client.load_model(step, version=int(serving[step]), config=previous.get(step))
            except DeployPendingError as exc:
                raise DeployPendingError(
                    f"the deploy failed and rolling back {step!r} is still loading: {exc}"
                ) from exc
            except DeployError as exc:
                raise DeployError(
                    f"rolling back failed too: {exc}. {pipeline!r} may not be serving "
                    f"(`tritonhf models`); deploy a version that the repository still holds "
                    f"(`tritonhf deploy --model {pipeline} --version N`)"
                ) from exc
