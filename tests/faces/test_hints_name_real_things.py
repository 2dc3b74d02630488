"""Every hint that names a command, an option or a Client keyword names one that exists.

Messages are read from the source (string literals and f-strings, placeholders as ``X``) and the
commands from the Typer app, so a renamed option or a hint with a typo fails here, not for a user.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import typer

import harbourmaster
from harbourmaster.cli.main import app
from harbourmaster.client import Client

SOURCE = Path(harbourmaster.__file__).parent
# ``harbourmaster`` as a word of its own (not the ``.harbourmaster`` folder, a path or a module name).
COMMAND = re.compile(r"(?<![\w./-])harbourmaster ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)((?: [^;,)`'\"]*)?)")
CLIENT_CALL = re.compile(r"Client\.(\w+)\(([^)]*)\)")


def texts() -> Iterator[tuple[str, str]]:
    """(where, text) of every string literal in the package, f-string placeholders shown as X."""
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(part.value if isinstance(part, ast.Constant) else "X" for part in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            yield f"{path.relative_to(SOURCE)}:{node.lineno}", text


def resolve(words: list[str]) -> tuple[object, list[str]]:
    command: object = typer.main.get_command(app)
    path: list[str] = []
    for word in words:
        children = getattr(command, "commands", None)
        if children is None or word not in children:
            break
        command = children[word]
        path.append(word)
    return command, path


def command_hint_problems(where: str, text: str) -> tuple[list[str], int]:
    """What is wrong with the command hints in ``text``, and how many options it checked."""
    wrong: list[str] = []
    checked = 0
    for match in COMMAND.finditer(text):
        command, path = resolve(match.group(1).split())
        if not path:
            wrong.append(f"{where}: {match.group(0)!r} names no command")
            continue
        known = {"--help"} | {
            option
            for param in command.params  # type: ignore[attr-defined]
            for option in (*param.opts, *getattr(param, "secondary_opts", []))
        }
        for option in re.findall(r"(--[a-z][a-z-]*)", match.group(2) or ""):
            checked += 1
            if option not in known:
                wrong.append(f"{where}: {match.group(0)!r}: `harbourmaster {' '.join(path)}` has no {option}")
    return wrong, checked


def test_command_hints_name_real_commands_and_options() -> None:
    wrong: list[str] = []
    checked = 0
    for where, text in texts():
        problems, options = command_hint_problems(where, text)
        wrong.extend(problems)
        checked += options
    assert checked > 20, "the scan found too few hints: has the pattern gone stale?"
    assert not wrong, "\n".join(wrong)


def test_the_check_catches_wrong_hints_and_passes_prose_about_the_folder() -> None:
    assert command_hint_problems("x", "run harbourmaster deploi breast-cancer 2")[0]
    assert command_hint_problems("x", "see `harbourmaster drift P --histroy`")[0]
    assert command_hint_problems("x", "harbourmaster commands run here")[0]  # prose that reads as a command
    assert command_hint_problems("x", "(harbourmaster alerts --all shows resolved ones)") == ([], 1)
    assert command_hint_problems("x", "no .harbourmaster folder in this directory or a parent") == ([], 0)
    assert command_hint_problems("x", "logger harbourmaster.alerts or ~/.harbourmaster folder") == ([], 0)


def test_client_keyword_hints_name_real_keywords() -> None:
    wrong: list[str] = []
    for where, text in texts():
        for match in CLIENT_CALL.finditer(text):
            method = getattr(Client, match.group(1), None)
            if method is None:
                wrong.append(f"{where}: Client has no method {match.group(1)}")
                continue
            parameters = inspect.signature(method).parameters
            for keyword in re.findall(r"(\w+)=", match.group(2)):
                if keyword not in parameters:
                    wrong.append(f"{where}: Client.{match.group(1)} has no keyword {keyword!r}")
    assert not wrong, "\n".join(wrong)
