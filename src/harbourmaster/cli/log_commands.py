"""``harbourmaster log``: compaction and retention of the prediction log (thin faces over the SDK)."""

from __future__ import annotations

from typing import Annotated

import typer

from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, client

log_app = typer.Typer(
    help="The prediction log: merge small files (compact) and remove old days (retention); the server does "
    "both on its monitoring schedule.",
    no_args_is_help=True,
)

EnvOption = Annotated[str, typer.Option("--env", help="The environment whose log to maintain.")]
ProjectOption = Annotated[str | None, typer.Option("--project", help="Only this project.")]


@log_app.command("compact")
def compact(
    env: EnvOption,
    project: ProjectOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Merge the small files of every closed hour into one file per day, hour and version (audited)."""
    with client(url, token) as hm:
        report = hm.compact_prediction_log(env, project)
    if json:
        return output.print_json(report)
    output.console.print(
        f"{report.files_in} files merged into {report.files_out} ({report.rows} rows, "
        f"{report.duplicates} duplicate rows dropped); {report.recovered} interrupted pass(es) finished"
    )


@log_app.command("retention")
def retention(
    env: EnvOption,
    project: ProjectOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Remove the days older than each project's retention setting (audited)."""
    with client(url, token) as hm:
        expired = hm.apply_log_retention(env, project)
    if json:
        return output.print_json(expired)
    if not expired:
        output.console.print("nothing older than its retention (or no retention set: see docs/monitoring.md)")
        return
    output.table(
        "removed",
        ["project", "environment", "kept days", "days removed", "files", "rows"],
        [(e.project, e.environment, e.keep_days, ", ".join(e.days), e.files, e.rows) for e in expired],
    )


def register(app: typer.Typer) -> None:
    """Add ``harbourmaster log`` to the app."""
    app.add_typer(log_app, name="log")
