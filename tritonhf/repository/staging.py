"""Move an export into a repository all or nothing, and undo a move that a kill cut short.

An export writes its folders into a staging area beside the repository (`staging_area`), then
renames them in (`move_in`) under the repository's lock (`export_lock`), moving the folders they
replace aside. A journal names the folders while they move: the next export or `tritonhf serve`
undoes a move that was killed partway (`recover_killed_exports`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tritonhf.errors import RepositoryError
from tritonhf.server.process import own_folder, pid_in_name, running

log = logging.getLogger(__name__)

STAGING_SUFFIX = ".tritonhf-staging-"
"""An export is written into ``.<repo>.tritonhf-staging-<pid>-*`` beside the repository."""
REPLACED = ".replaced"
"""Inside a staging area: the serving folders the export's folders replace, until it ends."""
MOVING = ".moving.json"
"""Inside a staging area while its folders move in: which ones, so a killed move is undone."""
MOVED = ".moved"
"""Inside a staging area once every folder moved in: what is left there is garbage."""


@contextmanager
def export_lock(repo: Path) -> Iterator[None]:
    """Hold ``repo``'s export lock (``flock`` on the folder): one export writes at a time.

    Two exports into one pipeline would otherwise each stage from the versions serving when
    it began, and the later one's move would drop the version the earlier one added.
    """
    try:
        fd = os.open(repo, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise RepositoryError(f"could not open the model repository {repo}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another export to finish writing into %s", repo)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a filesystem without flock
            log.warning("writing %s unlocked (%s): exports into it must not overlap", repo, exc)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def staging_area(repo: Path) -> Iterator[Path | None]:
    """An empty folder beside ``repo`` on its filesystem, removed after; None if there is none.

    Not inside ``repo``: Triton loads every folder there, hidden ones too. A repository that
    is a mount point (a volume) or whose parent cannot be written has no such neighbour and
    is written in place, with a warning. Staging areas of killed exports are cleared first.
    """
    repo = Path(os.path.abspath(repo))  # `--repo .`: its parent, not the repository itself
    prefix = f".{repo.name}{STAGING_SUFFIX}"
    try:
        if os.stat(repo.parent).st_dev != os.stat(repo).st_dev:
            raise OSError(errno.EXDEV, "the repository is a mount point")
        _clear_stale_staging(repo, prefix)
        staging = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=repo.parent))
    except OSError as exc:
        log.warning(
            "writing %s in place, not beside it first (%s): an export that fails partway "
            "leaves it mixed",
            repo,
            exc.strerror or exc,
        )
        yield None
        return
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def recover_killed_exports(repo: Path) -> None:
    """Undo the moves of exports into ``repo`` that were killed partway; clear their leftovers.

    For `tritonhf serve`, before it starts Triton and while it serves: a kill (SIGKILL, a lost
    machine) while an export moved its folders in leaves the repository mixing two exports,
    which Triton would serve (wrong answers) or refuse whole. Skipped while an export holds
    the lock; a repository that cannot be written (a read-only volume) is left to the next
    export.
    """
    repo = Path(os.path.abspath(repo))
    try:
        fd = os.open(repo, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _clear_stale_staging(repo, f".{repo.name}{STAGING_SUFFIX}")
    except OSError as exc:  # locked by an export under way, or nothing there can be changed
        log.debug("left killed exports' staging areas beside %s alone: %s", repo, exc)
    finally:
        os.close(fd)


def _clear_stale_staging(repo: Path, prefix: str) -> None:
    """Undo the moves of killed exports into ``repo`` (their journal says which); clear them.

    A staging area left by a tritonhf without the journal, holding serving folders it had
    moved aside, is named in a warning, not deleted: it may hold their only copy.
    """
    for stale in repo.parent.glob(f"{prefix}*"):
        pid = pid_in_name(stale.name, prefix)
        if pid is not None and running(pid):
            continue  # another export's, still running
        if not own_folder(stale):
            # Another user's (the parent may be /tmp): a journal there would have this
            # process move serving folders out, and anything it holds in.
            log.debug("left %s alone: not a folder of this user", stale)
            continue
        if (moving := _journal(stale)) is not None:
            _undo_move(stale, repo, moving["names"], moving["removed"])
            log.warning(
                "an export into %s was killed while it moved %s in: undone, the folders it "
                "replaced serve again (export it again)",
                repo,
                ", ".join(moving["names"]),
            )
        elif not (stale / MOVED).exists() and any((stale / REPLACED).glob("*")):
            log.warning(
                "%s holds %s, moved out of the repository by an export that was killed: the "
                "repository may mix two exports of them; export the pipeline again (or move "
                "all of them back, replacing what is there), then delete it",
                stale,
                ", ".join(sorted(p.name for p in (stale / REPLACED).glob("*"))),
            )
            continue
        shutil.rmtree(stale, ignore_errors=True)


def _journal(staging: Path) -> dict[str, list[str]] | None:
    """The folders a killed move was moving in; None when it moved none (no whole journal)."""
    try:
        moving = json.loads((staging / MOVING).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, or cut short by the kill: written before any rename
        return None
    if not isinstance(moving, dict) or not all(
        isinstance(names, list) and all(_folder_name(name) for name in names)
        for names in (moving.get("names"), moving.get("removed"))
    ):
        return None  # not what `move_in` writes: nothing to undo from it
    return moving


def _folder_name(name: object) -> bool:
    """Whether ``name`` names a folder inside the repository (no path, no parent)."""
    return isinstance(name, str) and name not in ("", ".", "..") and not {"/", "\0"} & set(name)


def _undo_move(staging: Path, repo: Path, names: list[str], removed: list[str]) -> None:
    """Put back what `move_in` moved, judged from what is on disk, not from where it stopped."""
    replaced = staging / REPLACED
    for name in reversed([*names, *removed]):
        if name in names and not (staging / name).exists() and (repo / name).exists():
            os.rename(repo / name, staging / name)  # moved in
        if (replaced / name).exists():  # moved aside
            os.rename(replaced / name, repo / name)


class CrossDevice(OSError):
    """The staging area and the repository share a filesystem but not a mount."""


def link_or_copy(source: str, target: str) -> None:
    """Hard-link ``source`` as ``target``; copy it where the filesystem has no hard links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def move_in(staging: Path, repo: Path, names: list[str], removed: list[str]) -> None:
    """Swap the staged folders into ``repo``, moving what they replace aside; all or none.

    A journal in ``staging`` names them until the last one is in: a kill meanwhile is undone
    by the next export or `tritonhf serve` (`recover_killed_exports`).
    """
    replaced = staging / REPLACED
    replaced.mkdir()
    journal = staging / MOVING
    journal.write_text(json.dumps({"names": names, "removed": removed}), encoding="utf-8")
    try:
        for name in [*names, *removed]:
            if (repo / name).exists():
                os.rename(repo / name, replaced / name)
            if name in names:
                os.rename(staging / name, repo / name)
        os.rename(journal, staging / MOVED)
    except BaseException as exc:  # Ctrl-C too: never leave a step's folder moved aside
        untouched = not any(replaced.iterdir()) and all((staging / n).exists() for n in names)
        if isinstance(exc, OSError) and exc.errno == errno.EXDEV and untouched:
            raise CrossDevice from exc
        _undo_move(staging, repo, names, removed)
        journal.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        raise RepositoryError(
            f"could not move the export into {repo}: {exc}; the repository is as it was"
        ) from exc
