"""Service levels of deployments: the figures of each window against the environment's SLA, and the
SLA monitor that raises the burn-rate alerts.

The data are the traffic samples the replicas' heartbeats carry (``services/replicas.py``
keeps them, ``store/traffic_samples.py`` reads them back); the math is ``core/sla.py``.
``report`` is a person's read of one deployment (``read`` on the environment, audited when
guarded, like a drift report); ``assess_all`` is the monitor's pass over every deployment.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbourmaster.core.alerts import MonitorResult, Rule, Status, StatusRule
from harbourmaster.core.permissions import Permission
from harbourmaster.core.sla import WINDOWS, SlaReport, assess
from harbourmaster.errors import NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.store import traffic_samples
from harbourmaster.store.tables import AlertRow, DeploymentRow, ProjectRow

if TYPE_CHECKING:
    from harbourmaster.services.monitoring import MonitorContext
    from harbourmaster.services.platform import Platform

# Samples read: the longest window, and before it the baseline sample of each replica.
LOOKBACK = timedelta(seconds=max(WINDOWS.values())) + timedelta(minutes=15)
FIGURES_WINDOW = "1h"  # the window of the stored figures (every window is in the result's details)


class SlaService:
    """Deployments' service levels, computed from the replicas' traffic samples."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def report(self, actor: Actor, project: str, environment: str, now: datetime | None = None) -> SlaReport:
        """The SLA figures of ``project`` in ``environment`` over every window, and both burn alerts' state."""
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        sla = self._platform.environments.get(environment).config.sla
        now = now or datetime.now(UTC)
        with self._platform.db.transaction() as session:
            project_row = session.scalar(select(ProjectRow).where(ProjectRow.name == project))
            if project_row is None:
                raise NotFoundError(f"project {project!r} does not exist", "list projects with: harbourmaster projects")
            deployed = session.scalar(
                select(DeploymentRow.id).where(
                    DeploymentRow.project_id == project_row.id, DeploymentRow.environment == environment
                )
            )
            if deployed is None:
                raise NotFoundError(
                    f"{project} is not deployed in {environment}",
                    f"deploy it: harbourmaster deploy {project} VERSION --env {environment}",
                )
            found = traffic_samples.series(session, now - LOOKBACK, environment, project)
            report = assess(project, environment, sla, list(found.get((project, environment), {}).values()), now)
            if self._platform.access.is_guarded(environment, session):
                self._platform.audit.record(
                    session,
                    actor,
                    "sla.read",
                    project,
                    environment=environment,
                    details={"requests_1h": report.window("1h").requests},
                )
        return report

    def assess_all(self, now: datetime) -> list[SlaReport]:
        """Every deployment with a champion, against its environment's SLA (the monitor's pass)."""
        slas = {env.name: env.config.sla for env in self._platform.environments.list()}
        deployments = self._platform.deployments.with_champion()
        with self._platform.db.reader() as session:
            found = traffic_samples.series(session, now - LOOKBACK)
        return [
            assess(project, environment, slas[environment], list(found.get((project, environment), {}).values()), now)
            for project, environment in deployments
            if environment in slas
        ]


class SlaMonitor:
    """Per deployment: throughput, p50/p95/p99 latency, error and fallback rates against the SLA (over
    the last hour; every window in the details), and the two burn-rate alerts of the SRE workbook."""

    name = "sla"
    rules: tuple[Rule, ...] = (
        StatusRule("sla.fast-burn", "sla", "fast-burn"),
        StatusRule("sla.slow-burn", "sla", "slow-burn"),
        StatusRule("sla.throughput", "sla", "throughput"),
    )

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        reports = context.platform.sla.assess_all(context.now)
        results = [result for report in reports for result in _results(report)]
        measured = {r.subject for r in results}
        with context.platform.db.reader() as session:
            for subject, project, environment in _open_alerts(session, self.name):
                if subject not in measured:  # no longer deployed: what was open about it is over
                    results.extend(
                        MonitorResult(
                            self.name,
                            metric,
                            subject,
                            Status.OK,
                            "no longer deployed",
                            None,
                            project=project,
                            environment=environment,
                            evidence=f"sla:{subject}",
                        )
                        for metric in ("fast-burn", "slow-burn", "throughput")
                    )
        return results


def _open_alerts(session: Session, monitor: str) -> list[tuple[str, str | None, str | None]]:
    rows = session.execute(
        select(AlertRow.subject, AlertRow.project, AlertRow.environment)
        .where(AlertRow.open_key.is_not(None), AlertRow.monitor == monitor)
        .distinct()
    ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def _results(report: SlaReport) -> list[MonitorResult]:
    subject = f"{report.project}/{report.environment}"
    sla, figures = report.sla, report.window(FIGURES_WINDOW)
    windows = [_finite(w.model_dump()) for w in report.windows]  # every window's figures and burn rates

    def result(metric: str, status: Status, summary: str, value: float | None, **extra: Any) -> MonitorResult:
        return MonitorResult(
            "sla",
            metric,
            subject,
            status,
            f"{subject}: {summary}",
            _number(value),
            project=report.project,
            environment=report.environment,
            evidence=f"sla:{subject}",
            details={"window": FIGURES_WINDOW, **extra},
        )

    def over(value: float | None, limit: float | None) -> Status:
        return Status.WARNING if value is not None and limit is not None and value > limit else Status.OK

    quiet = figures.requests == 0
    results = []
    low = sla.min_rps is not None and not quiet and (figures.throughput or 0.0) < sla.min_rps
    results.append(
        result(
            "throughput",
            Status.WARNING if low else Status.OK,
            f"{_rate(figures.throughput)} over {FIGURES_WINDOW} ({figures.requests:.0f} requests)"
            + (f", SLA at least {sla.min_rps:g}/s" if sla.min_rps is not None else ""),
            figures.throughput,
        )
    )
    for q, limit in (("p50", sla.p50_ms), ("p95", sla.p95_ms), ("p99", sla.p99_ms)):
        value = getattr(figures, f"{q}_ms")
        text = "no timed request" if value is None else f"{value:.1f} ms"
        bound = f" (SLA {limit:g} ms)" if limit is not None else ""
        results.append(result(f"latency-{q}", over(value, limit), f"{q} {text} over {FIGURES_WINDOW}{bound}", value))
    for metric, value, limit in (
        ("error-rate", figures.error_rate, sla.error_rate),
        ("fallback-rate", figures.fallback_rate, sla.fallback_rate),
    ):
        text = "no request" if value is None else f"{value:.3%}"
        bound = f" (SLA {limit:g})" if limit is not None else ""
        results.append(result(metric, over(value, limit), f"{metric} {text} over {FIGURES_WINDOW}{bound}", value))
    for verdict in report.alerts:
        status = Status(verdict.severity) if verdict.firing else Status.OK
        strongest = max(
            (min(_number(v) or 0.0 for v in verdict.burn[name]) for name in verdict.objectives), default=None
        )
        results.append(
            result(
                f"{verdict.alert}-burn",
                status,
                verdict.summary,
                strongest,
                alert=_finite(verdict.model_dump()),
                windows=windows,
            )
        )
    return results


def _finite(value: Any) -> Any:
    """JSON details without NaN (PostgreSQL's JSON refuses it; no figure should be NaN anyway)."""
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _rate(value: float | None) -> str:
    return "no traffic" if value is None else f"{value:.3g} requests/s"
