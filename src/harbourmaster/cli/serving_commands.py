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
from harbourmaster.cli.common import (
    JsonOption,
    TokenOption,
    UrlOption,
    announce_store,
    client,
    json_or_text,
    parse_duration,
    read_json_object,
)
from harbourmaster.errors import InvalidInputError

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
    wait: Annotated[
        bool, typer.Option(help="Wait until the environment's replicas loaded or refused the change.")
    ] = True,
    timeout: Annotated[float, typer.Option(min=0, help="Longest wait for the replicas, seconds.")] = 60.0,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Record VERSION as the champion of PROJECT in an environment (and optional serving options).

    In the first environment (dev) any version can be deployed; in a later one the version must have
    been promoted there first (harbourmaster promote). Serving options are merged into the current ones,
    in the same change: a refused option changes nothing. Then it waits (--timeout, or --no-wait) until
    every running replica of the environment has loaded the change or refused it, and says which did what.
    """
    changes = _option_changes(
        unknown_fields, latency_budget_ms, (microbatch, max_batch, max_wait_ms), humility, humility_margin
    )
    with client(url, token) as hm:
        state = hm.deploy(project, _version(version), env, options=changes or None)
        _show_state(state, json)
        if wait:
            _await_replicas(hm, state, timeout, quiet=json)


def _option_changes(
    unknown_fields: str | None,
    latency_budget_ms: float | None,
    microbatch: tuple[bool | None, int | None, float | None],
    humility: bool | None,
    humility_margin: float | None,
) -> dict[str, Any]:
    """The serving options given on the command line (the service merges them into the current ones)."""
    changes: dict[str, Any] = {}
    if unknown_fields is not None:
        changes["unknown_fields"] = unknown_fields
    if latency_budget_ms is not None:
        changes["latency_budget_ms"] = latency_budget_ms
    batching = {
        key: value
        for key, value in zip(("enabled", "max_batch", "max_wait_ms"), microbatch, strict=True)
        if value is not None
    }
    if batching:
        changes["microbatch"] = batching
    humble = {key: value for key, value in (("enabled", humility), ("margin", humility_margin)) if value is not None}
    if humble:
        changes["humility"] = humble
    return changes


def _await_replicas(hm: Any, state: Any, timeout: float, *, quiet: bool) -> None:
    """Wait for the environment's replicas to load or refuse ``state``'s revision; say who did what.

    Exits 1 when a replica refused the revision or the wait timed out (the desired state stays recorded).
    """
    from harbourmaster.core.rollout_watch import START_GRACE_SECONDS

    say = output.errors.print if quiet else output.console.print
    with output.progress_line(f"waiting for the replicas of {state.environment}") as update:
        progress = hm.wait_for_replicas(
            state.project,
            state.environment,
            state.revision,
            timeout=timeout,
            on_progress=lambda p: update(p.summary()),
        )
    if not progress.replicas:
        say(
            f"no replica of {state.environment} is running (none started within {min(timeout, START_GRACE_SECONDS):g}"
            " s): the change is recorded and is served once one starts. Start one: harbourmaster serve --env "
            f"{state.environment}; see them: harbourmaster replicas --env {state.environment}",
            markup=False,
        )
        return
    for item in progress.replicas:
        say(f"  {item.describe()}", markup=False)
    refused, pending = progress.count("refused"), progress.count("pending")
    if refused:
        output.fail(
            f"{refused} of {len(progress.replicas)} replica(s) of {state.environment} refused revision "
            f"{state.revision}; they keep serving what they served before",
            f"fix the version, or roll back: harbourmaster rollback {state.project} --env {state.environment}",
        )
        raise typer.Exit(1)
    if pending:
        output.fail(
            f"{pending} replica(s) of {state.environment} had not loaded revision {state.revision} "
            f"after {timeout:g} s (the change stays recorded)",
            f"see what they serve: harbourmaster replicas --env {state.environment}; wait longer with --timeout",
        )
        raise typer.Exit(1)
    say(f"all {len(progress.replicas)} replica(s) of {state.environment} serve revision {state.revision}")


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
    no_failover: Annotated[bool, typer.Option("--no-failover", help="Remove the failover version.")] = False,
    rules: Annotated[Path | None, typer.Option(help="JSON file: {rules: [...], default: ..., function: ...}.")] = None,
    default: Annotated[str | None, typer.Option(help="Constant answer when everything else fails (JSON).")] = None,
    function: Annotated[str | None, typer.Option(help="module:function in the project code.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Start from an empty chain instead of merging.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Change the fallback chain (a failover version, then rules: table, constant or project function).

    What you give is merged into the current chain, and the resulting chain is printed. Answers must be
    ones the version could give (a classifier's classes), rules may test only its input features.
    """
    config = read_json_object(rules, "fallback rules: {rules: [...], default: ...}") if rules else {}
    if default is not None:
        config["default"] = json_or_text(default)
    if function is not None:
        config["function"] = function
    with client(url, token) as hm:
        state = hm.set_fallback(
            project,
            env,
            failover=_version(failover) if failover else None,
            fallback=config,
            clear_failover=no_failover,
            replace=clear,
        )
    if json:
        return output.print_json(state)
    _show_state(state, False)
    output.console.print(f"fallback chain: {_chain(state)}", markup=False)


def _chain(state: Any) -> str:
    """The links a request falls through, in order."""
    links = [f"champion v{state.champion.number}" if state.champion else "no champion"]
    if state.failover:
        links.append(f"failover v{state.failover.number}")
    config = state.fallback or {}
    if config.get("function"):
        links.append(f"function {config['function']}")
    if config.get("rules"):
        links.append(f"{len(config['rules'])} rule(s)")
    if config.get("default") is not None:
        links.append(f"default {jsonlib.dumps(config['default'])}")
    if len(links) == 1:
        return links[0] + " -> nothing (requests fail when the champion does)"
    return " -> ".join(links) + f" (on: {', '.join(config.get('on') or [])})"


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
    input: Annotated[
        Path, typer.Option("--input", "-i", "--data", help="CSV or Parquet file (--data, as for train).")
    ] = Path("input.csv"),
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
    from harbourmaster.cli.progress import progress

    if "://" not in str(input) and not input.exists():
        output.fail(
            f"{input} does not exist",
            "give the CSV or Parquet file to score with --input (or --data); a relative path is read from the "
            "current directory",
        )
        raise typer.Exit(1)
    if url:
        from harbourmaster.serving.batch import score_remote
        from harbourmaster.serving.control_plane import RemoteControlPlane

        control_plane = RemoteControlPlane(url, token, env)
        try:
            with progress(f"Scoring {input.name}") as report:
                run = score_remote(control_plane, project, input, output_path, report)
        finally:
            control_plane.close()
    else:
        platform = _platform()
        with progress(f"Scoring {input.name}") as report:
            run = platform.scoring.score(_actor(), project, env, input, output_path, report)
    if json:
        return output.print_json(run)
    if run.status != "succeeded":
        output.fail(f"scoring run {run.id} failed: {run.error}", f"every finding: harbourmaster runs show {run.id}")
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
    columns: Annotated[
        str | None,
        typer.Option("--columns", help="Comma-separated columns to show whole, e.g. request_id,inputs,probabilities."),
    ] = None,
    sql: Annotated[
        str | None, typer.Option(help="DuckDB SQL over the views predictions and feedback (embedded only).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """The prediction log of a project: the newest rows and the count (reads of a guarded one are audited).

    Shows the key columns, with each record's inputs summarised; --columns picks others (shown whole) and
    --json prints every column of every row.
    """
    from harbourmaster.cli import prediction_view
    from harbourmaster.store.prediction_log import PREDICTION_SCHEMA

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
    if sql:  # a query's own columns, as it asked for them
        chosen = (
            list(frame.columns) if columns is None else prediction_view.choose_columns(list(frame.columns), columns)
        )
    else:
        chosen = prediction_view.choose_columns(PREDICTION_SCHEMA.names, columns)
    if count is not None:
        refused = sum(1 for row in rows if row.get("path") == "refused")
        also = f"; {refused} refused request(s) below, not counted" if refused else " (refused requests not counted)"
        output.console.print(f"{count} predictions logged for {project} in {env}{also}")
    if not rows:
        return
    requested = sql is not None or columns is not None
    output.table(None, chosen, prediction_view.table_rows(rows, chosen, requested=requested))
    if not requested:
        output.console.print(
            f"newest {len(rows)} shown; every column: --json, or pick some: --columns request_id,inputs,probabilities",
            style="dim",
        )


replica_tokens = typer.Typer(
    help="Replica credentials: tokens for the replicas and batch scorers of one environment (admins).",
    no_args_is_help=True,
)


@replica_tokens.command("create")
def create_replica_token(
    env: EnvOption,
    name: Annotated[str, typer.Option(help="A name to recognise it by (e.g. the replica group).")] = "replica",
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="Lifetime, e.g. 30m, 12h, 90d.")] = None,
    expires_in_days: Annotated[
        float | None, typer.Option(min=0.001, help="Lifetime in days (older spelling of --expires-in).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Mint a replica credential for ENV; it is shown once (give it to `serve --url` as HARBOURMASTER_TOKEN)."""
    if expires_in is not None and expires_in_days is not None:
        raise InvalidInputError("give --expires-in or --expires-in-days, not both", "e.g. --expires-in 90d")
    if expires_in is not None:
        expires_in_days = parse_duration(expires_in).total_seconds() / 86_400
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
