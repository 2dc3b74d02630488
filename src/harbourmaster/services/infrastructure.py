"""Infrastructure monitors: the metadata database, the artifact store, and every serving replica
(from the heartbeats it sends). Each measures, sets a status against the monitoring settings'
thresholds, and declares the rules that turn its results into alerts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from harbourmaster.core.alerts import MonitorResult, Rule, Status, StatusRule
from harbourmaster.store.tables import AlertRow, ReplicaRow

if TYPE_CHECKING:
    from harbourmaster.services.monitoring import MonitorContext

_MB = 1024 * 1024


class DatabaseMonitor:
    """Is the metadata database reachable, and how long does a trivial query take?"""

    name = "database"
    rules: tuple[Rule, ...] = (
        StatusRule("database.unreachable", "database", "reachable"),
        StatusRule("database.slow", "database", "latency"),
    )

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        evidence = f"database:{context.platform.db.dialect}"
        started = time.perf_counter()
        try:
            context.platform.db.check()
        except Exception as exc:
            summary = f"the metadata database did not answer: {type(exc).__name__}: {exc}"
            return [
                MonitorResult("database", "reachable", "database", Status.CRITICAL, summary, 0.0, evidence=evidence)
            ]
        latency_ms = (time.perf_counter() - started) * 1000
        limit = context.settings.db_latency_warning_ms
        status = Status.WARNING if latency_ms > limit else Status.OK
        return [
            MonitorResult("database", "reachable", "database", Status.OK, "answered", 1.0, evidence=evidence),
            MonitorResult(
                "database",
                "latency",
                "database",
                status,
                f"SELECT 1 took {latency_ms:.1f} ms (warning above {limit:g} ms)",
                value=latency_ms,
                evidence=evidence,
            ),
        ]


class ArtifactStoreMonitor:
    """Can the artifact store be written and read back, and how much free space does it have?"""

    name = "artifact-store"
    rules: tuple[Rule, ...] = (
        StatusRule("artifact-store.unreachable", "artifact-store", "reachable"),
        StatusRule("artifact-store.disk-space", "artifact-store", "free-space"),
    )

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        store = context.platform.artifacts
        evidence = f"artifacts:{store.url}"
        try:
            store.check()
        except Exception as exc:
            return [
                MonitorResult(
                    "artifact-store",
                    "reachable",
                    "artifact-store",
                    Status.CRITICAL,
                    f"the artifact store cannot be written and read back: {type(exc).__name__}: {exc}",
                    value=0.0,
                    evidence=evidence,
                )
            ]
        results = [
            MonitorResult(
                "artifact-store",
                "reachable",
                "artifact-store",
                Status.OK,
                "written and read back",
                1.0,
                evidence=evidence,
            )
        ]
        usage = store.disk_usage()
        if usage is not None:
            free, total = usage
            percent = 100.0 * free / total if total else 0.0
            warning = context.settings.artifacts_min_free_percent
            status = Status.CRITICAL if percent < warning / 2 else Status.WARNING if percent < warning else Status.OK
            results.append(
                MonitorResult(
                    "artifact-store",
                    "free-space",
                    "artifact-store",
                    status,
                    f"{percent:.1f}% free ({free // _MB} MiB of {total // _MB} MiB; "
                    f"warning below {warning:g}%, critical below {warning / 2:g}%)",
                    value=percent,
                    evidence=evidence,
                    details={"free_bytes": free, "total_bytes": total},
                )
            )
        return results


class ReplicaMonitor:
    """Per serving replica, from its heartbeats: heartbeat age (a silent replica is critical), CPU,
    memory (RSS), and its prediction capture: rows pending and records dropped since the last run."""

    name = "replica"
    rules: tuple[StatusRule, ...] = (
        StatusRule("replica.silent", "replica", "heartbeat-age"),
        StatusRule("replica.cpu", "replica", "cpu"),
        StatusRule("replica.memory", "replica", "memory"),
        StatusRule("replica.capture-backlog", "replica", "capture-pending"),
        StatusRule("replica.capture-dropped", "replica", "capture-dropped"),
    )

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        now = context.now
        with context.platform.db.reader() as session:
            rows = session.scalars(select(ReplicaRow).order_by(ReplicaRow.environment, ReplicaRow.id)).all()
            alerted = set(
                session.scalars(
                    select(AlertRow.subject).where(AlertRow.open_key.is_not(None), AlertRow.monitor == self.name)
                )
            )
        results: list[MonitorResult] = []
        for row in rows:
            age = (now - row.last_seen).total_seconds()
            if row.status == "stopped":
                if f"replica:{row.id}" in alerted:  # it stopped cleanly: what was open about it is over
                    results.extend(
                        self._result(row, rule.metric, Status.OK, "stopped cleanly", None) for rule in self.rules
                    )
                continue
            results.extend(self._measure_one(context, row, age))
        return results

    def _measure_one(self, context: MonitorContext, row: ReplicaRow, age: float) -> list[MonitorResult]:
        settings = context.settings
        silent = age > settings.replica_silent_after
        results = [
            self._result(
                row,
                "heartbeat-age",
                Status.CRITICAL if silent else Status.OK,
                f"replica {row.id} on {row.host} (pid {row.pid}) silent for {age:.0f}s "
                f"(alert after {settings.replica_silent_after:g}s)"
                if silent
                else f"last heartbeat {age:.0f}s ago",
                age,
            )
        ]
        if silent:
            return results  # its other figures are as old as its last heartbeat
        details = row.details or {}
        cpu = _number(details.get("cpu_percent"))
        if cpu is not None:
            limit = settings.replica_cpu_warning_percent
            status = Status.WARNING if cpu > limit else Status.OK
            results.append(self._result(row, "cpu", status, f"CPU {cpu:.0f}% (warning above {limit:g}%)", cpu))
        memory = _number(details.get("memory_bytes"))
        if memory is not None:
            limit = settings.replica_memory_warning_mb
            mb = memory / _MB
            status = Status.WARNING if limit and mb > limit else Status.OK
            bound = f" (warning above {limit:g} MiB)" if limit else ""
            results.append(self._result(row, "memory", status, f"RSS {mb:.0f} MiB{bound}", mb))
        pending = _number(details.get("capture_pending"))
        if pending is not None:
            limit = settings.capture_pending_warning
            queue = _number(details.get("capture_queue")) or 0
            status = Status.WARNING if pending > limit else Status.OK
            text = (
                f"{pending:.0f} rows not yet in the prediction log, {queue:.0f} requests queued "
                f"(warning above {limit:g})"
            )
            results.append(self._result(row, "capture-pending", status, text, pending))
        dropped = _number(details.get("capture_dropped"))
        if dropped is not None:
            before = context.previous_value("replica", "capture-dropped", f"replica:{row.id}")
            new = dropped - (before or 0) if before is not None and dropped >= before else dropped
            status = Status.WARNING if new > 0 else Status.OK
            text = (
                f"{new:.0f} captured records dropped since the last check ({dropped:.0f} since the replica started)"
                if new
                else f"no record dropped since the last check ({dropped:.0f} since the replica started)"
            )
            results.append(self._result(row, "capture-dropped", status, text, dropped))
        return results

    @staticmethod
    def _result(row: ReplicaRow, metric: str, status: Status, summary: str, value: float | None) -> MonitorResult:
        return MonitorResult(
            "replica",
            metric,
            f"replica:{row.id}",
            status,
            summary,
            value=value,
            environment=row.environment,
            evidence=f"replica:{row.id}",
            details={"host": row.host, "pid": row.pid, "address": row.address},
        )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def infrastructure_monitors() -> list[DatabaseMonitor | ArtifactStoreMonitor | ReplicaMonitor]:
    return [DatabaseMonitor(), ArtifactStoreMonitor(), ReplicaMonitor()]
