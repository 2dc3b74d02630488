"""Options and helpers shared by every CLI command module."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from harbourmaster.client import Client
    from harbourmaster.config import Settings

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="HARBOURMASTER_URL",
        help="Talk to this server instead of the embedded store.",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="HARBOURMASTER_TOKEN", help="API token for --url.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def client(url: str | None = None, token: str | None = None) -> Client:
    """The SDK client a command talks through: embedded, or the server at ``url``."""
    from harbourmaster.client import Client as SdkClient

    if not url:
        announce_store()
    return SdkClient(url=url, token=token)


def announce_store(settings: Settings | None = None) -> Settings:
    """Say on stderr which store a command opens directly, unless HARBOURMASTER_HOME named it.

    Without HARBOURMASTER_HOME the store is the nearest ``.harbourmaster`` folder in the current
    directory or a parent (``config.find_store``), so the line tells which one that was.
    """
    from harbourmaster.cli import output
    from harbourmaster.config import HOME_FOUND, HOME_NEW, Settings

    settings = settings or Settings.from_env()
    if settings.home_source == HOME_FOUND:
        output.errors.print(f"store: {settings.home}", markup=False, highlight=False, soft_wrap=True)
    elif settings.home_source == HOME_NEW:
        output.errors.print(
            f"store: {settings.home} (new: no .harbourmaster folder in this directory or a parent; "
            "set HARBOURMASTER_HOME to use another)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return settings


def metrics_origin(source: str, rows: int | None, *, long: bool = False) -> str:
    """Where a version's metrics come from, for ``versions`` (short) and ``show`` (long)."""
    from harbourmaster.core.provenance import COMPUTED, DEFAULT_MIN_EVALUATION_ROWS

    unfit = rows is None or rows < DEFAULT_MIN_EVALUATION_ROWS
    if not long:
        return f"{source}, {rows if rows is not None else '?'} rows" + (" (unfit)" if unfit else "")
    on = f"{rows} held-out rows" if rows is not None else "an unknown number of rows"
    text = (
        f"computed by the platform on {on}"
        if source == COMPUTED
        else f"reported by the registrant (on {on}, their claim): metric gates take them only where "
        "allow_reported_metrics = true"
    )
    if unfit:
        text += f"; unfit for metric gates (fewer than {DEFAULT_MIN_EVALUATION_ROWS} rows by default)"
    return text


def read_json_file(path: Path, what: str) -> Any:
    """The JSON in ``path``; a missing or malformed file is an input error naming it (``what`` says what it holds)."""
    from harbourmaster.errors import InvalidInputError

    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{path} does not exist", f"give the path of a JSON file with {what}") from exc
    except IsADirectoryError as exc:
        raise InvalidInputError(f"{path} is a folder", f"give the path of a JSON file with {what}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}", f"fix the file: it holds {what}") from exc


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """Like :func:`read_json_file`, for files that must hold one JSON object."""
    from harbourmaster.errors import InvalidInputError

    value = read_json_file(path, what)
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"{path} holds a JSON {type(value).__name__}, not an object", f"write {what} as one JSON object {{...}}"
        )
    return value


def parse_json_option(text: str, option: str) -> Any:
    """The JSON value given to ``option`` on the command line; text that is not JSON is named with the fix."""
    from harbourmaster.errors import InvalidInputError

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{option} {text!r} is not JSON",
            f"give a number ({option} 0.5), a quoted text ({option} '\"{text}\"') or another JSON value",
        ) from exc


def json_or_text(value: str) -> Any:
    """A JSON value (``0``, ``"late"``, ``[1, 2]``), or the text itself when it is not JSON (``late``): for
    options whose value may be a plain label, where ``parse_json_option`` would refuse the text."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    """A lifetime typed on the command line: a positive number and a unit, e.g. 30m, 12h, 7d, 2w (or 90s)."""
    from harbourmaster.errors import InvalidInputError

    match = _DURATION.match(text.strip().lower())
    if not match:
        raise InvalidInputError(f"{text!r} is not a duration", "use a number and a unit: e.g. 30m, 12h, 7d or 2w")
    duration = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if duration <= timedelta(0):  # zero would read as "no lifetime given", i.e. never expiring
        raise InvalidInputError(f"{text!r} is no time at all", "give a positive duration, e.g. 30m or 7d")
    return duration
