"""Lifecycle cases and the worker that runs them: ``harbourmaster cases [show ID | close ID]`` and
``harbourmaster lifecycle worker``."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated

import typer

from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, client
from harbourmaster.services.cases import DEFAULT_LEASE_SECONDS, LEASE_BOUNDS, CaseInfo

cases_app = typer.Typer(help="Lifecycle cases: from the alert that opened one to the rollout that ended it.")
lifecycle_app = typer.Typer(help="The model lifecycle's automation (see docs/lifecycle.md, Automation).")


def register(app: typer.Typer) -> None:
    """Add ``cases`` and ``lifecycle`` to the ``harbourmaster`` app."""
    app.add_typer(cases_app, name="cases")
    app.add_typer(cases_app, name="case", hidden=True)  # `harbourmaster case show ID` reads well too
    app.add_typer(lifecycle_app, name="lifecycle")


@cases_app.callback(invoke_without_command=True)
def cases(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only cases not over yet.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """List lifecycle cases, newest first (or run a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    _list(project, active, url, token, json)


def _list(project: str | None, active: bool, url: str | None, token: str | None, json: bool) -> None:
    with client(url, token) as hm:
        found = hm.cases(project, active=active)
    if json:
        return output.print_json(found)
    output.table(
        "Lifecycle cases",
        ["id", "project", "env", "state", "alert", "version", "steps", "updated", "reason"],
        [
            [
                c.id,
                c.project,
                c.environment,
                c.state,
                f"{c.trigger.get('alert_id')} {c.trigger.get('rule')}",
                f"v{c.version}" if c.version else "-",
                " ".join(f"{s['step']}:{'ok' if s['status'] == 'succeeded' else 'FAILED'}" for s in c.steps) or "-",
                output.when(c.updated_at),
                (c.reason or "")[:80],
            ]
            for c in found
        ],
    )


@cases_app.command("list")
def list_cases(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only cases not over yet.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """List lifecycle cases, newest first."""
    _list(project, active, url, token, json)


@cases_app.command("show")
def show(case_id: int, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """One case: the alert that opened it, each step with what it made, and how it ended."""
    with client(url, token) as hm:
        info = hm.case(case_id)
    _print(info, json)


@cases_app.command("close")
def close(
    case_id: int,
    reason: Annotated[str, typer.Option("--reason", help="Why the case is closed (audited).")],
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Close a case that is not over (nobody will sign off, its worker died, the alert was a data bug)."""
    with client(url, token) as hm:
        info = hm.close_case(case_id, reason)
    _print(info, json)


@lifecycle_app.command("worker")
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run every case open now, then exit.")] = False,
    poll: Annotated[float, typer.Option(min=0.5, help="Seconds between looks for an open case.")] = 10.0,
    name: Annotated[str | None, typer.Option("--name", help="This worker's name on the cases it claims.")] = None,
    lease: Annotated[
        float,
        typer.Option(
            min=LEASE_BOUNDS[0],
            max=LEASE_BOUNDS[1],
            help="Seconds a claim holds unless renewed (renewed every third); a dead worker's case is reclaimed then.",
        ),
    ] = DEFAULT_LEASE_SECONDS,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Claim open lifecycle cases and run their steps: retrain on production data, evaluate against the
    champion, promote up to the test environment, load-test there, and ask for production's sign-offs.

    It runs the project's code, so run it where jobs run, with an operator's token (--url, --token); without
    --url it works on the local store.
    """
    from harbourmaster.lifecycle_worker import work

    def say(line: str) -> None:
        if not json:
            output.errors.print(line, markup=False, highlight=False)

    with client(url, token) as hm:
        ran = work(hm, once=once, poll=poll, worker=name, lease=lease, say=say)
    if json:
        return output.print_json(ran)
    if not ran:
        output.console.print("no open case")
    for info in ran:
        _print(info, False)
    return None


def _print(info: CaseInfo, json: bool) -> None:
    if json:
        return output.print_json(info)
    out = output.console
    trigger = info.trigger
    out.print(
        f"case {info.id}: {info.project} in {info.environment}: {info.state}"
        + (f" ({info.outcome})" if info.outcome else "")
        + (f": {info.reason}" if info.reason else ""),
        markup=False,
        highlight=False,
    )
    out.print(
        f"opened by alert {trigger.get('alert_id')} ({trigger.get('rule')} on {trigger.get('subject')}): "
        f"{trigger.get('summary')}",
        markup=False,
        highlight=False,
    )
    rows = [
        [
            s["step"],
            "ok" if s["status"] == "succeeded" else "FAILED",
            s.get("actor"),
            s.get("finished_at"),
            s.get("error") or ("below" if s.get("links") else "-"),
        ]
        for s in info.steps
    ]
    if info.promotion_id is not None:
        rows.append(["promotion", info.state, "", output.when(info.updated_at), f"promotion {info.promotion_id}"])
    if info.rollout_id is not None:
        rows.append(["rollout", info.outcome or "running", "", "", f"rollout {info.rollout_id}"])
    output.table("steps", ["step", "status", "by", "at", "error / links"], rows)
    # Each link whole, one a line (soft-wrapped, never cut): ids and commands are copied from here.
    for s in info.steps:
        if s.get("links"):
            out.print(f"{s['step']} links:", markup=False, highlight=False)
            for key, value in s["links"].items():
                out.print(f"  {key}: {_link(value)}", markup=False, highlight=False)
    return None


def _link(value: object) -> str:
    """A step's link as text: plain values as they are, nested ones as compact JSON (complete)."""
    if isinstance(value, dict | list):
        return jsonlib.dumps(value, default=str, separators=(", ", ": "))
    return str(value)
