"""Benchmark reports on disk (what ``tritonhf bench --out`` writes): find the latest ones.

A report is a folder holding markdown summaries and/or PNG plots (``summary.md``,
``bench.png``, ``bench.csv``); the bench folder itself and any folder below it count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_LOCAL_IMAGE = re.compile(r"!\[([^\]]*)\]\((?!https?://)([^)\s]+)\)")


@dataclass(frozen=True)
class Report:
    """One folder of benchmark results."""

    folder: Path
    title: str  # the folder relative to the bench folder (its name for the folder itself)
    markdown: tuple[Path, ...]
    images: tuple[Path, ...]
    tables: tuple[Path, ...]
    modified: float  # newest file's mtime, seconds since the epoch


def find_reports(root: Path) -> list[Report]:
    """Every report under ``root``, newest first; none when ``root`` does not exist."""
    if not root.is_dir():
        return []
    reports = []
    for folder in sorted({root, *(p for p in root.rglob("*") if p.is_dir())}):
        files = [p for p in folder.iterdir() if p.is_file()]
        markdown = tuple(sorted(p for p in files if p.suffix.lower() == ".md"))
        images = tuple(sorted(p for p in files if p.suffix.lower() == ".png"))
        if not markdown and not images:
            continue  # e.g. raw/ with perf_analyzer's CSVs only
        tables = tuple(sorted(p for p in files if p.suffix.lower() == ".csv"))
        # The bench folder itself is titled by its name, not ".".
        relative = folder.name if folder == root else folder.relative_to(root).as_posix()
        reports.append(
            Report(
                folder=folder,
                title=relative,
                markdown=markdown,
                images=images,
                tables=tables,
                modified=max(p.stat().st_mtime for p in (*markdown, *images, *tables)),
            )
        )
    return sorted(reports, key=lambda r: (-r.modified, r.title))


def strip_local_images(markdown: str) -> tuple[str, list[str]]:
    """``markdown`` without its relative image links (shown separately), and their paths.

    A browser cannot load a report's relative ``![plot](bench.png)`` from the console's
    page, so the console renders those files itself.
    """
    found = [match.group(2) for match in _LOCAL_IMAGE.finditer(markdown)]
    return _LOCAL_IMAGE.sub("", markdown), found
