"""``harbourmaster runs [PROJECT]`` (recent pipeline runs with the verdict on their input data) and
``harbourmaster runs show RUN`` (one run's whole record): thin faces over the SDK."""

from __future__ import annotations

from typing import Annotated, Any

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, client

VALIDATION_WORDS = {"valid": "valid", "warnings": "valid with warnings", "invalid": "invalid", None: "-"}


class _RunsGroup(TyperGroup):
    """``runs show 7`` is the subcommand, not the runs of a project called ``show``; ``runs churn --limit 5``
    takes its options after the project, as a plain command does."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = self._first_word(ctx, args)
        if first is not None and args[first] in self.commands:  # `runs --json show 7` is `runs show 7 --json`
            args = args[first:] + args[:first]
        if args and args[0] in self.commands:
            rest = super().parse_args(ctx, ["-", *args])  # the placeholder fills PROJECT; cleared below
            ctx.params["project"] = None
            return rest
        ctx.allow_interspersed_args = True
        return super().parse_args(ctx, args)

    def _first_word(self, ctx: click.Context, args: list[str]) -> int | None:
        """The index of the first argument that is neither an option nor an option's value."""
        valued = {
            name
            for param in self.get_params(ctx)
            if isinstance(param, click.Option) and not param.is_flag
            for name in param.opts
        }
        index = 0
        while index < len(args):
            arg = args[index]
            if not arg.startswith("-"):
                return index
            index += 2 if arg in valued else 1
        return None


runs_app = typer.Typer(
    cls=_RunsGroup,
    help="Pipeline runs (training, batch scoring ...): status, rows, timings and the validation of their input.",
    invoke_without_command=True,
)


@runs_app.callback()
def runs(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Argument(help="Only this project's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Recent pipeline runs, newest first, with the verdict on their input data (`runs show RUN`: the record)."""
    if ctx.invoked_subcommand is not None:
        return
    with client(url, token) as hm:
        items = hm.runs(project, limit)
    if json:
        return output.print_json(items)
    if not items:
        output.console.print("No runs yet." + ("" if project else " Train a project: harbourmaster train PROJECT_DIR"))
        return
    output.table(
        None,
        ["run", "project", "kind", "env", "status", "validation", "started", "seconds", "rows in", "rows out", "error"],
        [
            (
                r.id,
                r.project,
                r.kind,
                r.environment or "-",
                r.status,
                VALIDATION_WORDS.get(r.validation, r.validation),
                output.when(r.started_at),
                f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "-",
                _count(r.rows_in),
                _count(r.rows_out),
                escape((r.error or "")[:60]),
            )
            for r in items
        ],
    )


@runs_app.command("show")
def show(
    run_id: Annotated[int, typer.Argument(help="The run's number (see harbourmaster runs).", min=1)],
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """One run's whole record: steps with rows in and out and durations, validation findings, error."""
    with client(url, token) as hm:
        run = hm.run(run_id)
    if json:
        return output.print_json(run)
    out = output.console
    where = f" in {run.environment}" if run.environment else ""
    version = f" v{run.version_number}" if run.version_number else ""
    out.print(f"run {run.id}: {run.kind} of {run.project}{version}{where}: {run.status}", markup=False)
    seconds = f"{run.duration_seconds:.2f}s" if run.duration_seconds is not None else "still running"
    out.print(
        f"  started {output.when(run.started_at)}, finished {output.when(run.finished_at)} ({seconds}) by "
        f"{run.created_by}",
        markup=False,
    )
    out.print(f"  rows in {_count(run.rows_in)}, rows out {_count(run.rows_out)}", markup=False)
    for key in ("input", "output", "source"):
        if run.details.get(key):
            out.print(f"  {key}: {run.details[key]}", markup=False)
    if run.error:
        out.print(f"  error: {run.error}", markup=False)
    if run.steps:
        output.table(
            "steps",
            ["step", "status", "rows in", "rows out", "seconds", "note"],
            [
                (
                    step.name,
                    step.status,
                    _count(step.rows_in),
                    _count(step.rows_out),
                    f"{step.duration_seconds:.3f}",
                    escape(step.note or ""),
                )
                for step in run.steps
            ],
        )
    report = run.validation_report
    if report is None:
        out.print("  validation: not checked (a run recorded before runs were validated, or not a data run)")
        return
    aside = f"; {report.rows_set_aside} row(s) set aside" if report.rows_set_aside else ""
    against = f" against {report.against}" if report.against else ""
    out.print(
        f"  validation{against}: {VALIDATION_WORDS.get(report.status, report.status)} ({report.rows} rows{aside})",
        markup=False,
    )
    if report.findings:
        output.table(
            "findings",
            ["severity", "check", "column", "count", "share", "finding"],
            [
                (
                    f.severity,
                    f.check,
                    escape(f.column or "-"),
                    f.count,
                    f"{f.share:.1%}" if f.share is not None else "-",
                    escape(f.message),
                )
                for f in report.findings
            ],
        )


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
