"""The alert model on both metadata backends: results stored, rules raising deduplicated alerts that
escalate and resolve, notifications queued once per change, acks and silences under roles and grants
(audited), a monitor that raises recorded as a failed run, and the infrastructure monitors' verdicts."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.governance.helpers import SYSTEM, USERS, actor

from harbourmaster.core.alerts import MonitorResult, Severity, Status, StatusRule, Verdict
from harbourmaster.errors import ConflictError, InvalidInputError, PermissionDeniedError
from harbourmaster.services.monitoring import MonitorContext
from harbourmaster.services.platform import Platform
from harbourmaster.store.artifacts import ArtifactStore
from harbourmaster.store.tables import (
    AlertDeliveryRow,
    AlertRow,
    AuditEventRow,
    MonitorResultRow,
    MonitorRunRow,
    ReplicaRow,
)


def _verdict(
    firing: bool, severity: Severity = Severity.WARNING, subject: str = "replica:a", env: str = "dev"
) -> Verdict:
    return Verdict(
        rule="replica.silent",
        subject=subject,
        firing=firing,
        severity=severity,
        summary="silent for 40s" if firing else "last heartbeat 1s ago",
        value=40.0 if firing else 1.0,
        environment=env,
        evidence=subject,
        monitor="replica",
    )


def _monitoring(platform: Platform, **thresholds: float) -> None:
    platform.settings = dataclasses.replace(
        platform.settings, monitoring=dataclasses.replace(platform.settings.monitoring, **thresholds)
    )


def _deliveries(platform: Platform) -> list[tuple[int, str, str]]:
    with platform.db.reader() as session:
        rows = session.scalars(select(AlertDeliveryRow).order_by(AlertDeliveryRow.id))
        return [(row.alert_id, row.event, row.key) for row in rows]


def _users(platform: Platform) -> None:
    for name, (roles, grants) in USERS.items():
        platform.identity.create_user(SYSTEM, name, roles)
        for environment, permission in grants:
            platform.identity.grant(SYSTEM, name, environment, permission)


def test_a_rule_opens_one_alert_per_subject_escalates_resolves_and_reopens(platform: Platform) -> None:
    platform.notifiers.add(SYSTEM, "log", "log")
    [opened] = platform.alerts.apply([_verdict(True)])
    assert (opened.change, opened.notifications) == ("firing", 1)
    [again] = platform.alerts.apply([_verdict(True)])  # the same condition again: the same alert, no news
    assert (again.alert_id, again.change, again.notifications) == (opened.alert_id, "updated", 0)
    [other] = platform.alerts.apply([_verdict(True, subject="replica:b")])
    assert other.alert_id != opened.alert_id and other.change == "firing"
    [escalated] = platform.alerts.apply([_verdict(True, Severity.CRITICAL)])
    assert (escalated.alert_id, escalated.change, escalated.notifications) == (opened.alert_id, "escalated", 1)
    [resolved] = platform.alerts.apply([_verdict(False)])
    assert (resolved.alert_id, resolved.change, resolved.notifications) == (opened.alert_id, "resolved", 1)
    assert platform.alerts.apply([_verdict(False)]) == []  # clear and nothing open: nothing happens
    [reopened] = platform.alerts.apply([_verdict(True)])
    assert reopened.alert_id not in (opened.alert_id, other.alert_id) and reopened.change == "firing"

    first = platform.alerts.get(SYSTEM, opened.alert_id)
    assert (first.status, first.severity, first.fired_count) == ("resolved", "critical", 3)
    assert first.resolved_at is not None and first.evidence == "replica:a" and first.environment == "dev"
    firing = platform.alerts.list(SYSTEM)
    assert sorted(a.id for a in firing) == sorted([other.alert_id, reopened.alert_id])
    assert len(platform.alerts.list(SYSTEM, include_resolved=True)) == 3
    events = [(alert, event) for alert, event, _key in _deliveries(platform)]
    assert events == [
        (opened.alert_id, "firing"),
        (other.alert_id, "firing"),
        (opened.alert_id, "escalated"),
        (opened.alert_id, "resolved"),
        (reopened.alert_id, "firing"),
    ]
    assert len({key for _a, _e, key in _deliveries(platform)}) == 5  # one idempotency key per change


def test_notifiers_get_the_severities_they_asked_for_and_silenced_alerts_stay_quiet(platform: Platform) -> None:
    platform.notifiers.add(SYSTEM, "pager", "log", min_severity="critical")
    [warning] = platform.alerts.apply([_verdict(True, subject="replica:w")])
    assert warning.notifications == 0  # below the pager's severity
    [critical] = platform.alerts.apply([_verdict(True, Severity.CRITICAL, subject="replica:c")])
    assert critical.notifications == 1
    platform.alerts.silence(SYSTEM, warning.alert_id, timedelta(hours=2))
    [escalated] = platform.alerts.apply([_verdict(True, Severity.CRITICAL, subject="replica:w")])
    assert (escalated.change, escalated.notifications) == ("escalated", 0)  # silenced
    [resolved] = platform.alerts.apply([_verdict(False, subject="replica:c")])
    assert resolved.notifications == 1  # a resolution reaches every notifier


def test_acknowledging_and_silencing_follow_roles_and_grants_and_are_audited(platform: Platform) -> None:
    _users(platform)
    [prod] = platform.alerts.apply([_verdict(True, subject="replica:p", env="prod")])
    [dev] = platform.alerts.apply([_verdict(True, subject="replica:d", env="dev")])
    vera, otto, olga = actor(platform, "vera"), actor(platform, "otto"), actor(platform, "olga")

    assert {a.id for a in platform.alerts.list(vera)} == {prod.alert_id, dev.alert_id}  # a viewer reads
    for who, alert_id in ((vera, dev.alert_id), (otto, prod.alert_id)):
        with pytest.raises(PermissionDeniedError) as refused:
            platform.alerts.acknowledge(who, alert_id)
        assert refused.value.hint
    with pytest.raises(PermissionDeniedError, match="no deploy grant for prod"):
        platform.alerts.silence(otto, prod.alert_id, timedelta(hours=2))
    assert platform.alerts.acknowledge(otto, dev.alert_id).acknowledged_by == "otto"
    acked = platform.alerts.acknowledge(olga, prod.alert_id)
    assert acked.acknowledged_by == "olga" and acked.acknowledged_at is not None
    silenced = platform.alerts.silence(olga, prod.alert_id, timedelta(hours=2))
    assert silenced.silenced_by == "olga"
    assert timedelta(minutes=119) < silenced.silenced_until - datetime.now(UTC) <= timedelta(hours=2)
    with pytest.raises(InvalidInputError, match="out of range"):
        platform.alerts.silence(olga, prod.alert_id, timedelta(days=31))

    with platform.db.reader() as session:
        entries = session.execute(
            select(AuditEventRow.actor, AuditEventRow.action, AuditEventRow.outcome, AuditEventRow.environment)
            .where(AuditEventRow.action.like("alert%") | AuditEventRow.action.like("denied.%"))
            .order_by(AuditEventRow.seq)
        ).all()
    assert ("vera", "alerts.read", "allowed", "prod") in entries  # a prod alert is a prod read
    assert ("vera", "denied.deploy", "denied", "dev") in entries
    assert ("otto", "denied.deploy", "denied", "prod") in entries
    assert ("otto", "alert.acknowledge", "allowed", "dev") in entries
    assert ("olga", "alert.acknowledge", "allowed", "prod") in entries
    assert ("olga", "alert.silence", "allowed", "prod") in entries

    platform.alerts.apply([_verdict(False, subject="replica:d", env="dev")])
    with pytest.raises(ConflictError, match="resolved already"):
        platform.alerts.acknowledge(otto, dev.alert_id)


class _Broken:
    name = "broken"
    rules = (StatusRule("broken.anything", "broken", "anything"),)

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        raise RuntimeError("the probe fell over")


def test_a_monitor_that_raises_is_a_failed_run_and_the_others_still_run(platform: Platform) -> None:
    platform.monitoring.register(_Broken())
    report = platform.monitoring.run_once()
    runs = {run.monitor: run for run in report.runs}
    assert runs["broken"].status == "failed" and "the probe fell over" in (runs["broken"].error or "")
    assert {runs[name].status for name in ("database", "artifact-store", "replica")} == {"succeeded"}
    stored = {run.monitor: run.status for run in platform.monitoring.runs(SYSTEM)}
    assert stored["broken"] == "failed" and stored["database"] == "succeeded"
    with platform.db.reader() as session:
        assert session.scalar(select(func.count(MonitorRunRow.id))) == len(platform.monitoring.monitors)  # one each
        metrics = set(session.execute(select(MonitorResultRow.monitor, MonitorResultRow.metric)).all())
    assert {
        ("database", "latency"),
        ("database", "reachable"),
        ("artifact-store", "reachable"),
        ("artifact-store", "free-space"),
    } <= metrics


def test_database_latency_and_artifact_free_space_against_their_thresholds(platform: Platform) -> None:
    report = platform.monitoring.run_once()
    latency = next(r for r in report.results if r.metric == "latency")
    assert latency.status == "ok" and latency.value is not None and 0 < latency.value < 500
    free = next(r for r in report.results if r.metric == "free-space")
    assert free.status == "ok" and 0 < (free.value or 0) <= 100
    assert not platform.alerts.list(SYSTEM)

    _monitoring(platform, artifacts_min_free_percent=100.0, db_latency_warning_ms=1e-6)  # nothing is enough
    report = platform.monitoring.run_once()
    fired = {(c.rule, c.change) for c in report.changes}
    assert fired == {("artifact-store.disk-space", "firing"), ("database.slow", "firing")}
    alerts = {a.rule: a for a in platform.alerts.list(SYSTEM)}
    expected = "critical" if (free.value or 0) < 50 else "warning"
    assert alerts["artifact-store.disk-space"].severity == expected
    assert alerts["database.slow"].severity == "warning"  # reachable, but slower than the threshold

    _monitoring(platform, artifacts_min_free_percent=0.0, db_latency_warning_ms=500.0)
    report = platform.monitoring.run_once()
    assert {(c.rule, c.change) for c in report.changes} == {
        ("artifact-store.disk-space", "resolved"),
        ("database.slow", "resolved"),
    }
    assert platform.alerts.list(SYSTEM) == []


def test_an_artifact_store_that_cannot_be_written_raises_a_critical_alert(platform: Platform, tmp_path: Path) -> None:
    folder = tmp_path / "store"
    platform.artifacts = ArtifactStore(str(folder))
    shutil.rmtree(folder)
    folder.write_text("a file where the store's folder was")  # every write now fails for real
    report = platform.monitoring.run_once()
    [change] = [c for c in report.changes if c.rule == "artifact-store.unreachable"]
    alert = platform.alerts.get(SYSTEM, change.alert_id)
    assert alert.severity == "critical" and "cannot be written" in alert.summary
    folder.unlink()
    folder.mkdir()
    report = platform.monitoring.run_once()
    assert ("artifact-store.unreachable", "resolved") in {(c.rule, c.change) for c in report.changes}


def test_replica_heartbeats_give_age_cpu_memory_and_capture_figures(platform: Platform) -> None:
    _monitoring(platform, replica_cpu_warning_percent=50.0, replica_memory_warning_mb=100.0)
    details = {"cpu_percent": 75.0, "memory_bytes": 300 * 1024 * 1024, "capture_queue": 2, "capture_pending": 10}
    platform.replicas.heartbeat(SYSTEM, "r1", environment="dev", host="h", pid=1, address="", details=details)
    platform.replicas.heartbeat(
        SYSTEM, "r2", environment="dev", host="h", pid=2, address="", details={"capture_dropped": 3}
    )
    report = platform.monitoring.run_once()
    by = {(r.subject, r.metric): r for r in report.results if r.monitor == "replica"}
    assert by[("replica:r1", "heartbeat-age")].status == "ok"
    assert by[("replica:r1", "cpu")].status == "warning" and by[("replica:r1", "cpu")].value == 75.0
    assert by[("replica:r1", "memory")].status == "warning" and by[("replica:r1", "memory")].value == 300.0
    assert by[("replica:r1", "capture-pending")].status == "ok"
    assert by[("replica:r2", "capture-dropped")].status == "warning"
    rules = {(c.rule, c.subject) for c in report.changes if c.change == "firing"}
    assert rules == {
        ("replica.cpu", "replica:r1"),
        ("replica.memory", "replica:r1"),
        ("replica.capture-dropped", "replica:r2"),
    }

    platform.replicas.heartbeat(
        SYSTEM, "r2", environment="dev", host="h", pid=2, address="", details={"capture_dropped": 3}
    )
    report = platform.monitoring.run_once()  # no new drop since the last run: the alert clears
    assert ("replica.capture-dropped", "replica:r2", "resolved") in {
        (c.rule, c.subject, c.change) for c in report.changes
    }
    platform.replicas.heartbeat(
        SYSTEM, "r2", environment="dev", host="h", pid=2, address="", details={"capture_dropped": 5}
    )
    report = platform.monitoring.run_once()
    dropped = next(r for r in report.results if r.subject == "replica:r2" and r.metric == "capture-dropped")
    assert dropped.status == "warning" and dropped.summary.startswith("2 captured records dropped")


def test_a_silent_replica_alerts_and_resolves_when_it_beats_again(platform: Platform) -> None:
    _monitoring(platform, replica_silent_after=1.0)
    platform.replicas.heartbeat(SYSTEM, "quiet", environment="prod", host="h", pid=9, address="")
    assert not [c for c in platform.monitoring.run_once().changes if c.rule == "replica.silent"]
    with platform.db.transaction() as session:  # what 40 seconds of silence leaves behind
        row = session.get(ReplicaRow, "quiet")
        row.last_seen = datetime.now(UTC) - timedelta(seconds=40)
    [change] = [c for c in platform.monitoring.run_once().changes if c.rule == "replica.silent"]
    alert = platform.alerts.get(SYSTEM, change.alert_id)
    assert (alert.status, alert.severity, alert.environment, alert.evidence) == (
        "firing",
        "critical",
        "prod",
        "replica:quiet",
    )
    assert "silent for 40s" in alert.summary
    platform.replicas.heartbeat(SYSTEM, "quiet", environment="prod", host="h", pid=9, address="")
    [change] = [c for c in platform.monitoring.run_once().changes if c.rule == "replica.silent"]
    assert change.change == "resolved"
    with platform.db.reader() as session:
        assert session.scalar(select(func.count(AlertRow.id))) == 1


class _RaisingRule:
    name = "raising.rule"

    def evaluate(self, results: list[MonitorResult]) -> list[Verdict]:
        raise ValueError("a rule with a bug")


class _Flaky:
    """A real plug-in monitor whose measurement works, but whose second rule raises."""

    name = "flaky"
    rules = (_RaisingRule(), StatusRule("flaky.level", "flaky", "level"))

    def measure(self, context: MonitorContext) -> list[MonitorResult]:
        return [MonitorResult("flaky", "level", "flaky:1", Status.WARNING, "level high", 7.0)]


def test_the_scheduler_survives_monitors_and_rules_that_raise(platform: Platform) -> None:
    platform.monitoring.register(_Broken())
    platform.monitoring.register(_Flaky())
    scheduler = platform.monitoring.start(interval=0.2)
    assert scheduler is not None
    try:
        deadline = time.monotonic() + 20
        while scheduler.passes < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scheduler.passes >= 3 and scheduler.is_alive()
    finally:
        scheduler.stop()
    assert not scheduler.is_alive()
    runs = platform.monitoring.runs(SYSTEM, limit=1000)
    assert {r.status for r in runs if r.monitor == "broken"} == {"failed"}
    assert {r.status for r in runs if r.monitor == "flaky"} == {"succeeded"}
    [alert] = [a for a in platform.alerts.list(SYSTEM) if a.rule == "flaky.level"]  # the sound rule still judged
    assert alert.fired_count >= 3 and alert.severity == "warning"
    assert platform.monitoring.start(interval=0) is None  # 0: no schedule


def test_two_control_planes_firing_the_same_alert_at_once_agree_on_one(platform: Platform) -> None:
    other = Platform(platform.settings)  # a second control plane on the same database
    try:
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def fire(plane: Platform) -> None:
            try:
                for _ in range(5):
                    barrier.wait(timeout=10)
                    plane.alerts.apply([_verdict(True, subject="replica:shared")])
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=fire, args=(plane,)) for plane in (platform, other)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert errors == []
        [alert] = platform.alerts.list(SYSTEM)
        assert alert.subject == "replica:shared" and alert.fired_count == 10
    finally:
        other.close()


def test_a_replica_that_stops_cleanly_closes_its_alerts_and_is_not_silent(platform: Platform) -> None:
    _monitoring(platform, replica_cpu_warning_percent=50.0, replica_silent_after=1.0)
    busy = {"cpu_percent": 95.0}
    platform.replicas.heartbeat(SYSTEM, "r9", environment="dev", host="h", pid=9, address="", details=busy)
    assert ("replica.cpu", "firing") in {(c.rule, c.change) for c in platform.monitoring.run_once().changes}
    platform.replicas.heartbeat(SYSTEM, "r9", environment="dev", host="h", pid=9, address="", status="stopped")
    with platform.db.transaction() as session:  # long after its last (stopping) heartbeat
        session.get(ReplicaRow, "r9").last_seen = datetime.now(UTC) - timedelta(hours=1)
    report = platform.monitoring.run_once()
    assert {(c.rule, c.change) for c in report.changes} == {("replica.cpu", "resolved")}
    assert platform.alerts.list(SYSTEM) == []
    assert [r for r in platform.monitoring.run_once().results if r.monitor == "replica"] == []  # nothing left open
