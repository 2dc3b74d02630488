"""Options and helpers shared by every CLI command module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

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
