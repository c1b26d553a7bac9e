"""Output folders the commands create: refused at once when they cannot be made or written."""

from __future__ import annotations

import os
from pathlib import Path

from tritonhf.errors import ConfigError


def check_output_folder(path: Path, *, flag: str) -> None:
    """Raise `ConfigError` unless ``path`` is, or can be created as, a writable folder.

    Checked before the work that fills it (an export, a training), so that the refusal comes
    in a second, not at the end. ``flag`` names the option in the message (``--repo``).
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder")
    # lexists: a dangling (or looping) symbolic link exists, but cannot be followed or made.
    existing = next(
        parent for parent in (path, *path.absolute().parents) if os.path.lexists(parent)
    )
    if existing.is_symlink() and not existing.exists():
        raise ConfigError(f"{flag} {path} cannot be created: {existing} is a broken symbolic link")
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path} cannot be written: {existing} is not writable")
