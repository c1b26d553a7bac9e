"""Hot reload of a served pipeline: load a new version of its steps while traffic flows."""

from __future__ import annotations

from tritonhf.client.client import ModelState, TritonHFClient
from tritonhf.errors import DeployError
from tritonhf.spec import PipelineSpec


def deploy_pipeline(
    client: TritonHFClient, *, model: str, version: int | None = None
) -> list[ModelState]:
    """Reload ``model``'s model and tokenizer steps (newest version, or ``version``).

    Needs a server in explicit model-control mode. Triton loads each new version beside the
    old one and switches when it is ready; in-flight requests finish on the old version. A
    version that fails to load raises `DeployError` and the old version keeps serving.
    """
    spec = PipelineSpec(name=model)
    index = client.models()
    serving = {s.name: s.version for s in index if s.ready}
    reloaded: list[str] = []
    # The model step first: it is the one most likely to fail (a bad graph). If a later
    # step fails, the steps already reloaded go back to the version that was serving.
    # A merged export has no tokenizer step in the repository: its model step tokenizes.
    in_repository = {s.name for s in index}
    steps = [spec.model_name] + [s for s in [spec.tokenizer_name] if s in in_repository]
    for step in steps:
        try:
            client.load_model(step, version=version)
        except DeployError:
            for done in reloaded:
                if serving.get(done, "").isdigit():
                    client.load_model(done, version=int(serving[done]))
            raise
        reloaded.append(step)
    if not client.is_model_ready(model):
        raise DeployError(f"{model!r} is not ready after the reload; check the server log")
    wanted = {model, spec.tokenizer_name, spec.model_name}
    return [state for state in client.models() if state.name in wanted]
