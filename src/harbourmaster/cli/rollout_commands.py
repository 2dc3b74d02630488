"""CLI for progressive rollouts: ``harbourmaster rollouts`` (list, show, pause, resume, abort).

A rollout starts with ``harbourmaster promote ... --strategy canary|shadow``; the control plane's
rollout controller moves it on. ``harbourmaster rollback`` stops one at once.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, client

rollouts_app = typer.Typer(
    help="Progressive rollouts (canary steps, shadow periods): list, show, pause, resume, abort.",
    invoke_without_command=True,
)
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (kept in the rollout and the audit log).")]


def register(app: typer.Typer) -> None:
    app.add_typer(rollouts_app, name="rollouts")


@rollouts_app.callback()
def rollouts(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only running or paused rollouts.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """List rollouts, newest first (or run a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    with client(url, token) as hm:
        found = hm.rollouts(project, active=active)
    if json:
        return output.print_json(found)
    output.table(
        "Rollouts",
        ["id", "project", "env", "from", "to", "strategy", "step", "state", "updated", "reason"],
        [
            [
                r.id,
                r.project,
                r.environment,
                f"v{r.from_version}" if r.from_version else "-",
                f"v{r.to_version}",
                r.strategy,
                _step(r),
                r.state,
                output.when(r.updated_at),
                (r.reason or "")[:80],
            ]
            for r in found
        ],
    )


@rollouts_app.command("show")
def show(rollout_id: int, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """One rollout: its plan, where it stands and what happened, step by step."""
    with client(url, token) as hm:
        info = hm.rollout(rollout_id)
    _print(info, json)


@rollouts_app.command("pause")
def pause(
    rollout_id: int,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Hold a running rollout at its step (the traffic split stays)."""
    _change(rollout_id, "pause", reason, url, token, json)


@rollouts_app.command("resume")
def resume(
    rollout_id: int,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Go on with a paused rollout (a shadow waiting for a person completes)."""
    _change(rollout_id, "resume", reason, url, token, json)


@rollouts_app.command("abort")
def abort(
    rollout_id: int,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Stop a rollout: the challenger is removed, the champion stays."""
    _change(rollout_id, "abort", reason, url, token, json)


def _change(rollout_id: int, action: str, reason: str | None, url: str | None, token: str | None, json: bool) -> None:
    with client(url, token) as hm:
        info = hm.change_rollout(rollout_id, action, reason)
    _print(info, json)


def _step(info: Any) -> str:
    if info.strategy == "canary":
        return f"{info.step + 1}/{len(info.steps)} ({info.weight:g}%)" if info.weight is not None else "-"
    return "shadow"


def _print(info: Any, json: bool) -> None:
    if json:
        return output.print_json(info)
    steps = ", ".join(f"{s:g}%" for s in info.steps) or "-"
    output.console.print(
        f"rollout {info.id}: {info.project} v{info.to_version} against v{info.from_version} in {info.environment}, "
        f"{info.strategy} (steps {steps}, bake {info.bake_seconds:g} s): {info.state}, step {_step(info)}",
        markup=False,
    )
    if info.reason:
        output.console.print(f"reason: {info.reason}", markup=False)
    for event in info.events:
        output.console.print(f"  {event['at']}  {event['kind']:<11} {event['text']}", markup=False)
