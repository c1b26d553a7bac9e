"""The Gradio demo (``tritonhf ui``).

Gradio is imported only when the demo starts, so importing this package stays light.
"""

from __future__ import annotations

from tritonhf.ui.service import DemoConfig, DemoService


def serve_demo(config: DemoConfig) -> None:
    """Run the demo until Ctrl-C (binds ``config.host``, 127.0.0.1 by default)."""
    from tritonhf.ui.app import serve

    serve(config)


__all__ = ["DemoConfig", "DemoService", "serve_demo"]
