"""Command help as paragraphs: typer's rich help keeps every line break of a docstring, so lines wrapped at
the source's width broke again at the terminal's (``deploy --help`` showed "ones," alone on a line).

``reflow_help`` joins the lines of each paragraph of every command's and group's help, once all commands
are registered; blank lines between paragraphs, list items and indented lines stay as written.
"""

from __future__ import annotations

import inspect
import re

import typer

__all__ = ["reflow", "reflow_help"]

_OWN_LINE = re.compile(r"^(\s|[-*•] |\d+[.)] |\$ )")  # indented, a list item or a shell line: kept on its own


def reflow(text: str | None) -> str | None:
    """``text`` with the single line breaks inside each paragraph joined by spaces."""
    if not text:
        return text
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.split("\n"):
            if lines and line.strip() and not _OWN_LINE.match(line) and not line.startswith("\b"):
                lines[-1] = f"{lines[-1].rstrip()} {line.strip()}"
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Reflow the help of ``app``'s commands, its sub-apps and theirs (in place)."""
    if _text(app.info.help):
        app.info.help = reflow(app.info.help)
    if app.registered_callback is not None:
        info = app.registered_callback
        info.help = reflow(_text(info.help) or inspect.getdoc(info.callback))
    for command in app.registered_commands:
        command.help = reflow(_text(command.help) or inspect.getdoc(command.callback))
    for group in app.registered_groups:
        if _text(group.help):
            group.help = reflow(group.help)
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


def _text(value: object) -> str | None:
    """A help value as text (typer keeps an unset one as a ``DefaultPlaceholder``)."""
    return value if isinstance(value, str) else None
