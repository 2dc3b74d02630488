"""How the CLI shows things: rich tables for people, JSON for scripts, errors on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Piped or captured output has no terminal width; rich would squeeze tables into 80 columns.
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
console = Console(highlight=False, soft_wrap=True, width=_PIPED_WIDTH)
errors = Console(stderr=True, highlight=False)


def to_jsonable(value: Any) -> Any:
    from pydantic import BaseModel  # a command that has records to print has loaded pydantic already

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_json(value: Any) -> None:
    # Plain print: rich would wrap long lines and break the JSON for scripts.
    print(json.dumps(to_jsonable(value), indent=2, sort_keys=False, default=str))


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(str(cell) for cell in row))
    console.print(grid)


def pending(message: str, hint: str | None = None) -> None:
    """A step that was recorded but waits for someone else (a second admin)."""
    errors.print(f"[bold yellow]pending:[/] {escape(message)}", markup=True, soft_wrap=True)
    if hint:
        errors.print(f"[yellow]next:[/] {escape(hint)}", markup=True, soft_wrap=True)


def fail(message: str, hint: str | None = None) -> None:
    # Escaped: messages quote user text such as "[pipeline] train", which rich would eat as markup.
    errors.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    if hint:
        errors.print(f"[yellow]hint:[/] {escape(hint)}", markup=True, soft_wrap=True)


@contextmanager
def progress_line(what: str) -> Iterator[Callable[[str], None]]:
    """A one-line status on stderr while waiting (``update(text)`` rewrites it); silent when not a terminal."""
    if not errors.is_terminal:
        yield lambda _text: None
        return
    with errors.status(escape(what)) as status:
        yield lambda text: status.update(escape(f"{what}: {text}"))
