"""Hot reload of a served pipeline: load a new version of its steps while traffic flows."""

from __future__ import annotations

from typing import Any

from tritonhf.client.client import ModelState, TritonHFClient
from tritonhf.errors import DeployError
from tritonhf.spec import PipelineSpec


def deploy_pipeline(
    client: TritonHFClient, *, model: str, version: int | None = None
) -> list[ModelState]:
    """Reload ``model``'s model and tokenizer steps (newest version, or ``version``).

    Needs a server in explicit model-control mode. Triton loads each new version beside the
    old one and switches when it is ready; in-flight requests finish on the old version. A
    version that fails to load, or that the ensemble does not accept, raises `DeployError`
    and the old version keeps serving.
    """
    spec = PipelineSpec(name=model)
    index = client.models()
    serving = {s.name: s.version for s in index if s.ready}
    # A merged export has no tokenizer step in the repository: its model step tokenizes.
    in_repository = {s.name for s in index}
    steps = [spec.model_name] + [s for s in [spec.tokenizer_name] if s in in_repository]
    # What serves now, config included: a rollback must not read a config edited on disk.
    previous = {name: client.model_config(name) for name in [*steps, model] if name in serving}
    reloaded: list[str] = []
    # The model step first: it is the one most likely to fail (a bad graph). If a later
    # step fails, the steps already reloaded go back to the version that was serving.
    for step in steps:
        try:
            client.load_model(step, version=version)
        except DeployError:
            _roll_back(client, reloaded, serving, previous)
            raise
        reloaded.append(step)
    if not client.is_model_ready(model):
        # The steps loaded but the ensemble did not take them (Triton unloads an ensemble
        # whose steps no longer match its tensors): the old versions go back, then it does.
        _roll_back(client, reloaded, serving, previous)
        try:
            client.load_model(model, config=previous.get(model))
        except DeployError as exc:
            raise DeployError(
                f"{model!r} did not accept the new steps and could not be reloaded with the "
                f"old ones ({exc}); check the server log"
            ) from exc
        raise DeployError(
            f"{model!r} did not accept the new version of its steps (their tensors no longer "
            "match the ensemble; see the server log); the version that was serving keeps "
            "serving"
        )
    wanted = {model, spec.tokenizer_name, spec.model_name}
    return [state for state in client.models() if state.name in wanted]


def _roll_back(
    client: TritonHFClient,
    reloaded: list[str],
    serving: dict[str, str],
    previous: dict[str, dict[str, Any]],
) -> None:
    """Load what was serving again (version and config) for every step already reloaded."""
    for step in reloaded:
        if serving.get(step, "").isdigit():
            client.load_model(step, version=int(serving[step]), config=previous.get(step))
