"""Prediction-log upkeep on a platform (SQLite and PostgreSQL): drift over a log of JSON-text and typed files,
compaction on the monitoring schedule and by command, retention by setting; each pass audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from harbourmaster.errors import ConflictError, PermissionDeniedError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.prediction_log import PredictionLog, key_version
from harbourmaster.store.tables import AuditEventRow, ProjectRow
from monitoring.helpers import OWNER, PROJECT, current_frame, log_rows, log_typed_rows, register_and_deploy


def audited(platform: Platform, action: str) -> list[AuditEventRow]:
    with platform.db.reader() as session:
        rows = session.scalars(select(AuditEventRow).where(AuditEventRow.action == action)).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def test_drift_compaction_and_retention_over_a_mixed_log(platform: Platform) -> None:
    version = register_and_deploy(platform)
    # Ten minutes into an hour three hours back: the four typed files below must share one hour, as compaction
    # merges an hour's files (seconds before a full hour they straddled two).
    hours_ago = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=10, second=0, microsecond=0)
    old_frame, new_frame = current_frame(400, shift=1.0, seed=3), current_frame(400, shift=1.0, seed=4)
    log_rows(platform, old_frame, version=version, ts=hours_ago)  # written before typed columns
    for part in range(4):  # four small typed files of the same hour
        chunk = new_frame.iloc[part * 100 : (part + 1) * 100]
        log_typed_rows(platform, chunk, version=version, ts=hours_ago + timedelta(seconds=part), prefix=f"t{part}")
    log = PredictionLog(platform.artifacts)
    columns = {"income": "DOUBLE", "region": "VARCHAR", "member": "BOOLEAN"}
    window = log.window("dev", PROJECT, version=version, columns=columns)
    expected = sorted(old_frame["income"].tolist() + new_frame["income"].tolist())
    assert sorted(window["income"].tolist()) == expected  # exact values from both kinds of file
    assert sorted(window["region"].tolist()) == sorted(old_frame["region"].tolist() + new_frame["region"].tolist())

    report = platform.drift.report(OWNER, PROJECT, "dev", window="1d")
    assert report.rows == 800
    assert "income" in {f.feature for f in report.features if f.drifted}

    files = len(log.files("predictions", "dev", PROJECT))
    run = platform.monitoring.run_once()  # the server's schedule runs the same pass
    assert next(r for r in run.runs if r.monitor == "prediction-log").status == "succeeded"
    compacted = log.files("predictions", "dev", PROJECT)
    assert len(compacted) == 2 < files  # the typed files merged into one; the JSON-text file alone stays
    assert sorted(key_version(key) or 0 for key in compacted) == [0, version]
    again = platform.drift.report(OWNER, PROJECT, "dev", window="1d")
    assert again.rows == 800
    assert [(f.feature, f.statistic) for f in again.features] == [(f.feature, f.statistic) for f in report.features]
    entry = audited(platform, "predictions.compact")[-1]
    assert entry.environment == "dev" and entry.details["files_in"] == 4 and entry.details["rows"] == 400
    assert platform.prediction_log.compact(OWNER, "dev").groups == 0  # idempotent

    # Retention: the environment's setting, a project's own overriding it; whole days older go, audited
    log_typed_rows(platform, current_frame(50), version=version, ts=datetime.now(UTC) - timedelta(days=6), prefix="o")
    assert platform.prediction_log.apply_retention(OWNER, "dev") == []  # nothing set: kept for ever
    config = platform.environments.get("dev").config.model_dump(mode="json")
    platform.environments.configure(OWNER, "dev", {**config, "prediction_log_retention_days": 3})
    assert platform.prediction_log.retention_days("dev", PROJECT) == 3
    expired = platform.prediction_log.apply_retention(OWNER, "dev")
    assert [(e.project, e.keep_days, e.files, e.rows) for e in expired] == [(PROJECT, 3, 1, 50)]
    assert log.count("dev", PROJECT) == 800
    entry = audited(platform, "predictions.retention")[-1]
    assert entry.target == PROJECT and entry.details["rows"] == 50 and entry.details["keep_days"] == 3
    with platform.db.transaction() as session:  # what registering with [monitoring.prediction_log] stores
        row = session.scalar(select(ProjectRow).where(ProjectRow.name == PROJECT))
        row.settings = {**(row.settings or {}), "monitoring": {"prediction_log": {"retention_days": 30}}}
    assert platform.prediction_log.retention_days("dev", PROJECT) == 30


def test_only_operators_maintain_the_log_and_one_pass_runs_at_a_time(platform: Platform) -> None:
    viewer = Actor(name="vera", roles=frozenset({"viewer"}))
    with pytest.raises(PermissionDeniedError):
        platform.prediction_log.compact(viewer, "dev")
    with pytest.raises(PermissionDeniedError):
        platform.prediction_log.apply_retention(viewer, "dev")
    with platform.prediction_log._exclusive(), pytest.raises(ConflictError):
        platform.prediction_log.compact(OWNER, "dev")
    assert platform.prediction_log.compact(OWNER, "dev").groups == 0
