"""Helpers of the deployment tests: repository paths, a tool runner with a timeout, YAML."""

from __future__ import annotations

import subprocess  # nosec B404
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*args: str | Path, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root; output captured as text."""
    return subprocess.run(  # nosec B603
        [str(a) for a in args],
        cwd=kwargs.pop("cwd", ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def load_yaml(relative: str) -> Any:
    """One YAML document of the repository."""
    return yaml.safe_load((ROOT / relative).read_text())
