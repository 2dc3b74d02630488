"""Options and helpers shared by every CLI command module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from harbourmaster.client import Client

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

    return SdkClient(url=url, token=token)


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
