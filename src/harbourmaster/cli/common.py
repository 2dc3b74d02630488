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
