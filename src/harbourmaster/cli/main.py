"""The ``harbourmaster`` command. Thin: parse, call the SDK (and so the services), format."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from harbourmaster.cli import output
from harbourmaster.errors import ConfirmationRequiredError, HarbourmasterError, storage_full

app = typer.Typer(
    name="harbourmaster",
    help="Self-hosted MLOps: versioned scoring pipelines from experiment to a governed production.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from harbourmaster.cli.common import (  # noqa: E402
    JsonOption,
    TokenOption,
    UrlOption,
    announce_store,
    client,
    metrics_origin,
)


def _print_version(value: bool) -> None:
    if value:
        from harbourmaster import __version__

        print(f"harbourmaster {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Self-hosted MLOps: versioned scoring pipelines from experiment to a governed production."""


@app.command()
def projects(url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """List projects."""
    with client(url, token) as hm:
        items = hm.projects()
    if json:
        return output.print_json(items)
    if not items:
        output.console.print("No projects yet. Train one: harbourmaster train PROJECT_DIR (or run harbourmaster demo).")
        return
    output.table(
        None,
        ["project", "versions", "latest", "created by", "created", "description"],
        [
            (
                p.name,
                p.version_count,
                p.latest_version or "-",
                p.created_by,
                output.when(p.created_at),
                p.description,
            )
            for p in items
        ],
    )


@app.command()
def versions(project: str, url: UrlOption = None, token: TokenOption = None, json: JsonOption = False) -> None:
    """List the versions of a project."""
    with client(url, token) as hm:
        items = hm.versions(project)
    if json:
        return output.print_json(items)
    metric_names = sorted({name for item in items for name in item.metrics})
    output.table(
        f"{project}: {len(items)} version(s)",
        ["version", "digest", "format", *metric_names, "metrics from", "tags", "created by", "created"],
        [
            (
                v.number,
                v.digest[:12],
                v.format,
                *(output.number(v.metrics.get(name)) for name in metric_names),
                metrics_origin(v.metrics_source, v.evaluation_rows) if v.metrics else "-",
                ", ".join(f"{k}={val}" if val else k for k, val in v.tags.items()) or "-",
                v.created_by,
                output.when(v.created_at),
            )
            for v in items
        ],
    )


@app.command()
def show(
    project: str,
    version: Annotated[str, typer.Argument(help="Version number or 'latest'.")] = "latest",
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Show one version: schema, metrics, lineage."""
    with client(url, token) as hm:
        detail = hm.version(project, version)
    if json:
        return output.print_json(detail)
    out = output.console
    out.print(f"[bold]{detail.project} v{detail.number}[/]  digest sha256:{detail.digest}")
    out.print(f"format {detail.format}, created by {detail.created_by} at {output.when(detail.created_at)}")
    serving = detail.lineage.get("serving") or {}
    engine = serving.get("engine", "not recorded (decided when a replica loads it)")
    reason = f" ({serving['reason']})" if serving.get("reason") else ""
    out.print(f"serving engine: {engine}{reason}", markup=False, highlight=False)
    if detail.tags:
        out.print("tags: " + ", ".join(f"{k}={v}" if v else k for k, v in detail.tags.items()))
    output.table(
        f"metrics ({metrics_origin(detail.metrics_source, detail.evaluation_rows, long=True)})",
        ["metric", "value"],
        sorted((k, output.number(v)) for k, v in detail.metrics.items()),
    )
    output.table(
        "input schema",
        ["column", "dtype", "nullable", "range / categories"],
        [
            (
                column["name"],
                column["dtype"],
                "yes" if column["nullable"] else "no",
                _range_or_categories(column),
            )
            for column in detail.input_schema.get("columns", [])
        ],
    )
    schema = detail.output_schema
    classes = f", classes {schema.get('classes')}" if schema.get("classes") is not None else ""
    out.print(f"output: {schema.get('task')} ({schema.get('dtype')}{classes})")
    lineage = detail.lineage
    data = lineage.get("data", {})
    code = lineage.get("code", {})
    out.print("[bold]lineage[/]")
    out.print(
        f"  data: {data.get('source', '-')}, {data.get('rows', '-')} rows, "
        f"fingerprint {str(data.get('fingerprint', '-'))[:16]}"
    )
    code_text = (
        f"git {code.get('sha', '')[:12]}{' (dirty)' if code.get('dirty') else ''}"
        if code.get("kind") == "git"
        else f"files sha256 {str(code.get('sha256', '-'))[:16]}"
        if code
        else "-"
    )
    out.print(f"  code: {code_text}")
    out.print(f"  parent version: {lineage.get('parent_version') or '-'}")
    out.print(f"  parameters: {_parameters_text(lineage.get('parameters', {}))}", markup=False, highlight=False)


def _parameters_text(parameters: dict) -> str:
    """Lineage parameters on one line: values as they are, estimators by class (``show --json`` has it all)."""

    def short(value: object) -> str:
        if isinstance(value, dict) and "estimator" in value:
            return str(value["estimator"]).rpartition(":")[2]
        if isinstance(value, list):
            return "[" + ", ".join(short(item) for item in value) + "]"
        return str(value)

    return ", ".join(f"{key}={short(value)}" for key, value in parameters.items()) or "-"


def _range_or_categories(column: dict) -> str:
    notes = [] if column.get("required", True) else ["optional"]
    if column.get("role", "feature") != "feature":
        notes.insert(0, f"{column['role']}: not read by the pipeline")
    if column.get("range_enforced"):
        notes.append("declared")
    suffix = f" ({', '.join(notes)})" if notes else ""
    if column.get("categories") is not None:
        shown = column["categories"][:8]
        more = len(column["categories"]) - len(shown)
        return ", ".join(map(str, shown)) + (f" (+{more})" if more > 0 else "") + suffix
    if column.get("minimum") is not None and column.get("maximum") is not None:
        return f"{_bound(column, 'minimum')} .. {_bound(column, 'maximum')}{suffix}"
    if column.get("minimum") is not None:
        return f">= {_bound(column, 'minimum')}{suffix}"
    if column.get("maximum") is not None:
        return f"<= {_bound(column, 'maximum')}{suffix}"
    return ", ".join(notes) if notes else "-"


def _bound(column: dict, key: str) -> str:
    value = column.get(key)
    if value is None:
        return "-"
    if column.get("dtype") == "datetime":  # seconds since the epoch, shown as a UTC date or timestamp
        moment = datetime.fromtimestamp(value, UTC)
        return moment.date().isoformat() if moment == moment.replace(hour=0, minute=0, second=0) else moment.isoformat()
    return f"{value:.4g}"


@app.command()
def diff(
    project: str,
    old: str,
    new: str,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Schema and metric differences between two versions."""
    with client(url, token) as hm:
        result = hm.diff(project, old, new)
    if json:
        return output.print_json(result)
    out = output.console
    out.print(f"[bold]{project}: v{result.old} -> v{result.new}[/]")
    output.table(
        "metrics",
        ["metric", f"v{result.old}", f"v{result.new}", "change"],
        [
            (m.name, output.number(m.before), output.number(m.after), _metric_change(m.delta, m.improved))
            for m in result.metric_changes
        ],
    )
    changes = [*result.input_changes, *result.output_changes]
    if not changes:
        out.print("schema: unchanged")
    else:
        output.table(
            "schema changes",
            ["column", "change", "before", "after", "breaking"],
            [(c.column, c.change, c.before, c.after, "yes" if c.breaking else "no") for c in changes],
        )
    for key, change in result.lineage_changes.items():
        out.print(f"lineage {key}: {change.before} -> {change.after}")


def _metric_change(delta: float | None, improved: bool | None) -> str:
    if delta is None:
        return "-"
    if delta == 0:
        return "same"
    return f"{delta:+.4f} ({'better' if improved else 'worse' if improved is False else 'changed'})"


@app.command()
def tag(
    project: str,
    version: str,
    tags: Annotated[list[str], typer.Argument(help="KEY or KEY=VALUE; several allowed.")],
    remove: Annotated[bool, typer.Option("--remove", help="Remove these tag keys.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Set (or remove) tags on a version."""
    with client(url, token) as hm:
        detail = None
        for item in tags:
            key, _, value = item.partition("=")
            detail = hm.untag(project, version, key) if remove else hm.tag(project, version, key, value)
    if json:
        return output.print_json(detail)
    assert detail is not None
    output.console.print(f"{project} v{detail.number} tags: {detail.tags or '{}'}")


@app.command()
def train(
    project_dir: Annotated[Path, typer.Argument(help="Folder holding harbourmaster.toml.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Train on this CSV/Parquet (a path from the current directory, or a URL), not the declared source.",
        ),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Train a project from its folder and register the new version."""
    from harbourmaster.cli.progress import progress
    from harbourmaster.store.data_sources import DataSource

    with client(url, token) as hm:
        if not json:
            output.console.print(f"Training {project_dir} ...")
        with progress(f"Training {project_dir.name or project_dir}") as report:
            result = hm.train(project_dir, data=DataSource(path=_from_here(data)) if data else None, progress=report)
    if json:
        return output.print_json(result)
    version, run = result.version, result.run
    metrics = ", ".join(f"{k} {output.number(v)}" for k, v in version.metrics.items())
    output.console.print(
        f"[green]Registered {version.project} v{version.number}[/] (sha256:{version.digest[:12]}) "
        f"from {run.details.get('rows', '?')} rows in {run.duration_seconds or 0:.1f}s; held-out {metrics}"
    )


def _from_here(path: str) -> str:
    """A path typed on the command line means the file as seen from the current directory, as in any
    shell command (a relative ``[data] source`` in harbourmaster.toml is the project folder's)."""
    if "://" in path:
        return path
    return str(Path(path).expanduser().absolute())


@app.command()
def init(
    admin: Annotated[list[str] | None, typer.Option("--admin", help="Name of a first admin user; repeatable.")] = None,
    save_tokens: Annotated[
        Path | None,
        typer.Option(
            "--save-tokens",
            help="Write each admin's token to FOLDER/NAME.token (readable by you only) instead of printing it.",
        ),
    ] = None,
) -> None:
    """Create the store's first admin users; prints each admin's API token once (or saves it, --save-tokens).

    From then on the store is shared: people work through `harbourmaster server` with --url and a token.
    """
    from harbourmaster.cli.secrets import check_token_folder, save_token
    from harbourmaster.services.sandbox import init_store

    names = admin or ["admin"]
    if save_tokens is not None:
        check_token_folder(save_tokens, names)  # before the store changes: a refused init changes nothing
    issued, settings = init_store(announce_store(), names)
    for token in issued:
        output.console.print(f"Created admin user {token.user!r} in {settings.home}.")
        if save_tokens is not None:
            written = save_token(save_tokens, token.user, token.secret)
            output.console.print(f"Its API token is in {written} (readable by you only; shown nowhere else).")
            continue
        output.console.print("Its API token (shown only now; store it safely):")
        print(token.secret)
    output.errors.print(
        "This store is now shared: embedded mode is refused on it. Start the control plane "
        "(harbourmaster server) and use --url with a token."
    )
    if len(issued) == 1:
        output.errors.print(
            "With one admin, steps that need a second one (approvers, prod grants, tokens for others) wait: "
            "run init with --admin twice, or see docs/governance.md (separation of duties)."
        )


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8700,
) -> None:
    """Serve the control-plane HTTP API (OpenAPI docs at /docs)."""
    import gc

    import uvicorn

    from harbourmaster.api.app import create_app
    from harbourmaster.services.platform import Platform

    platform = Platform(announce_store())
    bootstrap = os.environ.get("HARBOURMASTER_ADMIN_TOKEN")
    if bootstrap and not platform.identity.has_users():
        from harbourmaster.services.actors import Actor

        platform.identity.create_user(Actor.system("bootstrap"), "admin", ["admin"])
        platform.identity.create_token(Actor.system("bootstrap"), "admin", "bootstrap", secret=bootstrap)
    if not platform.identity.has_users():
        output.errors.print(
            "warning: no users yet, so every call will be refused; run `harbourmaster init` "
            "(or set HARBOURMASTER_ADMIN_TOKEN) to create the first admin"
        )
    # The signing key lives in the control plane's home (created now if new); anchors are written on a schedule.
    anchoring = platform.audit.start_anchoring()
    try:
        served = create_app(platform, run_monitors=True)
        # What start-up made (modules, the platform) lives as long as the server: out of the cyclic GC's
        # reach, its full collections walk only what requests make (they cost a page ~100 ms otherwise).
        gc.collect()
        gc.freeze()
        # Monitors run on their schedule inside the server (HARBOURMASTER_MONITOR_INTERVAL; 0: off).
        uvicorn.run(served, host=host, port=port, log_level="info")
    finally:
        anchoring.stop()


@app.command()
def demo(
    home: Annotated[
        Path | None,
        typer.Option(help="Where the demo keeps its state (default: HARBOURMASTER_HOME)."),
    ] = None,
) -> None:
    """Run the showcase: a demo project trained, registered, compared and reloaded."""
    from harbourmaster.bundle.warmup import start_warmup_server

    start_warmup_server()  # its imports overlap the demo's own: the first registration does not wait for them
    from harbourmaster.demo.story import run_demo

    try:
        run_demo(home)
    except RuntimeError as exc:  # a chapter's own check (a load test, a wait on this machine) did not hold
        output.fail(
            f"the demo stopped: {exc}",
            "what the chapters before it made stays in the store; a step that measures this machine (a load test, "
            "a wait) can miss its mark when the machine is busy: run `harbourmaster demo` again when it is quieter",
        )
        sys.exit(1)


PENDING_EXIT_CODE = 3  # the step was recorded and waits for a second admin


def run(argv: Sequence[str] | None = None) -> None:
    """Console entry point: errors become a message and a non-zero exit, never a traceback.

    ``argv`` defaults to the process's arguments; tests pass their own.
    """
    try:
        app(args=list(argv) if argv is not None else None, prog_name="harbourmaster")
    except ConfirmationRequiredError as exc:
        output.pending(exc.message, exc.hint)
        sys.exit(PENDING_EXIT_CODE)
    except HarbourmasterError as exc:
        output.fail(exc.message, exc.hint)
        sys.exit(1)
    except Exception as exc:
        # A full disk (or database), wherever the write was: say so and what to do, not a traceback.
        full = storage_full(exc)
        if full is not None:
            output.fail(full.message, full.hint)
            sys.exit(1)
        if not isinstance(exc, OSError):
            raise
        # A path the user gave (or the home) that cannot be read or written: name it, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        output.fail(
            f"{exc.strerror or exc}{where}", "check the path: its folder must exist and you must be allowed to use it"
        )
        sys.exit(1)
    except KeyboardInterrupt:
        output.fail("interrupted")
        sys.exit(130)


from harbourmaster.cli import governance_commands  # noqa: E402

governance_commands.register(app)

from harbourmaster.cli import serving_commands  # noqa: E402

serving_commands.register(app)

from harbourmaster.cli import inspect_command  # noqa: E402

inspect_command.register(app)

from harbourmaster.cli import monitoring_commands  # noqa: E402

monitoring_commands.register(app)

from harbourmaster.cli import alerts_commands  # noqa: E402

alerts_commands.register(app)

from harbourmaster.cli import rollout_commands  # noqa: E402

rollout_commands.register(app)

from harbourmaster.cli import log_commands  # noqa: E402

log_commands.register(app)

from harbourmaster.cli import runs_commands  # noqa: E402

runs_commands.register(app)

from harbourmaster.cli import lifecycle_commands  # noqa: E402

lifecycle_commands.register(app)

from harbourmaster.cli import loadtest_commands  # noqa: E402

loadtest_commands.register(app)

from harbourmaster.cli import cases_commands  # noqa: E402

cases_commands.register(app)

from harbourmaster.cli.help_text import reflow_help  # noqa: E402

reflow_help(app)  # after every command is registered
