"""How often each Python step was loaded: a stub that keeps dying shows as reloads.

`tritonhf serve` (and the image's entrypoint) reload a step whose stub died; a step killed by
the kernel every few minutes (a memory limit) fails few requests each time and shows nowhere
else but the server's log. Triton keeps the count across the step's reloads; a server that
restarted starts it again, which Prometheus's ``increase`` counts as a load too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from tritonhf.backends.busy import instance_slot
from tritonhf.observability.metrics import STEP_LOADS, TritonMetrics

log = logging.getLogger(__name__)
Step = TypeVar("Step", bound=type)


_COUNTED: dict[tuple[str, str], TritonMetrics] = {}
"""This process's counted loads, kept: the Python backend removes a metric family from the
server when the object that made it is deleted. A stub holds one instance, and a step class
may run another's ``initialize`` (the merged step: the tokenizer's and the model's), which
must not count the load again."""


def count_load(args: dict[str, str], pb_utils: Any) -> TritonMetrics | None:
    """Count a load of the step in `STEP_LOADS`, once per load: by its first instance."""
    instance = args.get("model_instance_name", "")
    if instance_slot(instance) != 0:
        return None
    key = (args.get("model_name", ""), instance)
    if key in _COUNTED:
        return _COUNTED[key]
    try:
        metrics = TritonMetrics(pb_utils, args["model_name"])
        metrics.increment(STEP_LOADS)
    except Exception as exc:  # noqa: BLE001  # a metric never fails a load
        log.warning("could not count the load of %s: %s", args.get("model_name"), exc)
        return None
    _COUNTED[key] = metrics
    return metrics


def counted(step: Step) -> Step:
    """Class decorator: a successful ``initialize`` counts a load (inside Triton only)."""
    initialize: Callable[..., Any] = step.initialize  # type: ignore[attr-defined]

    @functools.wraps(initialize)
    def counting_initialize(self: Any, args: dict[str, str]) -> None:
        initialize(self, args)
        try:
            import triton_python_backend_utils as pb_utils
        except ImportError:  # imported outside the server, by the unit tests
            return
        count_load(args, pb_utils)

    step.initialize = counting_initialize  # type: ignore[attr-defined]
    return step
