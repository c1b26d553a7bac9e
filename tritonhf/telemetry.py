"""Third-party usage telemetry: off in what tritonhf runs, unless the user turns it on.

ONNX Runtime's Linux wheels (1.32 here) send usage events to Microsoft by default and keep a
device id and an event cache under ``~/.cache/Microsoft``; ``ORT_DISABLE_TELEMETRY=1`` set
before it loads turns all of that off. The HuggingFace Hub client reports downloads unless
``HF_HUB_DISABLE_TELEMETRY=1``, and Gradio its launches unless ``GRADIO_ANALYTICS_ENABLED`` is
false. A value the user set (``ORT_DISABLE_TELEMETRY=0``) is kept.
"""

from __future__ import annotations

from collections.abc import MutableMapping

TELEMETRY_OFF = {
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",  # the demo's Blocks say so too
}


def telemetry_off(environ: MutableMapping[str, str]) -> None:
    """Set `TELEMETRY_OFF` in ``environ`` where the user has not chosen."""
    for name, value in TELEMETRY_OFF.items():
        environ.setdefault(name, value)
