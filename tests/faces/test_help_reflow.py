"""Command help reads as paragraphs at any terminal width: a docstring's own line breaks do not show."""

from __future__ import annotations

import os
import subprocess
import sys

from harbourmaster.cli.help_text import reflow
from harbourmaster.cli.main import app


def _help_paragraphs(command: str, columns: int) -> list[list[str]]:
    env = {**os.environ, "COLUMNS": str(columns), "TERMINAL_WIDTH": str(columns)}
    done = subprocess.run(
        [sys.executable, "-m", "harbourmaster", command, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    body = done.stdout.split("Usage:", 1)[1].split("\n", 1)[1].split("╭─", 1)[0]
    paragraphs: list[list[str]] = [[]]
    for line in body.splitlines():
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def test_deploy_help_wraps_at_the_terminal_width_only() -> None:
    for columns in (80, 100):
        paragraphs = _help_paragraphs("deploy", columns)
        assert len(paragraphs) == 2, paragraphs
        for paragraph in paragraphs:
            # every line but a paragraph's last fills the width (no "ones," left alone on a line)
            assert all(len(line) >= columns - 20 for line in paragraph[:-1]), (columns, paragraph)
        assert "merged into the current ones, in the same change" in " ".join(paragraphs[1])


def test_every_command_help_is_reflowed() -> None:
    def commands(typer_app):
        yield from typer_app.registered_commands
        for group in typer_app.registered_groups:
            yield from commands(group.typer_instance)

    for command in commands(app):
        text = command.help or ""
        for paragraph in text.split("\n\n"):
            for line in paragraph.split("\n")[1:]:
                assert line.startswith((" ", "-", "*", "$")) or line[:1].isdigit(), (command.name, paragraph)


def test_reflow_keeps_paragraphs_lists_and_indented_lines() -> None:
    text = "Title line.\n\n    First half\n    second half.\n\n    - item one\n    - item two\n      more\n"
    assert reflow(text) == "Title line.\n\nFirst half second half.\n\n- item one\n- item two\n  more"
    assert reflow(None) is None
