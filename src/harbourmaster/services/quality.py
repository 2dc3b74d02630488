"""Model quality of a deployment: its window of the prediction log joined to the ground truth that
arrived (feedback, on request id and row), scored (``core/quality.py``) against the version's held-out
metrics, stored (``quality_reports``), and watched by the ``model_quality`` monitor.

``report`` checks the caller may read the environment (a prod quality report is a prod read, audited)
and stores what it computed; ``measure`` is the same computation without a caller, for the monitor
and the evidence of promotion gates.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from harbourmaster.core.alerts import MonitorResult, Rule, Status, StatusRule
from harbourmaster.core.drift_window import parse_window
from harbourmaster.core.permissions import Permission
from harbourmaster.core.quality import QualityReport, QualitySettings, class_key, compare_metrics, compute_quality
from harbourmaster.core.schema import OutputSchema
from harbourmaster.errors import NotFoundError, parse_settings
from harbourmaster.services.actors import Actor
from harbourmaster.store.prediction_log import PredictionLog
from harbourmaster.store.tables import DeploymentRow, GateEvidenceRow, ProjectRow, QualityReportRow

if TYPE_CHECKING:
    pass
    from harbourmaster.services.monitoring import MonitorContext
    from harbourmaster.services.platform import Platform

MONITOR = "model_quality"
REPORT_RETENTION = timedelta(days=30)  # the monitor stores a report per deployment and run
log = logging.getLogger("harbourmaster.monitoring")
QUALITY_KEYS = (
    "keys: window (N rows, 30m/6h/1d, A..B), tolerance (0 < t <= 10, relative), min_labelled_rows (>= 1), "
    "metrics (accuracy, f1, roc_auc, rmse, mae, r2)"
)


def quality_settings(value: dict[str, Any] | QualitySettings | None) -> QualitySettings:
    """``[monitoring.quality]`` (or request options) as ``QualitySettings``; a clear error naming each bad key."""
    return parse_settings(QualitySettings, value, "quality", QUALITY_KEYS, prefix="quality settings: ")


class QualityService:
    """Quality reports of deployments, their stored series, and the window figures behind evidence."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def report(
        self,
        actor: Actor,
        project: str,
        environment: str,
        *,
        window: str | None = None,
        version: int | None = None,
        now: datetime | None = None,
    ) -> QualityReport:
        """Compute, store and return the quality of ``project`` in ``environment`` over ``window`` (default:
        the project's ``[monitoring.quality] window``, else the last day) for the champion, or for ``version``
        (e.g. a canary challenger: the rows it answered there)."""
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        self._platform.environments.get(environment)
        report = self.measure(project, environment, window=window, version=version, now=now)
        with self._platform.db.transaction() as session:
            session.add(_row(report))
            if self._platform.access.is_guarded(environment):
                self._platform.audit.record(
                    session,
                    actor,
                    "quality.report",
                    project,
                    environment=environment,
                    details={"report": report.id, "window": report.window, "labelled": report.labelled},
                )
        return report

    def history(self, actor: Actor, project: str, environment: str, *, limit: int = 100) -> list[QualityReport]:
        """Stored quality reports of a deployment, newest first."""
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        self._platform.environments.get(environment)
        with self._platform.db.reader() as session:
            _project(session, project)
            rows = session.scalars(
                select(QualityReportRow)
                .where(QualityReportRow.project == project, QualityReportRow.environment == environment)
                .order_by(QualityReportRow.computed_at.desc(), QualityReportRow.id.desc())
                .limit(limit)
            )
            return [QualityReport.model_validate(row.details) for row in rows]

    def settings(self, project: str) -> QualitySettings:
        with self._platform.db.reader() as session:
            stored = (_project(session, project).settings or {}).get("monitoring", {}).get("quality", {})
        return quality_settings(stored)

    def save(self, report: QualityReport) -> None:
        with self._platform.db.transaction() as session:
            session.add(_row(report))

    def prune(self, before: datetime) -> int:
        """Delete the quality reports computed before ``before``, except those evidence links to; the count."""
        with self._platform.db.transaction() as session:
            linked = {
                link.partition(":")[2]
                for links in session.scalars(select(GateEvidenceRow.reports))
                for link in links or []
                if link.startswith("quality-report:")
            }
            stale = [
                row_id
                for row_id, report_id in session.execute(
                    select(QualityReportRow.id, QualityReportRow.report_id).where(QualityReportRow.computed_at < before)
                )
                if report_id not in linked
            ]
            for start in range(0, len(stale), 500):
                session.execute(delete(QualityReportRow).where(QualityReportRow.id.in_(stale[start : start + 500])))
            return len(stale)

    def measure(
        self,
        project: str,
        environment: str,
        *,
        window: str | None = None,
        version: int | None = None,
        now: datetime | None = None,
    ) -> QualityReport:
        """The quality report of ``version`` (default: the champion) over ``window``, not stored."""
        with self._platform.db.reader() as session:
            project_row = _project(session, project)
            deployment = session.scalar(
                select(DeploymentRow).where(
                    DeploymentRow.project_id == project_row.id, DeploymentRow.environment == environment
                )
            )
            if deployment is None or (deployment.champion is None and version is None):
                raise NotFoundError(
                    f"{project} has no champion in {environment}",
                    f"deploy a version: harbourmaster deploy {project} VERSION --env {environment}",
                )
            measured = (
                deployment.champion
                if version is None or (deployment.champion and deployment.champion.number == version)
                else self._platform.registry.version_row(session, project, version)
            )
            assert measured is not None
            number, baseline = measured.number, dict(measured.metrics or {})
            output = OutputSchema.model_validate(measured.output_schema)
            stored = (project_row.settings or {}).get("monitoring", {}).get("quality", {})
        settings = quality_settings(stored)
        span = parse_window(window or settings.window, now)
        task = output.task if output.task != "other" else _task_of(output)
        classes = output.classes if task == "classification" else None
        positive = class_key(classes[1]) if classes and len(classes) == 2 else None
        frame = PredictionLog(self._platform.artifacts).labelled_window(
            environment,
            project,
            version=number,
            numeric=task == "regression",
            positive=positive,
            last_rows=span.last_rows,
            start=span.start,
            end=span.end,
        )
        labelled = frame[frame["truth"].notna()]
        known = {class_key(c) for c in classes} if classes else None
        unknown = 0
        if known is not None and not labelled.empty:
            unknown = int((~labelled["truth"].map(class_key).isin(known)).sum())
        values, used, notes = compute_quality(labelled, task, classes)
        judged = used >= settings.min_labelled_rows
        comparisons = compare_metrics(values, baseline, settings.tolerance, settings.metrics)
        if not judged:
            comparisons = [m.model_copy(update={"degraded": False}) for m in comparisons]
        if frame.empty:
            notes.insert(0, f"the window {span.text} holds no logged prediction of v{number}: nothing to measure")
        elif labelled.empty:
            notes.insert(0, f"none of the {len(frame)} predictions of v{number} in {span.text} has ground truth yet")
        if unknown:
            notes.append(
                f"{unknown} labelled row(s) name a class v{number} does not have "
                f"({', '.join(map(str, classes or []))}): left out"
            )
        if used and not judged:
            notes.append(f"{used} labelled row(s), fewer than the {settings.min_labelled_rows} needed to judge")
        missing = [m.metric for m in comparisons if m.baseline is None and m.value is not None]
        if missing:
            notes.append(f"v{number} has no held-out {', '.join(missing)} to compare with")
        return QualityReport(
            id=uuid.uuid4().hex,
            project=project,
            environment=environment,
            version=number,
            task=task,
            window=span.text,
            window_start=_instant(frame["ts"].min()) if not frame.empty else span.start,
            window_end=_instant(frame["ts"].max()) if not frame.empty else span.end,
            rows=len(frame),
            labelled=used,
            unlabelled=int(frame["truth"].isna().sum()),
            unknown_labels=unknown,
            min_labelled_rows=settings.min_labelled_rows,
            tolerance=settings.tolerance,
            judged=judged,
            degraded=judged and any(m.degraded for m in comparisons),
            metrics=comparisons,
            notes=notes,
            computed_at=datetime.now(UTC),
        )


class QualityMonitor:
    """Per deployment that has ground truth: its champion's quality over the project's window against
    its held-out metrics. ``drop`` is warning when a metric drops beyond the tolerance, critical beyond
    twice it; a window with too few labelled rows gives no verdict (an open alert stays open). A deployment
    whose quality cannot be measured (e.g. broken settings) is a warning of its own; the others still run."""

    name = MONITOR
    rules: tuple[Rule, ...] = (
        StatusRule("model_quality.drop", MONITOR, "drop"),
        StatusRule("model_quality.unmeasurable", MONITOR, "measurable"),
    )

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        platform = context.platform
        deployed = platform.deployments.with_champion()
        platform.quality.prune(context.now - REPORT_RETENTION)
        prediction_log = PredictionLog(platform.artifacts)
        results: list[MonitorResult] = []
        for project, environment in deployed:
            if not prediction_log.files("feedback", environment, project):
                continue  # no ground truth ever arrived: nothing to judge
            subject = f"{project}/{environment}"
            try:
                report = platform.quality.measure(project, environment, now=context.now)
                platform.quality.save(report)
            except Exception as exc:  # one deployment's problem must not hide the others' quality
                log.exception("model quality of %s could not be measured", subject)
                results.append(
                    MonitorResult(
                        MONITOR,
                        "measurable",
                        subject,
                        Status.WARNING,
                        f"the model quality of {project} in {environment} could not be measured: "
                        f"{type(exc).__name__}: {exc}",
                        project=project,
                        environment=environment,
                    )
                )
                continue
            results.append(
                MonitorResult(
                    MONITOR, "measurable", subject, Status.OK, "measured", project=project, environment=environment
                )
            )
            results.extend(_results(report))
        return results


def _results(report: QualityReport) -> list[MonitorResult]:
    subject = f"{report.project}/{report.environment}"
    evidence = f"quality-report:{report.id}"
    common: dict[str, Any] = {"project": report.project, "environment": report.environment, "evidence": evidence}
    figures = ", ".join(
        f"{m.metric} {m.value:.4f}" + (f" (held out {m.baseline:.4f})" if m.baseline is not None else "")
        for m in report.metrics
        if m.value is not None
    )
    results = [
        MonitorResult(
            MONITOR,
            "labelled-rows",
            subject,
            Status.OK,
            f"{report.labelled} labelled, {report.unlabelled} waiting for ground truth in {report.window}",
            value=float(report.labelled),
            details={"unlabelled": report.unlabelled, "unknown_labels": report.unknown_labels},
            **common,
        )
    ]
    if not report.judged:
        return results
    worst = report.worst_drop or 0.0
    degraded = [m for m in report.metrics if m.degraded]
    if not degraded:
        status, summary = Status.OK, f"v{report.version} on {report.labelled} labelled rows: {figures}"
    else:
        status = Status.CRITICAL if worst > 2 * report.tolerance else Status.WARNING
        dropped = ", ".join(
            f"{m.metric} {m.value:.4f} vs {m.baseline:.4f} held out ({m.drop:.1%} worse)"
            for m in degraded
            if m.value is not None and m.baseline is not None and m.drop is not None
        )
        summary = (
            f"v{report.version} quality dropped beyond {report.tolerance:.0%} on {report.labelled} labelled rows "
            f"of {report.window}: {dropped}"
        )
    results.append(
        MonitorResult(
            MONITOR,
            "drop",
            subject,
            status,
            summary,
            value=worst,
            details={"version": report.version, "metrics": report.values},
            **common,
        )
    )
    return results


def _row(report: QualityReport) -> QualityReportRow:
    return QualityReportRow(
        report_id=report.id,
        project=report.project,
        environment=report.environment,
        version=report.version,
        task=report.task,
        window=report.window,
        window_start=report.window_start,
        window_end=report.window_end,
        rows=report.rows,
        labelled=report.labelled,
        unlabelled=report.unlabelled,
        unknown_labels=report.unknown_labels,
        judged=report.judged,
        degraded=report.degraded,
        worst_drop=report.worst_drop,
        details=report.model_dump(mode="json"),
        computed_at=report.computed_at,
    )


def _project(session: Any, project: str) -> ProjectRow:
    row = session.scalar(select(ProjectRow).where(ProjectRow.name == project))
    if row is None:
        raise NotFoundError(f"project {project!r} does not exist", "list projects with: harbourmaster projects")
    return row


def _task_of(output: OutputSchema) -> str:
    return "regression" if output.dtype in ("float", "integer") and not output.classes else "other"


def _instant(value: Any) -> datetime | None:
    import pandas as pd

    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime().astimezone(UTC)
