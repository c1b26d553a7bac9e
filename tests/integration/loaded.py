"""Pipelines a test module loads into the session's server, and unloading them again."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from pathlib import Path

from tritonhf.client import TritonHFClient
from tritonhf.errors import TritonHFError
from tritonhf.server.launcher import TritonServer

PIPELINE_SUFFIXES = ("", "_tokenizer", "_model", "_feedback")


def unload_pipelines(
    client: TritonHFClient,
    server: TritonServer,
    repo: Path,
    names: Iterable[str],
    *,
    ready_timeout_s: float = 60.0,
) -> None:
    """Unload the pipelines ``names``, delete their folders, wait until the server is ready.

    Triton unloads in the background, and until the last model is gone the server reports
    not ready (~4 s here): a later module's readiness checks would fail on it.
    """
    for name in names:
        for suffix in PIPELINE_SUFFIXES:
            with contextlib.suppress(TritonHFError):  # a step the layout does not have
                client.unload_model(f"{name}{suffix}")
            shutil.rmtree(repo / f"{name}{suffix}", ignore_errors=True)
    server.wait_ready(ready_timeout_s)
