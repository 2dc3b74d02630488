"""Serving commands: desired state (deploy, challenger, fallback, rollback), replicas, scoring, the prediction log.

Every command works embedded (HARBOURMASTER_HOME, the sandbox) or against a control-plane server with
``--url/--token``. ``serve`` and ``score`` with ``--url`` are data-plane processes: they hold a replica
credential for one environment (``harbourmaster replica-tokens create``) and never open a database or an
artifact store; ``replicas`` and ``predictions`` with ``--url`` read through the API with a person's token.
"""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Any

import typer

from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, announce_store, client

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Environment (dev, test, prod ...).")]


def _platform() -> Any:
    from harbourmaster.services.sandbox import open_embedded

    return open_embedded(announce_store(), purpose="an embedded data-plane command")[0]


def _actor() -> Any:
    from harbourmaster.services.actors import Actor

    return Actor.local_owner()


def _version(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _show_state(state: Any, json: bool) -> None:
    if json:
        return output.print_json(state)
    champion = f"v{state.champion.number}" if state.champion else "-"
    challenger = "-"
    if state.challenger:
        c = state.challenger
        challenger = f"v{c.version.number} {c.mode}" + (f" {c.weight:g}%" if c.mode == "canary" else "")
    failover = f"v{state.failover.number}" if state.failover else "-"
    output.console.print(
        f"{state.project} in {state.environment}: champion {champion}, challenger {challenger}, "
        f"failover {failover}, revision {state.revision} (replicas pick it up within seconds)"
    )


def deploy(
    project: str,
    version: str,
    env: EnvOption = "dev",
    unknown_fields: Annotated[str | None, typer.Option(help="reject or ignore unknown input fields.")] = None,
    latency_budget_ms: Annotated[float | None, typer.Option(help="Fall back when the model is slower.")] = None,
    microbatch: Annotated[bool | None, typer.Option(help="Adaptive micro-batching.")] = None,
    max_batch: Annotated[int | None, typer.Option(help="Micro-batching: most rows in one predict call.")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="Micro-batching: longest wait for company.")] = None,
    humility: Annotated[bool | None, typer.Option(help="Skip the model on inputs outside the training range.")] = None,
    humility_margin: Annotated[float | None, typer.Option(help="Fraction of the range allowed beyond it.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Record VERSION as the champion of PROJECT in an environment (and optional serving options).

    In the first environment (dev) any version can be deployed; in a later one the version must have
    been promoted there first (harbourmaster promote). Serving options are merged into the current ones.
    """
    with client(url, token) as hm:
        state = hm.deploy(project, _version(version), env)
        state = _apply_options(
            hm,
            state,
            unknown_fields,
            latency_budget_ms,
            (microbatch, max_batch, max_wait_ms),
            humility,
            humility_margin,
        )
    _show_state(state, json)


def _apply_options(
    hm: Any,
    state: Any,
    unknown_fields: str | None,
    latency_budget_ms: float | None,
    microbatch: tuple[bool | None, int | None, float | None],
    humility: bool | None,
    humility_margin: float | None,
) -> Any:
    """Merge the options given on the command line into the deployment's current ones (Client.set_options)."""
    changes: dict[str, Any] = {}
    if unknown_fields is not None:
        changes["unknown_fields"] = unknown_fields
    if latency_budget_ms is not None:
        changes["latency_budget_ms"] = latency_budget_ms
    options = dict(state.options)
    batching = {
        key: value
        for key, value in zip(("enabled", "max_batch", "max_wait_ms"), microbatch, strict=True)
        if value is not None
    }
    if batching:
        changes["microbatch"] = {**options.get("microbatch", {}), **batching}
    if humility is not None or humility_margin is not None:
        current = dict(options.get("humility", {}))
        if humility is not None:
            current["enabled"] = humility
        if humility_margin is not None:
            current["margin"] = humility_margin
        changes["humility"] = current
    if changes:
        state = hm.set_options(state.project, state.environment, {**options, **changes})
    return state


def challenger(
    project: str,
    version: Annotated[str | None, typer.Argument(help="Challenger version; omit with --clear.")] = None,
    env: EnvOption = "dev",
    mode: Annotated[str, typer.Option(help="canary or shadow.")] = "canary",
    weight: Annotated[float, typer.Option(help="Canary share of traffic, percent.")] = 10.0,
    sticky_key: Annotated[str | None, typer.Option(help="Record field pinning a caller to one side.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the challenger.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Set (or --clear) a canary or shadow challenger."""
    if not clear and version is None:
        raise typer.BadParameter("give a VERSION, or --clear")
    with client(url, token) as hm:
        if clear:
            state = hm.clear_challenger(project, env)
        else:
            state = hm.set_challenger(project, env, _version(version), mode=mode, weight=weight, sticky_key=sticky_key)
    _show_state(state, json)


def fallback(
    project: str,
    env: EnvOption = "dev",
    failover: Annotated[str | None, typer.Option(help="Failover version.")] = None,
    rules: Annotated[Path | None, typer.Option(help="JSON file: {rules: [...], default: ..., function: ...}.")] = None,
    default: Annotated[str | None, typer.Option(help="Constant answer (JSON) when everything else fails.")] = None,
    function: Annotated[str | None, typer.Option(help="module:function in the project code.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Set the fallback chain: a failover version, then rules (table, constant or project function)."""
    config: dict[str, Any] = jsonlib.loads(rules.read_text()) if rules else {}
    if default is not None:
        config["default"] = jsonlib.loads(default)
    if function is not None:
        config["function"] = function
    with client(url, token) as hm:
        state = hm.set_fallback(project, env, failover=_version(failover) if failover else None, fallback=config)
    _show_state(state, json)


def rollback(
    project: str,
    env: EnvOption = "dev",
    to: Annotated[str | None, typer.Option("--to", help="Version to roll back to (default: the previous).")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Put the previous champion back, with no restart."""
    with client(url, token) as hm:
        state = hm.rollback(project, env, _version(to) if to else None)
    _show_state(state, json)


def deployments(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """List desired states."""
    with client(url, token) as hm:
        items = hm.deployments(env, project)
    if json:
        return output.print_json(items)
    output.table(
        None,
        ["project", "env", "champion", "challenger", "failover", "revision", "updated by", "updated"],
        [
            (
                s.project,
                s.environment,
                f"v{s.champion.number}" if s.champion else "-",
                f"v{s.challenger.version.number} {s.challenger.mode}" if s.challenger else "-",
                f"v{s.failover.number}" if s.failover else "-",
                s.revision,
                s.updated_by,
                output.when(s.updated_at),
            )
            for s in items
        ],
    )


def serve(
    env: EnvOption = "dev",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8800,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (each one a replica).")] = 1,
    url: UrlOption = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="HARBOURMASTER_TOKEN", help="Replica credential for --url.", show_default=False),
    ] = None,
) -> None:
    """Start a serving replica for one environment (SIGTERM drains and flushes the prediction log).

    With --url (production) the replica reaches state only through that control plane with a replica
    credential (harbourmaster replica-tokens create --env ENV): desired state, bundles (verified and cached
    on local disk, so it keeps serving while the control plane is away), heartbeats and the prediction log.
    It never opens a database or an artifact store; HARBOURMASTER_DATABASE_URL and HARBOURMASTER_ARTIFACTS_URL
    are ignored and removed from its environment. Without --url it serves the embedded store (the sandbox).
    """
    from harbourmaster.serving.server import drop_store_credentials
    from harbourmaster.serving.server import serve as run_server

    if url:
        dropped = drop_store_credentials()
        if dropped:
            output.errors.print(
                f"warning: {', '.join(dropped)} ignored: a replica with --url never opens the store; "
                "do not give replicas store credentials (model code runs in this process)"
            )
        if not token:
            raise typer.BadParameter("--url needs a replica credential: --token or HARBOURMASTER_TOKEN")
    else:
        from harbourmaster.services.sandbox import check_store_for

        check_store_for(
            announce_store(), "a serving replica started embedded"
        )  # a shared store's replicas use the control plane
    run_server(env, host, port, workers, url=url, token=token)


def score(
    project: str,
    env: EnvOption = "dev",
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or Parquet file.")] = Path("input.csv"),
    output_path: Annotated[Path, typer.Option("--output", "-o", help="CSV or Parquet file.")] = Path("scored.csv"),
    url: UrlOption = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="HARBOURMASTER_TOKEN", help="Replica credential for --url.", show_default=False),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Score a file with the environment's champion (same bundle and validation), recorded as a run.

    With --url this is a data-plane job holding a replica credential of ENV: the bundle comes from the
    control plane (verified), the scoring runs here, and the control plane records the run.
    """
    if url:
        from harbourmaster.serving.batch import score_remote
        from harbourmaster.serving.control_plane import RemoteControlPlane

        control_plane = RemoteControlPlane(url, token, env)
        try:
            run = score_remote(control_plane, project, input, output_path)
        finally:
            control_plane.close()
    else:
        run = _platform().scoring.score(_actor(), project, env, input, output_path)
    if json:
        return output.print_json(run)
    if run.status != "succeeded":
        output.fail(f"scoring run {run.id} failed: {run.error}")
        raise typer.Exit(1)
    output.console.print(f"run {run.id}: scored {run.rows_out} rows with v{run.version_number} into {output_path}")


def replicas(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    all: Annotated[bool, typer.Option("--all", help="Include stopped replicas.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Serving replicas and their heartbeats."""
    with client(url, token) as hm:
        items = hm.replicas(env, include_stopped=all)
    if json:
        return output.print_json(items)
    output.table(
        None,
        ["replica", "env", "status", "address", "loaded", "refused", "cpu %", "memory MB", "last seen"],
        [
            (
                r.id,
                r.environment,
                r.status,
                r.address,
                ", ".join(f"{p} v{v.get('champion', {}).get('version')}" for p, v in r.loaded.items()) or "-",
                _refused(r.details.get("refused") or {}),
                r.details.get("cpu_percent", "-"),
                round(r.details.get("memory_bytes", 0) / 1e6),
                output.when(r.last_seen),
            )
            for r in items
        ],
    )


def _refused(refused: dict[str, Any]) -> str:
    """``project rREVISION`` per desired state the replica refused (older replicas sent only the error)."""
    return ", ".join(f"{p} r{f['revision']}" if isinstance(f, dict) else p for p, f in refused.items()) or "-"


def predictions(
    project: str,
    env: EnvOption = "dev",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Rows to show.")] = 20,
    sql: Annotated[
        str | None, typer.Option(help="DuckDB SQL over the views predictions and feedback (embedded only).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """The prediction log of a project: the newest rows and the count (reads of a guarded one are audited)."""
    if sql:
        if url:
            raise typer.BadParameter("--sql runs embedded only (no SQL runs on the control plane); use --limit/--json")
        frame, count = _platform().predictions.read(_actor(), project, env, limit=limit, sql=sql)
        rows = jsonlib.loads(frame.to_json(orient="records", date_format="iso"))
    else:
        with client(url, token) as hm:
            answer = hm.predictions(project, env, limit)
        rows, count = answer["rows"], answer["count"]
    if json:
        return output.print_json(rows)
    if count is not None:
        output.console.print(f"{count} logged prediction rows for {project} in {env}")
    columns = list(rows[0]) if rows else []
    output.table(None, columns, [tuple(str(row.get(c)) for c in columns) for row in rows])


replica_tokens = typer.Typer(
    help="Replica credentials: tokens for the replicas and batch scorers of one environment (admins).",
    no_args_is_help=True,
)


@replica_tokens.command("create")
def create_replica_token(
    env: EnvOption,
    name: Annotated[str, typer.Option(help="A name to recognise it by (e.g. the replica group).")] = "replica",
    expires_in_days: Annotated[float | None, typer.Option(min=0.001, help="Lifetime in days.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Mint a replica credential for ENV; it is shown once (give it to `serve --url` as HARBOURMASTER_TOKEN)."""
    with client(url, token) as hm:
        issued = hm.create_replica_credential(env, name, expires_in_days)
    if json:
        return output.print_json(
            {"id": issued.id, "environment": issued.environment, "name": issued.name, "token": issued.secret}
        )
    # The secret alone on stdout (as `tokens create`), so `$(harbourmaster replica-tokens create ...)` takes it.
    output.errors.print(f"replica credential {issued.id} for {issued.environment} ({issued.name}); shown once:")
    print(issued.secret)


@replica_tokens.command("list")
def list_replica_tokens(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Replica credentials (never the tokens themselves)."""
    with client(url, token) as hm:
        items = hm.replica_credentials(env)
    if json:
        return output.print_json(items)
    output.table(
        None,
        ["id", "env", "name", "prefix", "created by", "expires", "revoked", "last used"],
        [
            (
                c.id,
                c.environment,
                c.name,
                c.prefix,
                c.created_by,
                output.when(c.expires_at) if c.expires_at else "-",
                output.when(c.revoked_at) if c.revoked_at else "-",
                output.when(c.last_used_at) if c.last_used_at else "-",
            )
            for c in items
        ],
    )


@replica_tokens.command("revoke")
def revoke_replica_token(
    credential_id: int, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False
) -> None:
    """Revoke a replica credential (its replicas keep serving their cached state, but get nothing new)."""
    with client(url, token) as hm:
        info = hm.revoke_replica_credential(credential_id)
    if json:
        return output.print_json(info)
    output.console.print(f"replica credential {info.id} for {info.environment} revoked")


def register(app: typer.Typer) -> None:
    """Add the serving commands to the ``harbourmaster`` app."""
    for command in (deploy, challenger, fallback, rollback, deployments, serve, score, replicas, predictions):
        app.command()(command)
    app.add_typer(replica_tokens, name="replica-tokens")
