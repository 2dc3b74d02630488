"""Keeping the prediction log fast to read and bounded: compaction of small files, retention of old days.

Both run in the control plane: on the monitoring schedule inside ``harbourmaster server`` (the
``prediction-log`` monitor) and on demand with ``harbourmaster log compact`` / ``log retention``.
Each pass that changes the log is audited; one pass at a time per home (a file lock), so the CLI and
the server's scheduler never merge the same files twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from sqlalchemy import select

from harbourmaster.core.alerts import MonitorResult, Rule, Status
from harbourmaster.core.log_layout import LogSettings
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import ConflictError
from harbourmaster.services.actors import Actor
from harbourmaster.store.prediction_log import RetentionReport, compact, expire, projects
from harbourmaster.store.tables import ProjectRow

if TYPE_CHECKING:
    from harbourmaster.services.monitoring import MonitorContext
    from harbourmaster.services.platform import Platform

COMPACTION_GRACE = timedelta(minutes=10)  # an hour is merged this long after it ends


class CompactionInfo(BaseModel):
    """What one compaction pass did (all environments it covered)."""

    groups: int = 0  # (day, hour, version) groups merged
    files_in: int = 0
    files_out: int = 0
    rows: int = 0
    duplicates: int = 0  # identical rows met twice (a spool segment uploaded again after a crash)
    recovered: int = 0  # interrupted passes finished or undone
    outputs: list[str] = Field(default_factory=list)


class Expired(BaseModel):
    """What retention removed from one project's log in one environment."""

    environment: str
    project: str
    keep_days: int
    files: int
    rows: int
    days: list[str] = Field(default_factory=list)


class PredictionLogService:
    """Compaction and retention of the prediction log, with permissions and audit."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        folder = self._platform.settings.home / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "prediction-log.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConflictError(
                    "another compaction or retention pass of the prediction log is running",
                    "wait for it to finish (the server runs one on its monitoring schedule), then try again",
                ) from None
            yield
        finally:
            os.close(fd)

    def _environments(self, actor: Actor, environment: str | None, project: str | None) -> list[str]:
        names = [environment] if environment else [env.name for env in self._platform.environments.list()]
        for name in names:
            self._platform.environments.get(name)  # a typo is named
            self._platform.access.require(actor, Permission.DEPLOY, environment=name, target="prediction-log")
        if project is not None:
            with self._platform.db.reader() as session:
                self._platform.registry.project_row(session, project)  # a typo is named, not a silent no-op
        return names

    def compact(
        self,
        actor: Actor,
        environment: str | None = None,
        project: str | None = None,
        *,
        grace: timedelta = COMPACTION_GRACE,
        now: datetime | None = None,
    ) -> CompactionInfo:
        """Merge the small files of every closed hour (of one environment and project, when given)."""
        total = CompactionInfo()
        names = self._environments(actor, environment, project)
        with self._exclusive():
            for name in names:
                report = compact(self._platform.artifacts, environment=name, project=project, now=now, grace=grace)
                if report.groups or report.recovered:
                    self._platform.audit.record_alone(
                        actor,
                        "predictions.compact",
                        project or "*",
                        environment=name,
                        details={
                            "groups": report.groups,
                            "files_in": report.files_in,
                            "files_out": report.files_out,
                            "rows": report.rows,
                            "duplicates": report.duplicates,
                            "recovered": report.recovered,
                        },
                    )
                for key in ("groups", "files_in", "files_out", "rows", "duplicates", "recovered"):
                    setattr(total, key, getattr(total, key) + getattr(report, key))
                total.outputs += report.outputs
        return total

    def retention_days(self, environment: str, project: str) -> int | None:
        """The days a project's log is kept in an environment: the project's setting, else the environment's."""
        with self._platform.db.reader() as session:
            row = session.scalar(select(ProjectRow).where(ProjectRow.name == project))
            stored = ((row.settings or {}).get("monitoring") or {}).get("prediction_log") if row else None
        own = LogSettings.model_validate(stored or {}).retention_days
        if own is not None:
            return own
        return self._platform.environments.get(environment).config.prediction_log_retention_days

    def apply_retention(
        self, actor: Actor, environment: str | None = None, project: str | None = None, *, now: datetime | None = None
    ) -> list[Expired]:
        """Remove the days older than each project's retention (audited: what went, and under which setting)."""
        now = now or datetime.now(UTC)
        expired: list[Expired] = []
        names = self._environments(actor, environment, project)
        with self._exclusive():
            for name in names:
                for logged in projects(self._platform.artifacts, name):
                    if project is not None and logged != project:
                        continue
                    keep = self.retention_days(name, logged)
                    if keep is None:
                        continue
                    report: RetentionReport = expire(self._platform.artifacts, name, logged, keep, now)
                    if not report.files and not report.days:
                        continue
                    entry = Expired(
                        environment=name,
                        project=logged,
                        keep_days=keep,
                        files=report.files,
                        rows=report.rows,
                        days=report.days,
                    )
                    self._platform.audit.record_alone(
                        actor,
                        "predictions.retention",
                        logged,
                        environment=name,
                        details=entry.model_dump(exclude={"environment", "project"}),
                    )
                    expired.append(entry)
        return expired


class PredictionLogMonitor:
    """Runs compaction and retention on the monitoring schedule; reports what it did (no alert rule)."""

    name = "prediction-log"
    rules: list[Rule] = []

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        service = context.platform.prediction_log
        actor = Actor.system("prediction-log")
        try:
            compacted = service.compact(actor, now=context.now)
            expired = service.apply_retention(actor, now=context.now)
        except ConflictError:  # a pass started by hand is running: this one is skipped
            return []
        results = [
            MonitorResult(
                monitor=self.name,
                metric="compacted-files",
                subject="prediction-log",
                status=Status.OK,
                summary=f"{compacted.files_in} small files merged into {compacted.files_out} ({compacted.rows} rows)",
                value=float(compacted.files_in),
            )
        ]
        results += [
            MonitorResult(
                monitor=self.name,
                metric="expired-rows",
                subject=f"{entry.project}/{entry.environment}",
                status=Status.OK,
                summary=f"{entry.rows} rows of {', '.join(entry.days)} removed (kept {entry.keep_days} days)",
                value=float(entry.rows),
                project=entry.project,
                environment=entry.environment,
            )
            for entry in expired
        ]
        return results
