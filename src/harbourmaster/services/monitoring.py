"""Running monitors: each run measures, stores its results, lets the rules judge them, applies
the verdicts to alerts, and delivers the notifications that are due.

A monitor is anything with a ``name``, its ``rules`` and ``measure(context)``; the
infrastructure monitors are the first, and other kinds (drift, pipeline runs, model
quality, SLA) plug in with ``MonitoringService.register`` and change nothing here. A
monitor that raises is recorded as a failed run; the others still run, and the
scheduler inside ``harbourmaster server`` keeps going.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel
from sqlalchemy import delete, select

from harbourmaster.core.alerts import MonitorResult, Rule, Verdict
from harbourmaster.core.permissions import Permission
from harbourmaster.monitoring_settings import MonitoringSettings
from harbourmaster.services.actors import Actor
from harbourmaster.services.alerts import AppliedChange
from harbourmaster.services.drift_monitor import DriftMonitor
from harbourmaster.services.infrastructure import infrastructure_monitors
from harbourmaster.services.log_maintenance import PredictionLogMonitor
from harbourmaster.services.quality import QualityMonitor
from harbourmaster.store.tables import MonitorResultRow, MonitorRunRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

log = logging.getLogger("harbourmaster.monitoring")
RESULT_RETENTION = timedelta(days=30)


@dataclass
class MonitorContext:
    """What a monitor gets for one run: the platform, the thresholds, the time of the run."""

    platform: Platform
    settings: MonitoringSettings
    now: datetime
    _previous: dict[tuple[str, str, str], float | None] = field(default_factory=dict)

    def previous_value(self, monitor: str, metric: str, subject: str) -> float | None:
        """The value of the newest stored result for this monitor, metric and subject (None: none yet)."""
        key = (monitor, metric, subject)
        if key not in self._previous:
            with self.platform.db.reader() as session:
                self._previous[key] = session.scalar(
                    select(MonitorResultRow.value)
                    .where(MonitorResultRow.monitor == monitor)
                    .where(MonitorResultRow.metric == metric)
                    .where(MonitorResultRow.subject == subject)
                    .order_by(MonitorResultRow.id.desc())
                    .limit(1)
                )
        return self._previous[key]


class Monitor(Protocol):
    """Measures something and says, per result, ok, warning or critical; its rules make alerts of them."""

    name: str
    rules: Sequence[Rule]

    def measure(self, context: MonitorContext) -> list[MonitorResult]: ...


class MonitorRunInfo(BaseModel):
    id: int | None
    monitor: str
    status: str  # succeeded | failed
    results: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class MonitorResultInfo(BaseModel):
    monitor: str
    metric: str
    subject: str
    status: str
    value: float | None
    summary: str
    project: str | None
    environment: str | None
    evidence: str | None
    details: dict[str, Any] = {}


class RunReport(BaseModel):
    """What one pass of every monitor did."""

    runs: list[MonitorRunInfo]
    results: list[MonitorResultInfo]
    changes: list[AppliedChange]
    queued: int  # notifications queued by these changes
    delivered: int  # notifications delivered by this call (0 when delivery is left to the server)


class MonitoringService:
    """Holds the monitors and runs them (all at once: ``run_once``; on a schedule: ``start``)."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self.monitors: list[Monitor] = [*infrastructure_monitors(), PredictionLogMonitor(), DriftMonitor()]
        self.register(QualityMonitor())
        self._run_lock = threading.Lock()

    def register(self, monitor: Monitor) -> None:
        """Add a monitor (another kind plugs in here); a second one with the same name replaces the first."""
        self.monitors = [m for m in self.monitors if m.name != monitor.name] + [monitor]

    def run_once(self, actor: Actor | None = None, *, deliver: bool = True) -> RunReport:
        """Run every monitor once, apply its rules, then deliver due notifications (``monitor --once``)."""
        if actor is not None:  # people (and cron jobs with a token) need operator rights to trigger a run
            self._platform.access.require(actor, Permission.DEPLOY, target="monitors")
        with self._run_lock:
            settings = self._platform.settings.monitoring
            context = MonitorContext(self._platform, settings, datetime.now(UTC))
            runs: list[MonitorRunInfo] = []
            results: list[MonitorResult] = []
            verdicts: list[Verdict] = []
            for monitor in list(self.monitors):
                run, measured = self._run_monitor(monitor, context)
                runs.append(run)
                results.extend(measured)
                if run.status == "succeeded":
                    verdicts.extend(self._judge(monitor, measured))
            changes = self._platform.alerts.apply(verdicts, context.now) if verdicts else []
            self._lifecycle_cases(changes, context.now)
            self._prune(context.now)
        delivered = self._platform.notifiers.deliver_due() if deliver else 0
        return RunReport(
            runs=runs,
            results=[_result_info(r) for r in results],
            changes=changes,
            queued=sum(change.notifications for change in changes),
            delivered=delivered,
        )

    def runs(self, actor: Actor, limit: int = 50) -> list[MonitorRunInfo]:
        self._platform.access.require(actor, Permission.READ, target="monitor-runs")
        with self._platform.db.reader() as session:
            rows = session.scalars(select(MonitorRunRow).order_by(MonitorRunRow.id.desc()).limit(limit))
            return [MonitorRunInfo.model_validate(row, from_attributes=True) for row in rows]

    def _run_monitor(self, monitor: Monitor, context: MonitorContext) -> tuple[MonitorRunInfo, list[MonitorResult]]:
        started = datetime.now(UTC)
        try:
            measured = monitor.measure(context)
            error = None
        except Exception as exc:
            log.exception("monitor %s failed", monitor.name)
            measured, error = [], f"{type(exc).__name__}: {exc}"
        finished = datetime.now(UTC)
        run = MonitorRunInfo(
            id=None,
            monitor=monitor.name,
            status="failed" if error else "succeeded",
            results=len(measured),
            error=error,
            started_at=started,
            finished_at=finished,
        )
        try:
            with self._platform.db.transaction() as session:
                row = MonitorRunRow(**run.model_dump(exclude={"id"}))
                session.add(row)
                session.flush()
                run.id = row.id
                session.add_all(
                    MonitorResultRow(
                        run_id=row.id,
                        monitor=r.monitor,
                        metric=r.metric,
                        subject=r.subject,
                        project=r.project,
                        environment=r.environment,
                        value=r.value,
                        status=r.status.value,
                        summary=r.summary[:4000],
                        evidence=r.evidence,
                        details=r.details,
                        measured_at=context.now,
                    )
                    for r in measured
                )
        except Exception as exc:  # the database itself is down: say so loudly; the next run retries
            log.critical("monitor %s: results could not be stored (%s): %s", monitor.name, exc, _summaries(measured))
            run.status, run.error = "failed", f"results not stored: {type(exc).__name__}: {exc}"
            return run, []
        return run, measured

    @staticmethod
    def _judge(monitor: Monitor, results: list[MonitorResult]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for rule in monitor.rules:
            try:
                verdicts.extend(rule.evaluate(results))
            except Exception:
                log.exception("rule %s of monitor %s failed", rule.name, monitor.name)
        return verdicts

    def _lifecycle_cases(self, changes: list[AppliedChange], now: datetime) -> None:
        """Alerts a project's automation policy names open lifecycle cases; waiting cases are followed."""
        try:
            self._platform.cases.open_from_alerts(changes, now)
            self._platform.cases.follow(now)
        except Exception:  # the monitors' pass stands; the next pass tries again
            log.exception("lifecycle cases could not be opened or followed")

    def _prune(self, now: datetime) -> None:
        try:
            with self._platform.db.transaction() as session:
                cutoff = now - RESULT_RETENTION
                session.execute(delete(MonitorResultRow).where(MonitorResultRow.measured_at < cutoff))
                old_runs = select(MonitorRunRow.id).where(MonitorRunRow.started_at < cutoff)
                session.execute(delete(MonitorResultRow).where(MonitorResultRow.run_id.in_(old_runs)))
                session.execute(delete(MonitorRunRow).where(MonitorRunRow.started_at < cutoff))
        except Exception:
            log.exception("could not prune old monitor results")

    def deliver_due(self) -> int:
        """Deliver the notifications that are due (retries included)."""
        return self._platform.notifiers.deliver_due()

    def start(self, interval: float | None = None) -> MonitorScheduler | None:
        """Run every ``interval`` seconds (default: the settings') in a background thread; None when 0."""
        seconds = self._platform.settings.monitoring.interval if interval is None else interval
        if seconds <= 0:
            return None
        scheduler = MonitorScheduler(self, seconds)
        scheduler.start()
        return scheduler


def _result_info(result: MonitorResult) -> MonitorResultInfo:
    return MonitorResultInfo(
        monitor=result.monitor,
        metric=result.metric,
        subject=result.subject,
        status=result.status.value,
        value=result.value,
        summary=result.summary,
        project=result.project,
        environment=result.environment,
        evidence=result.evidence,
        details=result.details,
    )


def _summaries(results: list[MonitorResult]) -> str:
    return "; ".join(f"{r.subject} {r.metric} {r.status.value}: {r.summary}" for r in results) or "none"


class MonitorScheduler(threading.Thread):
    """Runs the monitors at once, then every ``interval`` seconds, and delivers due notifications
    in between (every ``delivery_interval``) until stopped. Nothing it meets stops it."""

    def __init__(self, service: MonitoringService, interval: float, delivery_interval: float = 1.0) -> None:
        super().__init__(name="monitors", daemon=True)
        self._service = service
        self._interval = interval
        self._delivery_interval = min(delivery_interval, interval)
        self._stopped = threading.Event()
        self.passes = 0

    def run(self) -> None:
        next_run = time.monotonic()
        while not self._stopped.is_set():
            try:
                if time.monotonic() >= next_run:
                    next_run = time.monotonic() + self._interval
                    self._service.run_once()
                    self.passes += 1
                else:
                    self._service.deliver_due()
            except Exception:  # a database hiccup: the next pass retries
                log.exception("scheduled monitor pass failed")
            self._stopped.wait(max(0.0, min(self._delivery_interval, next_run - time.monotonic())))

    def stop(self, timeout: float = 30.0) -> None:
        self._stopped.set()
        self.join(timeout)
