"""The pipeline-runs monitor: the newest finished run of each pipeline (a project's training, or its
batch scoring in one environment ...) raises an alert when it failed or when its input data was invalid,
and the next good run of that pipeline resolves it. A run still "running" long after it started (its
process died without recording an end) raises a warning until a newer run starts or it ends."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from harbourmaster.core.alerts import MonitorResult, Rule, Status, StatusRule
from harbourmaster.store.tables import AlertRow, RunRow

if TYPE_CHECKING:
    from harbourmaster.services.monitoring import MonitorContext

MONITOR = "pipeline-runs"
_SUMMARY = 300  # characters of a run's error in an alert's summary (the run holds all of it)


def pipeline_subject(project: str, kind: str, environment: str | None) -> str:
    """What one pipeline's alerts are about: ``runs:churn/train``, ``runs:churn/score/prod``."""
    return f"runs:{project}/{kind}" + (f"/{environment}" if environment else "")


class PipelineRunMonitor:
    """Per pipeline, its newest finished run: ``status`` (failed: critical) and ``validation`` of its
    input data (invalid: critical; valid with warnings is ok). Results are written for pipelines in
    trouble and for those with an open alert to resolve, not for every healthy pipeline at every pass."""

    name = MONITOR
    rules: tuple[Rule, ...] = (
        StatusRule("pipeline.run-failed", MONITOR, "status"),
        StatusRule("pipeline.input-invalid", MONITOR, "validation"),
        StatusRule("pipeline.run-stalled", MONITOR, "stalled"),
    )

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        newest = (
            select(func.max(RunRow.id))
            .where(RunRow.status != "running")
            .group_by(RunRow.project, RunRow.kind, RunRow.environment)
        )
        latest = select(func.max(RunRow.id)).group_by(RunRow.project, RunRow.kind, RunRow.environment)
        with context.platform.db.reader() as session:
            rows = session.scalars(select(RunRow).where(RunRow.id.in_(newest)).order_by(RunRow.id)).all()
            running = session.scalars(
                select(RunRow).where(RunRow.id.in_(latest), RunRow.status == "running").order_by(RunRow.id)
            ).all()
            alerted = set(
                session.scalars(
                    select(AlertRow.subject).where(AlertRow.open_key.is_not(None), AlertRow.monitor == MONITOR)
                )
            )
        results: list[MonitorResult] = []
        for row in rows:
            subject = pipeline_subject(row.project, row.kind, row.environment)
            for result in self._judge(row, subject):
                if result.status != Status.OK or subject in alerted:
                    results.append(result)
        stalled_after = timedelta(seconds=context.settings.run_stalled_after)
        stalled = {row.id: row for row in running if context.now - row.started_at > stalled_after}
        for row in rows + [row for row in running if row.id not in stalled]:
            subject = pipeline_subject(row.project, row.kind, row.environment)
            if subject in alerted:  # a stalled run that ended, or a newer run that started, resolves it
                results.append(
                    _stalled(row, subject, Status.OK, f"{row.kind} run {row.id} of {row.project} {row.status}")
                )
        for row in stalled.values():
            hours = (context.now - row.started_at).total_seconds() / 3600
            results.append(
                _stalled(
                    row,
                    pipeline_subject(row.project, row.kind, row.environment),
                    Status.WARNING,
                    f"{row.kind} run {row.id} of {row.project} has been running for {hours:.1f} h "
                    f"(since {row.started_at:%Y-%m-%d %H:%M} UTC): its process may have died without recording an "
                    f"end; start the pipeline again if it is gone. Its record: harbourmaster runs show {row.id}",
                )
            )
        return results

    @staticmethod
    def _judge(row: RunRow, subject: str) -> list[MonitorResult]:
        what = f"{row.kind} run {row.id} of {row.project}" + (f" in {row.environment}" if row.environment else "")
        invalid = row.validation == "invalid"
        failed = row.status == "failed" and not invalid  # invalid data is said once, by the validation rule
        error = (row.error or "no error recorded")[:_SUMMARY]
        report = row.validation_report or {}
        findings = [f for f in report.get("findings") or [] if f.get("severity") == "error"]
        shown = "; ".join(str(f.get("message", ""))[:120] for f in findings[:3])
        verdict = {"valid": "valid", "warnings": "valid with warnings", None: "not checked"}.get(row.validation)

        def result(metric: str, status: Status, summary: str) -> MonitorResult:
            return MonitorResult(
                MONITOR,
                metric,
                subject,
                status,
                summary,
                value=float(row.id),
                project=row.project,
                environment=row.environment,
                evidence=f"run:{row.id}",
                details={"run": row.id, "kind": row.kind, "status": row.status, "validation": row.validation},
            )

        return [
            result(
                "status",
                Status.CRITICAL if failed else Status.OK,
                f"{what} failed: {error}" if failed else f"{what} {row.status}",
            ),
            result(
                "validation",
                Status.CRITICAL if invalid else Status.OK,
                f"{what}: input data invalid ({len(findings)} error finding(s)): {shown}"
                if invalid
                else f"{what}: input data {verdict}",
            ),
        ]


def _stalled(row: RunRow, subject: str, status: Status, summary: str) -> MonitorResult:
    return MonitorResult(
        MONITOR,
        "stalled",
        subject,
        status,
        summary,
        value=float(row.id),
        project=row.project,
        environment=row.environment,
        evidence=f"run:{row.id}",
        details={"run": row.id, "kind": row.kind, "status": row.status, "started_at": row.started_at.isoformat()},
    )
