"""Lifecycle commands: ``harbourmaster retrain`` (a new version trained on an environment's labelled
production rows) and ``harbourmaster evaluate`` (prove the fix: the retrained version against the champion
on the held-out rows, and the drift against both references, recorded as evidence for the gates)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harbourmaster.cli import output
from harbourmaster.cli.common import JsonOption, TokenOption, UrlOption, client
from harbourmaster.cli.governance_commands import parse_time

EnvOption = Annotated[str, typer.Option("--env", "-e", help="The environment whose production data is used.")]


def retrain(
    project: str,
    env: EnvOption = "prod",
    since: Annotated[
        str | None, typer.Option(help="Only rows logged from this time on (ISO 8601, e.g. 2026-11-01).")
    ] = None,
    last: Annotated[int | None, typer.Option(min=1, help="Only the newest N labelled rows.")] = None,
    mix_training: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Add this fraction of the original training source's rows (0 to 1)."),
    ] = 0.0,
    project_dir: Annotated[
        Path | None,
        typer.Option(help="Train with this project folder's code (default: the code the champion's bundle carries)."),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Retrain PROJECT on the labelled production rows of an environment (its captured inputs joined with
    the ground truth that arrived), with the project's own training entrypoint, and register the new version.

    The newest share of the rows (holdout under retrain in harbourmaster.toml, default 20 %) is held out of
    training: `harbourmaster evaluate` compares the new version with the champion on them.
    """
    from harbourmaster.cli.progress import progress

    moment = parse_time(since) if since else None
    with client(url, token) as hm, progress(f"Retraining {project} on {env} data") as report:
        result = hm.retrain(
            project, env, since=moment, last=last, mix_training=mix_training, project_dir=project_dir, progress=report
        )
    if json:
        return output.print_json(result)
    version, run = result.version, result.run
    record = version.lineage.get("retrain") or {}
    rows, holdout = record.get("rows") or {}, record.get("holdout") or {}
    window = record.get("window") or {}
    metrics = ", ".join(f"{k} {output.number(v)}" for k, v in version.metrics.items())
    out = output.console
    out.print(
        f"[green]Registered {version.project} v{version.number}[/] (sha256:{version.digest[:12]}), "
        f"run {run.id} (retrain), challenging champion v{(record.get('champion') or {}).get('version')}"
    )
    output.table(
        "retraining",
        ("", ""),
        [
            ("production window", f"{window.get('from')} .. {window.get('to')}"),
            ("labelled production rows", rows.get("production_labelled")),
            ("trained on", f"{rows.get('production_training')} production + {rows.get('training_source_mixed')} mixed"),
            ("held out (evaluation set)", f"{holdout.get('rows')} rows logged from {holdout.get('from')}"),
            ("code", record.get("code")),
            ("run by", record.get("run_by")),
            ("held-out metrics of the split", metrics or "-"),
        ],
    )
    out.print(f"prove the fix: harbourmaster evaluate {version.project} {version.number} --env {env}", markup=False)
    return None


def evaluate(
    project: str,
    version: str,
    env: EnvOption = "prod",
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Prove the fix: VERSION (retrained on production data) against the champion of an environment on the
    labelled rows held out of its training, with a paired test (a tie is not a win), and the current window's
    drift against both references, feature by feature. Records the beats_champion and drift_fixed evidence.
    """
    from harbourmaster.cli.progress import progress

    with client(url, token) as hm, progress(f"Evaluating {project} v{version} in {env}") as report:
        result = hm.evaluate(project, version, env, progress=report)
    if json:
        return output.print_json(result)
    challenger = result.report
    output.table(
        f"v{challenger.candidate} against champion v{challenger.champion} on {challenger.rows} held-out labelled rows",
        ("metric", f"v{challenger.candidate}", f"v{challenger.champion}", "difference"),
        [
            (m.metric, output.number(m.candidate), output.number(m.champion), output.number(m.difference))
            for m in challenger.metrics
        ],
    )
    low, high = challenger.interval
    output.console.print(
        f"{challenger.test}: {challenger.candidate_wins} vs {challenger.champion_wins} rows, "
        f"p = {challenger.p_value:.3g}; "
        f"mean {challenger.loss} lower by {challenger.improvement:.4g} "
        f"({challenger.confidence:.0%} CI {low:.4g} .. {high:.4g})",
        markup=False,
        highlight=False,
    )
    if result.drift is not None:
        output.table(
            "drift of the current window, feature by feature",
            ("feature", f"v{challenger.candidate} score", f"v{challenger.champion} score", "change"),
            [
                (f.feature, output.number(f.candidate_score), output.number(f.champion_score), f.change)
                for f in result.drift.features
            ],
        )
    output.table(
        "verdicts (evidence for the gates)",
        ("#", "check", "verdict", "summary"),
        [(e.id, e.check, "PASSED" if e.passed else "FAILED", e.summary) for e in result.evidence],
    )
    return None


def register(app: typer.Typer) -> None:
    """Add the lifecycle commands to the ``harbourmaster`` app."""
    app.command()(retrain)
    app.command()(evaluate)
