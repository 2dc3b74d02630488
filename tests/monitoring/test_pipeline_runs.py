"""Pipeline monitoring on both metadata backends: a training run records its steps and row counts; batch
scoring runs record the validation of their input (nulls, types, unseen categories, values outside the
training range, row bounds) as findings per column, valid / valid with warnings / invalid as
``[monitoring.runs]`` says; ``runs show`` prints the whole record; the pipeline-runs monitor raises an
alert for an invalid run and for a failed one and resolves it after a good run. The column checks and
the settings' bad input are also tested alone (no registration: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from tests.cli_inprocess import invoke
from tests.services.orders_project import orders_frame, write_orders_project

from harbourmaster.core.project_spec import parse_project_spec
from harbourmaster.core.run_checks import RunChecks, parse_run_checks, validate_frame
from harbourmaster.core.schema import InputSchema
from harbourmaster.errors import InvalidInputError, ProjectFileError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AlertRow, RunRow

ACTOR = Actor.local_owner()
SUBJECT = "runs:orders/score/dev"
# Nulls in amount are only a warning (those rows are set aside); everything else keeps its default.
RUN_CHECKS = """
[monitoring.runs]
min_rows = 5
max_rows = 10000
[monitoring.runs.column.amount]
nulls = "warning"
"""


def _batch(rows: int = 20, seed: int = 3) -> pd.DataFrame:
    """Orders to score: inside the training window and well inside the training range of amount."""
    frame = orders_frame(rows, seed).drop(columns=["segment", "margin"])
    frame["amount"] = frame["amount"].clip(50, 400)
    return frame


def _alerts(platform: Platform) -> dict[str, str]:
    with platform.db.reader() as session:
        rows = session.scalars(select(AlertRow).where(AlertRow.subject == SUBJECT).order_by(AlertRow.id))
        return {row.rule: row.status for row in rows}


def _findings(run) -> dict[tuple[str, str | None], tuple[str, int]]:
    return {(f.check, f.column): (f.severity, f.count) for f in run.validation_report.findings}


def test_runs_record_steps_and_findings_and_the_monitor_alerts(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Training: the run's steps with their rows, and the data checks' verdict.
    project = write_orders_project(tmp_path / "orders", schema=RUN_CHECKS)
    trained = platform.training.train(ACTOR, project)
    run = trained.run
    assert [step.name for step in run.steps] == ["read", "validate", "split", "fit", "evaluate", "package", "register"]
    steps = {step.name: step for step in run.steps}
    assert (steps["read"].rows_out, steps["validate"].rows_in, steps["validate"].rows_out) == (300, 300, 300)
    assert (steps["split"].rows_out, steps["fit"].rows_in, steps["evaluate"].rows_in) == (300, 225, 75)
    assert all(step.status == "succeeded" and step.duration_seconds >= 0 for step in run.steps)
    assert (run.rows_in, run.rows_out, run.validation, run.validation_report.findings) == (300, 300, "valid", [])
    platform.deployments.deploy(ACTOR, "orders", trained.version.number, "dev")

    def score(frame: pd.DataFrame | None, name: str):
        source = tmp_path / f"{name}.csv"
        if frame is not None:
            frame.to_csv(source, index=False)
        return platform.scoring.score(ACTOR, "orders", "dev", source, tmp_path / f"{name}-scored.csv")

    good = score(_batch(), "good")
    assert good.error is None, good.error
    assert (good.status, good.validation, good.rows_in, good.rows_out) == ("succeeded", "valid", 20, 20)
    assert [step.name for step in good.steps] == ["load", "read", "validate", "score", "write"]

    # Warnings only: two null amounts (set aside: the model cannot take them) and one beyond the training range.
    warned = _batch()
    warned.loc[[2, 5], "amount"] = np.nan
    warned.loc[7, "amount"] = 900.0
    run = score(warned, "warned")
    assert (run.status, run.validation, run.rows_in, run.rows_out) == ("succeeded", "warnings", 20, 18)
    assert _findings(run) == {("nulls", "amount"): ("warning", 2), ("ranges", "amount"): ("warning", 1)}
    assert run.validation_report.rows_set_aside == 2
    assert len(pd.read_csv(tmp_path / "warned-scored.csv")) == 18
    assert {step.name: (step.rows_in, step.rows_out) for step in run.steps}["validate"] == (20, 18)

    # Errors: an unseen channel and a word among the item counts make the run invalid: nothing is scored.
    bad = warned.astype({"items": object})
    bad.loc[3, "channel"] = "fax"
    bad.loc[[4, 9], "items"] = "many"
    invalid = score(bad, "bad")
    assert (invalid.status, invalid.validation, invalid.rows_in, invalid.rows_out) == ("failed", "invalid", 20, None)
    assert _findings(invalid) == {
        ("nulls", "amount"): ("warning", 2),
        ("ranges", "amount"): ("warning", 1),
        ("categories", "channel"): ("error", 1),
        ("types", "items"): ("error", 2),
    }
    assert "'fax'" in invalid.error and "'many'" in invalid.error and "[monitoring.runs]" in invalid.error
    assert "RUN" not in invalid.error  # no placeholder to fill in: who shows the run names it
    assert not (tmp_path / "bad-scored.csv").exists()
    assert [(s.name, s.status) for s in invalid.steps][-1] == ("validate", "failed")

    # The monitor: the invalid run raises an alert naming the run.
    report = platform.monitoring.run_once()
    changes = {(c.rule, c.change) for c in report.changes if c.subject.startswith("runs:")}
    assert changes == {("pipeline.input-invalid", "firing")}
    with platform.db.reader() as session:
        alert = session.scalars(select(AlertRow).where(AlertRow.subject == SUBJECT)).one()
        assert (alert.severity, alert.evidence, alert.project) == ("critical", f"run:{invalid.id}", "orders")
        assert "'fax'" in alert.summary

    # `runs` shows the verdicts, `runs show` the whole record (here through the CLI, embedded, on this store).
    monkeypatch.setenv("HARBOURMASTER_HOME", str(platform.settings.home))
    if platform.db.dialect != "sqlite":
        monkeypatch.setenv("HARBOURMASTER_DATABASE_URL", platform.settings.database_url)
    listed = invoke(["runs", "orders"])
    assert listed.code == 0 and listed.crash is None, listed.err
    assert "valid with warnings" in listed.out and "invalid" in listed.out
    shown = invoke(["runs", "show", str(invalid.id)])
    assert shown.code == 0 and shown.crash is None, shown.err
    for text in ("validate", "failed", "categories", "channel", "column 'items': 2 value(s) not of type integer"):
        assert text in shown.out, shown.out
    as_json = invoke(["runs", "--json", "show", str(invalid.id)])  # options may come before the subcommand
    assert as_json.code == 0 and json.loads(as_json.out)["id"] == invalid.id, as_json.err
    missing = invoke(["runs", "show", "9999"])
    assert missing.code == 1 and "no run 9999" in missing.err
    # `score` says why and ends with a plain command naming the real run, to copy as printed.
    scored = invoke(["score", "orders", "--input", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "out.csv")])
    assert scored.code == 1 and scored.crash is None and "[monitoring.runs]" in scored.err, scored.err
    assert scored.err.endswith(f"\nhint: every finding: harbourmaster runs show {invalid.id + 1}\n"), scored.err

    # A run that fails (its input cannot be read): its own alert; the invalid-input alert resolves.
    failed = score(None, "nowhere")
    assert (failed.status, failed.validation) == ("failed", None) and "nowhere.csv" in failed.error
    platform.monitoring.run_once()
    assert _alerts(platform) == {"pipeline.input-invalid": "resolved", "pipeline.run-failed": "firing"}

    # A good run of the same pipeline resolves it.
    assert score(_batch(), "again").validation == "valid"
    platform.monitoring.run_once()
    assert _alerts(platform) == {"pipeline.input-invalid": "resolved", "pipeline.run-failed": "resolved"}
    with platform.db.reader() as session:  # each run was stored whole, in one transaction
        stored = session.get_one(RunRow, invalid.id)
        assert (stored.validation, len(stored.validation_report["findings"]), len(stored.steps)) == ("invalid", 4, 3)


SCHEMA = InputSchema.model_validate(
    {
        "columns": [
            {"name": "amount", "dtype": "float", "nullable": False, "minimum": 0.0, "maximum": 10.0},
            {"name": "items", "dtype": "integer", "nullable": True, "minimum": 1, "maximum": 9},
            {"name": "channel", "dtype": "category", "nullable": False, "categories": ["web", "shop"]},
            {"name": "member", "dtype": "boolean", "nullable": False, "categories": [False, True]},
            {
                "name": "day",
                "dtype": "datetime",
                "nullable": False,
                "minimum": pd.Timestamp("2024-01-01", tz="UTC").timestamp(),
                "maximum": None,
                "range_enforced": True,
            },
            {"name": "id", "dtype": "integer", "nullable": False, "role": "id", "required": False},
        ]
    }
)


def test_column_checks_count_per_column_over_whole_columns() -> None:
    rows = 10_000
    frame = pd.DataFrame(
        {
            "amount": np.linspace(0, 10, rows),
            "items": np.arange(rows) % 9 + 1,
            "channel": np.where(np.arange(rows) % 2, "web", "shop"),
            "member": np.arange(rows) % 3 == 0,
            "day": pd.date_range("2024-01-01", periods=rows, freq="h").strftime("%Y-%m-%dT%H:%M:%S"),
            "extra": 1,
        }
    ).astype({"amount": object, "items": float, "channel": object, "day": object})
    frame.loc[[1, 2, 3], "amount"] = [np.nan, "1,5", 11.0]
    frame.loc[[4, 5], "items"] = [2.5, np.nan]
    frame.loc[6, "channel"] = "phone"
    frame.loc[[7, 8], "day"] = ["2023-12-31", "2024-02-30"]
    checked = validate_frame(frame, SCHEMA, RunChecks(columns="warning"), unknown_columns="reject", against="v1")
    report = checked.report
    assert {(f.check, f.column): (f.severity, f.count) for f in report.findings} == {
        ("columns", "extra"): ("warning", rows),
        ("nulls", "amount"): ("error", 1),
        ("types", "amount"): ("error", 1),
        ("ranges", "amount"): ("warning", 1),
        ("types", "items"): ("error", 1),
        ("categories", "channel"): ("error", 1),
        ("types", "day"): ("error", 1),
        ("declared_ranges", "day"): ("error", 1),
    }
    assert report.status == "invalid" and report.rows == rows
    assert "extra" not in checked.frame.columns  # an unknown column as a warning is left out, not its rows
    assert next(f for f in report.findings if f.check == "types" and f.column == "amount").examples == ["1,5"]

    relaxed = RunChecks.model_validate(
        {"types": "warning", "nulls": "off", "categories": "warning", "declared_ranges": "warning", "ranges": "off"}
    )
    lenient = validate_frame(frame, SCHEMA, relaxed, unknown_columns="ignore")
    assert lenient.report.status == "warnings"
    # Rows a model cannot take are set aside: the bad amount, the half item, the phone channel, the two days.
    assert lenient.report.rows_set_aside == 5 and int(lenient.keep.sum()) == rows - 5
    assert not lenient.keep[[2, 4, 6, 7, 8]].any() and lenient.keep[[1, 3, 5]].all()

    few = validate_frame(frame.head(3), SCHEMA, RunChecks(min_rows=5, rows="warning", types="off"))
    bounds = [(f.severity, f.count) for f in few.report.findings if f.check == "rows"]
    assert bounds == [("warning", 3)]
    many = validate_frame(frame, SCHEMA, RunChecks(max_rows=100), unknown_columns="ignore")
    assert "10000 rows; at most 100 expected" in many.report.findings[0].message


BASE = {"project": {"name": "orders"}, "data": {"source": "a.csv", "target": "y"}, "pipeline": {"train": "m:t"}}


@pytest.mark.parametrize(
    ("runs", "said"),
    [
        ({"min_row": 3}, "min_row: unknown setting (did you mean 'min_rows'?)"),
        ({"min_rows": "ten"}, "min_rows = 'ten' is not a whole number >= 0"),
        ({"max_rows": 2.5}, "max_rows = 2.5 is not a whole number >= 1"),
        ({"nulls": "eror"}, "nulls = 'eror' is not a severity"),
        ({"min_rows": 5, "max_rows": 2}, "max_rows 2 is below min_rows 5"),
        ({"column": {"amount": {"rangs": "off"}}}, "column.amount.rangs: unknown setting (did you mean 'ranges'?)"),
    ],
)
def test_bad_run_settings_are_named_with_the_fix(runs: dict, said: str) -> None:
    with pytest.raises(ProjectFileError) as raised:
        parse_project_spec({**BASE, "monitoring": {"runs": runs}}, "harbourmaster.toml")
    assert raised.value.message.startswith("harbourmaster.toml: [monitoring] runs: ")
    assert said in raised.value.message and "docs/project-file.md" in (raised.value.hint or "")
    with pytest.raises(InvalidInputError) as again:  # the same words where stored settings are read
        parse_run_checks(runs)
    assert said in again.value.message


def test_a_run_left_running_by_a_dead_process_warns_until_a_newer_run_starts(platform: Platform) -> None:
    """A training process killed mid-run leaves its run "running" for ever: past the stalled limit the
    monitor warns, naming the run and how to look at it; a newer run of the pipeline resolves it."""
    from datetime import UTC, datetime, timedelta

    subject = "runs:orders/train"

    def stalled() -> list[AlertRow]:
        with platform.db.reader() as session:
            return list(session.scalars(select(AlertRow).where(AlertRow.rule == "pipeline.run-stalled")))

    # What a killed process leaves: a run that started seven hours ago and never ended.
    dead = platform.training._start_run(ACTOR, "orders", None, started_at=datetime.now(UTC) - timedelta(hours=7))
    young = platform.training._start_run(ACTOR, "fresh", None)  # running for a second: not stalled
    report = platform.monitoring.run_once()
    assert {(c.rule, c.subject, c.change) for c in report.changes if c.subject.startswith("runs:")} == {
        ("pipeline.run-stalled", subject, "firing")
    }
    (alert,) = stalled()
    assert (alert.severity, alert.evidence, alert.project) == ("warning", f"run:{dead}", "orders")
    assert "running for 7.0 h" in alert.summary and f"harbourmaster runs show {dead}" in alert.summary
    assert young != dead

    # Someone starts the pipeline again: the dead run is no longer the newest, and the alert resolves.
    platform.training._start_run(ACTOR, "orders", None)
    platform.monitoring.run_once()
    assert [(row.subject, row.status) for row in stalled()] == [(subject, "resolved")]
