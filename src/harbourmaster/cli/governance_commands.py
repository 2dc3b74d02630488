"""CLI for governance: environments, promotion, sign-offs, history, users, tokens, audit."""

from __future__ import annotations

import json as jsonlib
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from harbourmaster.cli import output
from harbourmaster.cli.common import (
    JsonOption,
    TokenOption,
    UrlOption,
    client,
    parse_duration,
    read_json_object,
)
from harbourmaster.core.duties import human_duration
from harbourmaster.core.permissions import ROLE_NAMES, permission_table_markdown
from harbourmaster.errors import InvalidInputError

users_app = typer.Typer(help="Users, their roles and per-environment grants (admins).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: shown once, stored hashed, expiring and revocable.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log (auditors and admins).", no_args_is_help=True)
environments_app = typer.Typer(help="The ordered environments and their gates, sign-offs and SLA.")


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError(f"{text!r} is not a time", "use ISO 8601, e.g. 2026-11-27T14:00:00+00:00") from exc
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment


def register(app: typer.Typer) -> None:
    """Add the governance commands to the main CLI."""
    app.command()(promote)
    app.command()(approve)
    app.command()(reject)
    app.command()(approvals)
    app.command()(history)
    app.command()(whoami)
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(audit_app, name="audit")
    app.add_typer(environments_app, name="environments")


def promote(
    project: str,
    version: str,
    to: Annotated[str, typer.Option("--to", help="Target environment (the next one).")],
    canary: Annotated[float | None, typer.Option(help="Enter as a canary challenger with this % of traffic.")] = None,
    shadow: Annotated[bool, typer.Option(help="Enter as a shadow challenger.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Only show the gates' verdicts.")] = False,
    strategy: Annotated[
        str, typer.Option(help="immediate, blue-green (old champion kept warm as failover), canary or shadow.")
    ] = "immediate",
    steps: Annotated[str | None, typer.Option(help="Canary weights in percent (default 5,25,50,100).")] = None,
    bake: Annotated[str | None, typer.Option(help="Bake time per canary step, e.g. 10m (default 10m).")] = None,
    shadow_for: Annotated[str | None, typer.Option(help="How long a shadow mirrors traffic (default 30m).")] = None,
    decide: Annotated[str, typer.Option(help="After a shadow: auto (complete if it agrees) or manual.")] = "auto",
    sticky_key: Annotated[str | None, typer.Option(help="Record field pinning a caller to one canary side.")] = None,
    min_requests: Annotated[
        int | None, typer.Option(help="Challenger requests a step needs before a verdict (default 50).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Move a version into the next environment, through every gate there.

    With --check nothing moves: the gates' verdicts are printed, and the exit code is 1 when one fails
    (so a script or CI step can stop there). With --strategy canary or shadow the gates are passed
    first, then the control plane's rollout controller carries the rollout on (harbourmaster rollouts).
    """
    with client(url, token) as hm:
        if check:
            verdicts = hm.check_promotion(project, version, to)
            if json:
                output.print_json(verdicts)
            else:
                _print_gates(verdicts)
            failed = [verdict.gate for verdict in verdicts if not verdict.passed]
            if failed:
                if not json:
                    output.fail(
                        f"v{version} would not enter {to}: {', '.join(failed)} failed",
                        "fix what each failing gate names, then check again",
                    )
                raise typer.Exit(1)
            return
        challenger = None
        if canary is not None or shadow:
            challenger = {"mode": "shadow" if shadow else "canary", "weight": canary or 0.0}
        rollout = None
        if strategy != "immediate":
            from harbourmaster.core.rollout_rules import rollout_plan

            rollout = {
                "strategy": strategy,
                "steps": [float(s) for s in rollout_plan(strategy, steps=steps)["steps"]] or None,
                "bake": bake,
                "shadow_for": shadow_for,
                "sticky_key": sticky_key,
                "decide": decide,
                "min_requests": min_requests,
            }  # checked here first, so a typo is named before anything is sent
            rollout_plan(**rollout)
        result = hm.promote(project, version, to, challenger=challenger, rollout=rollout)
    if json:
        return output.print_json(result)
    _print_gates(result.gates)
    role = f" as {challenger['mode']} challenger" if challenger else ""
    if result.rollout_id is not None:
        output.console.print(
            f"[green]Promoted {project} v{result.version} to {result.to_environment}: {strategy} rollout "
            f"{result.rollout_id} started[/] (follow it: harbourmaster rollouts show {result.rollout_id})"
        )
        return
    output.console.print(f"[green]Promoted {project} v{result.version} to {result.to_environment}{role}.[/]")


def _print_gates(verdicts: list) -> None:
    for verdict in verdicts:
        mark = "[green]pass[/]" if verdict.passed else "[red]FAIL[/]"
        output.console.print(f"  {mark}  {verdict.gate}: {verdict.reason}")
        if not verdict.passed and verdict.fix:
            output.console.print(f"        fix: {verdict.fix}")


def approve(
    project: str,
    version: str,
    env: Annotated[str, typer.Option("--env", help="The environment the sign-off is for.")],
    comment: Annotated[str, typer.Option(help="Why you approve.")] = "",
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Sign off a version for an environment (never your own version)."""
    with client(url, token) as hm:
        result = hm.approve(project, version, env, comment)
    if json:
        return output.print_json(result)
    expires = f", valid until {output.when(result.expires_at)}" if result.expires_at else ""
    output.console.print(f"{result.actor} approved {project} v{result.version} for {env}{expires}.")


def reject(
    project: str,
    version: str,
    env: Annotated[str, typer.Option("--env", help="The environment the rejection is for.")],
    comment: Annotated[str, typer.Option(help="Why you reject.")] = "",
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Reject a version for an environment: it cannot be promoted there."""
    with client(url, token) as hm:
        result = hm.reject(project, version, env, comment)
    if json:
        return output.print_json(result)
    output.console.print(f"{result.actor} rejected {project} v{result.version} for {env}.")


def approvals(
    project: Annotated[str | None, typer.Argument(help="Only this project.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """What waits for whose sign-off, and the decisions made so far."""
    with client(url, token) as hm:
        waiting = hm.pending_approvals(project)
        decided = hm.approvals(project)
    if json:
        return output.print_json({"pending": waiting, "decisions": decided})
    if waiting:
        output.table(
            "waiting",
            ["project", "version", "for", "author", "sign-offs", "still needs"],
            [
                (w.project, w.version, w.environment, w.author, ", ".join(w.approvals) or "-", w.missing or "complete")
                for w in waiting
            ],
        )
    else:
        output.console.print("Nothing waits for a sign-off.")
    if decided:
        output.table(
            "decisions",
            ["when", "project", "version", "env", "decision", "by", "expires", "comment"],
            [
                (
                    output.when(a.created_at),
                    a.project,
                    a.version,
                    a.environment,
                    a.decision,
                    a.actor,
                    output.when(a.expires_at),
                    a.comment,
                )
                for a in decided
            ],
        )


def history(
    project: str,
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Which version served at this time (ISO 8601).")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Which version served when, who put it there and who approved it."""
    with client(url, token) as hm:
        entries = hm.history(project, env, parse_time(at) if at else None)
    if json:
        return output.print_json(entries)
    if not entries:
        output.console.print(f"{project} has not served{' in ' + env if env else ''}{' at ' + at if at else ''}.")
        return
    output.table(
        f"{project}{' in ' + env if env else ''}{' at ' + at if at else ''}",
        ["since", "env", "version", "action", "by", "approved by", "revision"],
        [
            (
                output.when(e.at),
                e.environment,
                e.version or "-",
                e.action,
                e.actor,
                ", ".join(e.approved_by) or "-",
                e.revision,
            )
            for e in entries
        ],
    )


def whoami(url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """Who the CLI acts as, with roles and grants."""
    with client(url, token) as hm:
        me = hm.whoami()
    if json:
        return output.print_json(me)
    grants = ", ".join(me["grants"]) or "none"
    output.console.print(f"{me['name']}: roles {', '.join(me['roles']) or 'none'}; grants {grants}")
    output.console.print(me.get("note") or f"through the control plane at {hm.url}")


# -- users ------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[list[str], typer.Option("--role", help=f"One of: {', '.join(ROLE_NAMES)}. Repeatable.")],
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Create a user with one or more roles."""
    with client(url, token) as hm:
        user = hm.create_user(name, role)
    if json:
        return output.print_json(user)
    output.console.print(f"Created {user.name} with roles {', '.join(user.roles)}.")


@users_app.command("list")
def users_list(url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """List users, roles and grants."""
    with client(url, token) as hm:
        users = hm.users()
    if json:
        return output.print_json(users)
    output.table(
        None,
        ["user", "roles", "grants", "disabled", "created by"],
        [
            (u.name, ", ".join(u.roles), ", ".join(u.grants) or "-", "yes" if u.disabled else "", u.created_by)
            for u in users
        ],
    )


@users_app.command("roles")
def users_roles(
    name: str,
    role: Annotated[list[str], typer.Option("--role", help="The user's new roles. Repeatable.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Replace a user's roles."""
    with client(url, token) as hm:
        user = hm.set_roles(name, role)
    output.console.print(f"{user.name} now has roles {', '.join(user.roles)}.")


@users_app.command("grant")
def users_grant(
    name: str,
    env: Annotated[str, typer.Option("--env")],
    permission: Annotated[str, typer.Option("--permission", help="deploy or predict")] = "deploy",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Let a user deploy to (or predict in) a guarded environment."""
    with client(url, token) as hm:
        user = hm.grant(name, env, permission)
    output.console.print(f"{user.name} grants: {', '.join(user.grants)}")


@users_app.command("revoke-grant")
def users_revoke_grant(
    name: str,
    env: Annotated[str, typer.Option("--env")],
    permission: Annotated[str, typer.Option("--permission")] = "deploy",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Take a grant away."""
    with client(url, token) as hm:
        user = hm.revoke_grant(name, env, permission)
    output.console.print(f"{user.name} grants: {', '.join(user.grants) or 'none'}")


@users_app.command("disable")
def users_disable(name: str, url: UrlOption = None, token: TokenOption = None) -> None:
    """Disable a user: their tokens stop working."""
    with client(url, token) as hm:
        hm.set_disabled(name, True)
    output.console.print(f"{name} is disabled.")


@users_app.command("enable")
def users_enable(name: str, url: UrlOption = None, token: TokenOption = None) -> None:
    """Enable a disabled user again."""
    with client(url, token) as hm:
        hm.set_disabled(name, False)
    output.console.print(f"{name} is enabled.")


@users_app.command("requests")
def users_requests(
    all_: Annotated[bool, typer.Option("--all", help="Decided and expired requests too.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Sensitive steps (approvers, prod grants, tokens for others) waiting for a second admin."""
    with client(url, token) as hm:
        items = hm.duty_requests("all" if all_ else "pending")
    if json:
        return output.print_json(items)
    output.table(
        None,
        ["request", "step", "asked by", "asked", "expires", "status", "decided by"],
        [
            (
                r.id,
                r.summary,
                r.requested_by,
                output.when(r.requested_at),
                output.when(r.expires_at),
                r.status,
                r.decided_by or "-",
            )
            for r in items
        ],
    )


def _decide(request_id: int, confirm: bool, url: str | None, token: str | None, json: bool) -> None:
    with client(url, token) as hm:
        decision = hm.decide_request(request_id, confirm)
    if json:
        return output.print_json(decision)
    request = decision.request
    # When the step minted a secret, stdout carries it alone (as `tokens create`), for `$(...)`.
    minted = decision.token is not None or decision.credential is not None
    said = output.errors if minted else output.console
    said.print(f"Request {request.id} ({request.summary}, asked by {request.requested_by}): {request.status}.")
    if decision.token is not None:
        output.errors.print(f"Token {decision.token.id} for {decision.token.user}. Shown only now; hand it over:")
        print(decision.token.token)
    if decision.credential is not None:
        credential = decision.credential
        output.errors.print(
            f"Replica credential {credential.id} for {credential.environment}. Shown only now; give it to the "
            "replicas (serve --url with HARBOURMASTER_TOKEN):"
        )
        print(credential.secret)


@users_app.command("confirm")
def users_confirm(request_id: int, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """Confirm and carry out another admin's pending step (never your own, never one for you)."""
    _decide(request_id, True, url, token, json)


@users_app.command("reject-request")
def users_reject_request(
    request_id: int, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False
) -> None:
    """Refuse another admin's pending step."""
    _decide(request_id, False, url, token, json)


@users_app.command("duties")
def users_duties(
    mode: Annotated[
        str | None, typer.Option("--mode", help="two-admins (default) or not-for-self; a second admin confirms.")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Show (or change) how separation of duties works, and the token lifetime limits per role."""
    with client(url, token) as hm:
        settings = hm.set_duty_mode(mode) if mode else hm.duty_settings()
    if json:
        return output.print_json(settings)
    output.console.print(f"Separation of duties: {settings.mode}")
    limits = settings.token_max_lifetime_seconds
    for role in ROLE_NAMES:
        limit = limits.get(role)
        output.console.print(f"  {role}: tokens live at most {human_duration(limit) if limit else 'without limit'}")


@users_app.command("roles-table")
def users_roles_table() -> None:
    """Print the permission table (which role may do what)."""
    print(permission_table_markdown())


# -- tokens -----------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str | None, typer.Option("--user", help="For this user (admins); default yourself.")] = None,
    name: Annotated[str, typer.Option("--name", help="A label, e.g. the machine that uses it.")] = "default",
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="Lifetime, e.g. 30m, 12h, 30d, 2w.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create a token; it is printed once and only its hash is kept."""
    with client(url, token) as hm:
        issued = hm.create_token(user, name, parse_duration(expires_in) if expires_in else None)
    expiry = f", expires {output.when(issued.expires_at)}" if issued.expires_at else ""
    output.errors.print(f"Token {issued.id} for {issued.user}{expiry}. Shown only now:")
    print(issued.secret)


@tokens_app.command("policy")
def tokens_policy(
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLE_NAMES)}.")],
    max_lifetime: Annotated[str | None, typer.Option("--max-lifetime", help="e.g. 12h, 30d")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the limit.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Set the longest a token of a user with ROLE may live (admins); older tokens stop working."""
    if (max_lifetime is None) == (not clear):
        raise InvalidInputError("give either --max-lifetime or --clear", "e.g. --role operator --max-lifetime 30d")
    with client(url, token) as hm:
        settings = hm.set_token_limit(role, None if clear else parse_duration(max_lifetime or ""))
    limit = settings.token_max_lifetime_seconds.get(role)
    output.console.print(
        f"Tokens of {role}s live at most {human_duration(limit)}." if limit else f"No limit for {role}s."
    )


@tokens_app.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Option("--user")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """List tokens (never their secrets)."""
    with client(url, token) as hm:
        tokens = hm.tokens(user)
    if json:
        return output.print_json(tokens)
    output.table(
        None,
        ["id", "user", "name", "starts", "created", "expires", "revoked", "last used"],
        [
            (
                t.id,
                t.user,
                t.name,
                t.prefix + "...",
                output.when(t.created_at),
                output.when(t.expires_at),
                output.when(t.revoked_at),
                output.when(t.last_used_at),
            )
            for t in tokens
        ],
    )


@tokens_app.command("revoke")
def tokens_revoke(token_id: int, url: UrlOption = None, token: TokenOption = None) -> None:
    """Revoke a token now."""
    with client(url, token) as hm:
        info = hm.revoke_token(token_id)
    output.console.print(f"Token {info.id} of {info.user} revoked at {output.when(info.revoked_at)}.")


# -- audit ------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """Check chain, signatures and anchors; names every altered, removed, forged or unbacked entry."""
    from harbourmaster.cli.progress import progress

    with client(url, token) as hm, progress("Verifying the audit log", unit="entries") as report_to:
        report = hm.audit_verify(report_to)
    if json:
        output.print_json(report)
    elif report["ok"]:
        anchored = f", anchored up to #{report['anchored_seq']}" if report.get("anchored_seq") else ""
        output.console.print(
            f"[green]Audit log intact:[/] {report['checked']} entries, signed, head #{report['head_seq']} "
            f"sha256:{report['head_hash'][:16]}{anchored}"
        )
    else:
        problems = report.get("problems") or [report["problem"]]
        output.fail(
            f"audit log broken: {problems[0]}",
            "restore the audit table from a backup, compare it with the anchors, and investigate",
        )
        for extra in problems[1:]:
            output.errors.print(f"also: {extra}", markup=False, highlight=False, soft_wrap=True)
    if not report["ok"]:
        raise typer.Exit(1)


@audit_app.command("public-key")
def audit_public_key(
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """The control plane's public key (PEM): hand it out with exports, to verify them offline."""
    with client(url, token) as hm:
        pem = hm.audit_public_key()
    if out:
        out.write_text(pem)
        output.console.print(f"Wrote {out}")
    else:
        print(pem, end="")


@audit_app.command("log")
def audit_log(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 30,
    since: Annotated[str | None, typer.Option(help="ISO 8601 time")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """The latest audit entries."""
    with client(url, token) as hm:
        entries = hm.audit_events(parse_time(since) if since else None, limit)
    if json:
        return output.print_json(entries)
    output.table(
        None,
        ["#", "at", "actor", "action", "target", "env", "outcome"],
        [
            (e["seq"], e["at"][:19], e["actor"], e["action"], e["target"], e["environment"] or "-", e["outcome"])
            for e in entries
        ],
    )


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(help="ISO 8601 time")] = None,
    format: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Export entries with the chain head, for a regulator; verify it with `audit verify-export`."""
    from harbourmaster.cli.progress import progress

    with client(url, token) as hm, progress("Exporting the audit log", unit="entries") as report:
        text = hm.audit_export(parse_time(since) if since else None, format, report)
        if out:
            report.stage(f"saving {out}")
            out.write_text(text)
    if out:
        output.console.print(f"Wrote {out}")
    else:
        print(text, end="")


@audit_app.command("verify-export")
def audit_verify_export(
    path: Path,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="The control plane's public key (`audit public-key`): checks signatures."),
    ] = None,
) -> None:
    """Verify an exported file on its own, offline (no database, no server needed)."""
    from harbourmaster.core.audit_chain import parse_public_key
    from harbourmaster.services.audit import verify_export

    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist", "give the file written by harbourmaster audit export")
    key = None
    if public_key is not None:
        if not public_key.is_file():
            raise InvalidInputError(f"{public_key} does not exist", "write it with: harbourmaster audit public-key -o")
        try:
            key = parse_public_key(public_key.read_bytes())
        except ValueError as exc:
            raise InvalidInputError(
                f"{public_key} is not an Ed25519 public key: {exc}", "write it with: harbourmaster audit public-key -o"
            ) from exc
    try:
        report = verify_export(path.read_text(), key)
    except (ValueError, KeyError, TypeError, AttributeError, jsonlib.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path} is not an audit export: {exc}", "export it again") from exc
    if not report.ok:
        output.fail(f"export broken: {report.problem}", "ask for a fresh export and compare chain heads")
        raise typer.Exit(1)
    output.console.print(f"[green]Export intact:[/] {report.checked} entries chain to sha256:{report.head_hash[:16]}")
    if key is None:
        output.errors.print(
            "warning: signatures not checked, so whoever made this file could have rewritten it; "
            "give --public-key to check them"
        )
    else:
        output.console.print("Entries, anchors and trailer are signed by the key given.")


# -- environments --------------------------------------------------------------------------


@environments_app.callback(invoke_without_command=True)
def environments_list(
    ctx: typer.Context, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False
) -> None:
    """List the environments in order with their gates, sign-offs and SLA."""
    if ctx.invoked_subcommand:
        return
    with client(url, token) as hm:
        environments = hm.environments()
    if json:
        return output.print_json(environments)
    output.table(
        None,
        ["#", "environment", "guarded", "gates", "sign-offs", "SLA"],
        [
            (
                env.position,
                env.name,
                "yes" if env.config.guarded else "",
                ", ".join(g.kind + (f"({g.options})" if g.options else "") for g in env.config.gates) or "-",
                ", ".join(f"{r.count} x {r.role}" for r in env.config.approvals.required) or "-",
                ", ".join(f"{k}={v}" for k, v in env.config.sla.model_dump(exclude_none=True).items()) or "-",
            )
            for env in environments
        ],
    )


@environments_app.command("configure")
def environments_configure(
    name: str,
    config_file: Annotated[Path, typer.Option("--file", help="JSON file with the environment's configuration.")],
    position: Annotated[int | None, typer.Option(min=0, help="Place in the order (0 = first).")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create or replace an environment's configuration (admins; audited)."""
    config = read_json_object(config_file, "the environment's configuration (see docs/governance.md)")
    with client(url, token) as hm:
        env = hm.configure_environment(name, config, position)
    output.console.print(f"Environment {env.name} (position {env.position}) configured.")
