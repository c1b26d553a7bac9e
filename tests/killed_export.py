"""An export killed (as SIGKILL) partway through moving its folders into a repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_KILLED_EXPORT = """
import os, sys
from pathlib import Path
from tritonhf.repository.writer import StepArtifacts, write_repository
from tritonhf.spec import PipelineSpec

repo, onnx, tokenizer, renames = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
real, calls = os.rename, []

def rename(source, target):
    calls.append(source)
    if len(calls) > renames:
        os._exit(137)  # as SIGKILL: no rollback, no clean-up
    real(source, target)

os.rename = rename
artifacts = StepArtifacts(
    onnx_path=Path(onnx), tokenizer_json=Path(tokenizer), pad_token_id=0, manifest={}
)
write_repository(spec=PipelineSpec(), repo=Path(repo), artifacts=artifacts)
"""


def kill_an_export_midway(repo: Path, onnx: Path, tokenizer_json: Path, *, renames: int) -> None:
    """Export the default pipeline into ``repo`` in a process that dies after ``renames``."""
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_EXPORT, str(repo), str(onnx), str(tokenizer_json),
         str(renames)],
        capture_output=True, check=False, timeout=120,
    )  # fmt: skip
    assert killed.returncode == 137, killed.stderr.decode()
