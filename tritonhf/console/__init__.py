"""The Streamlit ops console (``tritonhf console``).

Streamlit is imported only when the console starts, so importing this package stays light.
"""

from __future__ import annotations

from pathlib import Path

from tritonhf.console.logic import ConsoleConfig

APP = Path(__file__).with_name("app.py")


def serve_console(config: ConsoleConfig) -> None:
    """Run the console until Ctrl-C or SIGTERM (binds ``config.host``, 127.0.0.1 by default)."""
    from streamlit.web import bootstrap

    options = {
        "server.address": config.host,
        "server.port": config.port,
        "server.headless": True,
        "server.fileWatcherType": "none",
        "server.runOnSave": False,
        "browser.gatherUsageStats": False,
        "global.developmentMode": False,
        "client.toolbarMode": "minimal",
        "client.showErrorDetails": "none",
    }
    bootstrap.load_config_options(flag_options=options)
    print(
        f"tritonhf console on http://{config.host}:{config.port} "
        f"(Triton {config.url}, metrics {config.metrics_url}); Ctrl-C stops",
        flush=True,
    )
    bootstrap.run(str(APP), False, config.args(), options)


__all__ = ["ConsoleConfig", "serve_console"]
