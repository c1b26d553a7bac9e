"""MkDocs hook: write ``reference/cli.md`` from ``tritonhf.cli.parser.build_parser()``.

The CLI reference is never hand-copied: every build reads the same parser ``tritonhf`` runs, so a
new command or flag appears in the docs with no edit, and a removed one disappears.
"""

from __future__ import annotations

import argparse
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

from tritonhf.cli.parser import build_parser

PAGE = "reference/cli.md"
WIDTH = 100


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse has no public API for this
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | description |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = (
            ", ".join(f"`{s}`" for s in action.option_strings)
            or f"`{action.metavar or action.dest}`"
        )
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            name += " {" + ", ".join(f"`{c}`" for c in action.choices) + "}"
        if action.required:
            name += " (required)"
        default = action.default
        # Identity, not ==: a default of 0 or 0.0 equals False and must still show.
        hidden = default is None or default is False or default is argparse.SUPPRESS
        shown = "" if hidden else f"`{default}`"
        rows.append(f"| {name} | {_cell(shown)} | {_cell(action.help or '')} |")
    return rows


def render(parser: argparse.ArgumentParser) -> str:
    """The Markdown reference of ``parser`` and each of its subcommands."""
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
    lines = [
        "# CLI reference",
        "",
        "Generated at build time from `tritonhf.cli.parser.build_parser()` by "
        "`docs/hooks/cli_reference.py`; `tritonhf COMMAND --help` prints the same options, "
        "each with its default.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
    ]
    for name, summary, sub in _subcommands(parser):
        sub.formatter_class = parser.formatter_class
        lines += [f"## `tritonhf {name}`", "", _cell(summary), ""]
        if sub.description:
            lines += [sub.description, ""]
        lines += ["```text", sub.format_usage().strip(), "```", ""]
        lines += [*_options_table(sub), ""]
    return "\n".join(lines)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated page to the site (MkDocs calls this before building the nav)."""
    files.append(File.generated(config, PAGE, content=render(build_parser())))
    return files
