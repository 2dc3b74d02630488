"""The drift monitor: every deployment's drift report on a cadence, turned into alerts.

For each deployment with a champion, at most once per ``drift_every`` seconds, it computes
and stores the drift report of the project's ``[monitoring.drift] window`` (the report
``harbourmaster drift`` prints) and writes one result per question: did the data drift
(the dataset verdict, naming the drifted features, most drifted first), did the
predictions drift, and could drift be measured at all. A window with fewer rows than the
project's ``min_rows`` is not judged: its alerts stay as they are.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from harbourmaster.core.alerts import MonitorResult, Rule, Status, StatusRule
from harbourmaster.core.drift import DriftReport, FeatureDrift
from harbourmaster.core.drift_window import window_phrase
from harbourmaster.errors import HarbourmasterError
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import MonitorResultRow

if TYPE_CHECKING:
    from harbourmaster.services.monitoring import MonitorContext

MONITOR = "drift"
_NAMED = 5  # drifted features named in an alert's summary; the details hold them all


class DriftMonitor:
    """Data and prediction drift of every deployment against its served version's reference."""

    name = MONITOR
    rules: tuple[Rule, ...] = (
        StatusRule("drift.dataset", MONITOR, "dataset"),
        StatusRule("drift.prediction", MONITOR, "prediction"),
        StatusRule("drift.unmeasurable", MONITOR, "measurable"),
    )

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        platform = context.platform
        actor = Actor.system("drift-monitor")
        results: list[MonitorResult] = []
        for project, environment in self._due(context):
            subject = f"{project}/{environment}"
            try:
                report = platform.drift.report(actor, project, environment, now=context.now)
            except HarbourmasterError as exc:
                results.append(
                    _result(
                        subject,
                        "measurable",
                        Status.WARNING,
                        f"drift of {subject} cannot be measured: {exc.message}",
                        project,
                        environment,
                    )
                )
                continue
            results.append(_result(subject, "measurable", Status.OK, "measured", project, environment))
            results.extend(_judged(report, subject, platform.drift.project_settings(project).min_rows))
        return results

    @staticmethod
    def _due(context: MonitorContext) -> list[tuple[str, str]]:
        """Deployments with a champion whose last drift measurement is older than the cadence."""
        since = context.now - timedelta(seconds=context.settings.drift_every)
        deployments = context.platform.deployments.with_champion()
        with context.platform.db.reader() as session:
            recent = set(
                session.scalars(
                    select(MonitorResultRow.subject)
                    .where(MonitorResultRow.monitor == MONITOR, MonitorResultRow.metric == "measurable")
                    .where(MonitorResultRow.measured_at > since)
                    .group_by(MonitorResultRow.subject)
                    .having(func.count() > 0)
                )
            )
        return [(project, env) for project, env in deployments if f"{project}/{env}" not in recent]


def _judged(report: DriftReport, subject: str, min_rows: int) -> list[MonitorResult]:
    project, environment = report.project, report.environment
    evidence = f"drift-report:{report.id}"
    if report.rows < min_rows:
        summary = (
            f"{subject}: {report.rows} rows in {window_phrase(report.window)}, fewer than the {min_rows} "
            "needed to judge drift ([monitoring.drift] min_rows)"
        )
        return [_result(subject, "window", Status.OK, summary, project, environment, report.rows, evidence)]
    ranked = sorted((f for f in report.features if f.drifted), key=lambda f: f.score, reverse=True)
    named = ", ".join(f"{f.feature} ({_statistic(f)})" for f in ranked[:_NAMED])
    more = f" and {len(ranked) - _NAMED} more" if len(ranked) > _NAMED else ""
    measured = sum(f.statistic is not None for f in report.features)
    counted = f"{len(ranked)} of {measured} measured features drifted"
    counted_rows = "" if report.window.endswith("rows") else f" ({report.rows} rows)"
    where = f"v{report.version} in {environment}, {window_phrase(report.window)}{counted_rows}"
    if report.drifted:
        summary = f"{project}: data drift, {counted}: {named}{more}; {where}"
    else:
        drifted_part = f": {named}{more}" if ranked else ""
        summary = (
            f"{project}: no data drift ({counted}{drifted_part}; the dataset drifts at "
            f"{report.drift_share:.0%}); {where}"
        )
    details = {
        "report": report.id,
        "drifted_share": report.drifted_share,
        "drifted_features": [{"feature": f.feature, "method": f.method, "score": f.score} for f in ranked],
    }
    results = [
        _result(
            subject,
            "dataset",
            Status.WARNING if report.drifted else Status.OK,
            summary,
            project,
            environment,
            report.drifted_share,
            evidence,
            details,
        )
    ]
    prediction = report.prediction
    if prediction is not None and prediction.statistic is not None:
        status = Status.WARNING if prediction.drifted else Status.OK
        verdict = "drifted" if prediction.drifted else "did not drift"
        summary = (
            f"{project}: the predictions of v{report.version} in {environment} {verdict} "
            f"({_statistic(prediction)}, threshold {prediction.threshold:g})"
        )
        score = prediction.score
        results.append(_result(subject, "prediction", status, summary, project, environment, score, evidence))
    return results


def _statistic(drift: FeatureDrift) -> str:
    """ "ks p=3.1e-05" for a test's p-value, "wasserstein 0.31" for a distance."""
    value = f"p={drift.statistic:.2g}" if drift.method and drift.method.is_pvalue else f"{drift.statistic:.3g}"
    return f"{drift.method} {value}"


def _result(
    subject: str,
    metric: str,
    status: Status,
    summary: str,
    project: str,
    environment: str,
    value: float | None = None,
    evidence: str | None = None,
    details: dict[str, object] | None = None,
) -> MonitorResult:
    return MonitorResult(
        MONITOR,
        metric,
        subject,
        status,
        summary,
        value,
        project=project,
        environment=environment,
        evidence=evidence,
        details=details or {},
    )
