"""Standard streams a command can rely on: write errors and closed descriptors said in one line.

A full disk (``> out.json`` on a full volume, ``> /dev/full``) raised `OSError` from ``print``
with a traceback, and a descriptor closed by the caller (``>&-``, ``2>&-``, ``<&-``) makes
Python set the stream to None: ``print`` then writes nothing and succeeds, and an error line
meant for standard error lands on standard output, in the middle of a JSON stream.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from tritonhf.errors import OutputError


class GuardedOutput:
    """``stream`` whose failed writes raise `OutputError` (one line); None: a closed one."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text``; `OutputError` if the stream cannot take it."""
        return int(self._guarded("write", text))

    def flush(self) -> None:
        """Flush; `OutputError` if what was buffered cannot be written."""
        self._guarded("flush")

    def _open(self) -> TextIO:
        if self._stream is None:
            raise OutputError("cannot write the output: standard output is closed")
        return self._stream

    def _guarded(self, method: str, *args: Any) -> Any:
        stream = self._open()
        try:
            return getattr(stream, method)(*args)
        except BrokenPipeError:
            raise  # the reader has what it wanted: `main` exits 141 quietly
        except OSError as exc:
            raise OutputError(
                f"cannot write the output: {exc.strerror or exc} (standard output)"
            ) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._open(), name)


def guard_standard_streams() -> None:
    """Put `GuardedOutput` on standard output; a closed standard error goes to /dev/null.

    A closed standard input stays None: the commands that read it say so (`read_lines`).
    """
    if sys.stderr is None:  # errors still set the exit code; never on standard output
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  # until main returns
    if not isinstance(sys.stdout, GuardedOutput):
        sys.stdout = GuardedOutput(sys.stdout)
