"""The reads behind the console's deployment, drift and runs pages (both metadata backends): traffic
over time from stored samples (a replica restart counts from zero, like the SLA windows), requests by
path and reason from the prediction log, per-feature distributions kept in drift reports, runs paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select

from governance.helpers import USERS, create_users
from harbourmaster.core.sla import LATENCY_BUCKETS, Counts, assess
from harbourmaster.core.sla_timeline import timeline
from harbourmaster.errors import PermissionDeniedError
from harbourmaster.services import deployment_status
from harbourmaster.services.actors import Actor
from harbourmaster.services.deployment_status import SPANS
from harbourmaster.services.platform import Platform
from harbourmaster.services.sla import LOOKBACK
from harbourmaster.store import traffic_samples
from harbourmaster.store.prediction_log import write_predictions
from harbourmaster.store.tables import AuditEventRow, RunRow
from monitoring.helpers import OWNER, PROJECT, current_frame, log_rows, register_and_deploy, store_burst


def _slow(total: float) -> tuple[float, ...]:
    return tuple(total if bound >= 0.2 else 0.0 for bound in LATENCY_BUCKETS)  # every request over 100 ms


def test_traffic_over_time_per_interval_and_replica(platform: Platform) -> None:
    register_and_deploy(platform)
    platform.environments.configure(OWNER, "dev", {"sla": {"p99_ms": 100, "error_rate": 0.001}})
    now = datetime.now(UTC).replace(microsecond=0)
    store_burst(platform, now)  # r1: 600 requests a minute, 18 of them errors in the last hour
    # r2 runs the last 10 minutes at 60 slow requests a minute and restarts 5 minutes ago (counters from zero).
    with platform.db.transaction() as session:
        started = now - timedelta(minutes=10, seconds=30)
        for minute in range(10, 5, -1):
            total = 60.0 * (10 - minute + 1)
            counts = Counts(total, 0.0, total / 2, total, 0.0, _slow(total))
            traffic_samples.add(session, "r2", "dev", started, now - timedelta(minutes=minute), {PROJECT: counts})
        restarted = now - timedelta(minutes=5, seconds=30)
        for minute in range(5, -1, -1):
            total = 60.0 * (5 - minute + 1)
            counts = Counts(total, 0.0, total / 2, total, 0.0, _slow(total))
            traffic_samples.add(session, "r2", "dev", restarted, now - timedelta(minutes=minute), {PROJECT: counts})

    status = platform.deployment_status.status(OWNER, PROJECT, "dev", span="1h", now=now)

    assert len(status.points) == 60 and status.step_seconds == 60
    assert status.points[-1].end == now
    last = status.points[-1]
    # r1: 600 a minute (18 errors); r2: 60 a minute, half answered by a fallback, all slower than 100 ms.
    assert last.requests == 660
    assert last.throughput == pytest.approx(11.0)
    assert last.error_rate == pytest.approx(18 / 660)
    assert last.fallback_rate == pytest.approx(30 / 660)
    assert last.p50_ms is not None and last.p50_ms < 5 and last.p99_ms is not None and last.p99_ms > 100
    early = status.points[30]
    assert early.requests == 600 and early.p99_ms is not None and early.p99_ms < 5
    # The restart 5 minutes ago is a new series starting from zero: every minute of r2 counts 60, none is negative.
    by_replica = {replica.id: replica for replica in status.replicas}
    assert by_replica == {}  # samples alone: no replica has sent a heartbeat row
    assert all(point.requests in (600, 660) for point in status.points[-10:])
    assert sum(point.requests for point in status.points[-10:]) == 10 * 600 + 10 * 60
    # The SLA figures come with it (the same windows as `harbourmaster sla`).
    assert status.report.window("5m").requests == 5 * 660
    assert (status.split.champion, status.split.champion_weight, status.rollout.stage) == (1, 100.0, "none")


def test_the_page_figures_from_kept_increments_equal_those_of_the_raw_samples(platform: Platform) -> None:
    """The deployment page sums the increments kept with each sample in SQL; every figure it shows (the
    SLA windows, the timeline, each replica's throughput) is what ``assess`` and ``timeline`` compute
    from the raw samples: across a restart, a replica that started inside the span (counted from zero),
    one first seen long after it started (counted from its first sample), an irregular cadence, and a
    canary side's samples (not the whole project's)."""
    register_and_deploy(platform)
    platform.environments.configure(OWNER, "dev", {"sla": {"p99_ms": 100, "error_rate": 0.001}})
    now = datetime.now(UTC)
    rng = np.random.default_rng(7)

    def counts(total: float, slow: float) -> Counts:
        buckets = tuple(total * (1.0 - slow) if bound < 0.1 else total for bound in LATENCY_BUCKETS)
        return Counts(total, total * 0.003, total * 0.01, total, total * 0.004, buckets)

    plans = {  # replica: (first sample seconds ago, started seconds ago, restart seconds ago or None)
        "steady": (23_000, 23_100, 9_000),
        "new": (1_500, 1_520, None),  # started inside the 1 h span and the 30 min window
        "late": (2_700, 50_000, None),  # up for hours before its first sample reached this control plane
    }
    with platform.db.transaction() as session:
        for replica, (first, started, restart) in plans.items():
            at, total, since = float(first), 0.0, now - timedelta(seconds=started)
            while at >= 0:
                if restart is not None and at <= restart < at + 20:
                    since, total, restart = now - timedelta(seconds=at + 1), 0.0, None
                total += float(rng.integers(50, 400))
                moment = now - timedelta(seconds=at)
                traffic_samples.add(session, replica, "dev", since, moment, {PROJECT: counts(total, (at % 900) / 9000)})
                traffic_samples.add(session, replica, "dev", since, moment, {PROJECT: counts(total / 3, 0)}, "champion")
                at -= float(rng.integers(5, 20))
    sla = platform.environments.get("dev").config.sla
    for span, (seconds, step) in SPANS.items():
        status = platform.deployment_status.status(OWNER, PROJECT, "dev", span=span, outcomes=False, now=now)
        with platform.db.reader() as session:
            raw = traffic_samples.series(session, now - LOOKBACK, "dev", PROJECT)[(PROJECT, "dev")]
        expected = assess(PROJECT, "dev", sla, list(raw.values()), now)
        assert _same(status.report.model_dump(), expected.model_dump()), span
        points = timeline(list(raw.values()), sla, now, seconds, step)
        assert len(status.points) == len(points) and any(p.requests for p in points)
        assert _same([p.model_dump() for p in status.points], [p.model_dump() for p in points]), span
        assert status.replicas == []  # samples alone send no heartbeat row: each replica's series below
        with platform.db.reader() as session:
            own = deployment_status._traffic(session, PROJECT, "dev", sla, now, seconds, step)[2]
        for replica, samples in raw.items():
            rates = [p.throughput for p in timeline([samples], sla, now, seconds, step)]
            assert _same(own[replica], rates), (span, replica)


def _same(got: object, want: object) -> bool:
    """Equal, floats within rounding (SQL sums in its own order)."""
    if isinstance(want, float) and isinstance(got, int | float):
        return got == pytest.approx(want, rel=1e-9, abs=1e-9)
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))
    return got == want


def test_outcomes_by_path_and_reason_and_the_challenger_split(platform: Platform) -> None:
    version = register_and_deploy(platform)
    second = register_and_deploy(platform)
    platform.deployments.deploy(OWNER, PROJECT, version, "dev")
    platform.deployments.set_challenger(OWNER, PROJECT, "dev", second, mode="canary", weight=20.0)
    now = datetime.now(UTC)
    log_rows(platform, current_frame(40), version=version, ts=now - timedelta(minutes=2))  # 4 requests of 10 rows
    rows = []
    for i, (path, reason, status) in enumerate(
        [("rules", "latency", 200)] * 3
        + [("failover", "error", 200)] * 2
        + [("refused", "invalid_input", 422)]
        + [("unavailable", "error", 503)]
        + [("rules", "latency", 200)]  # the last one is too old to count
    ):
        rows.append(
            {
                "request_id": f"other-{i}",
                "row": 0,
                "ts": now - (timedelta(hours=2) if i == 7 else timedelta(minutes=1)),
                "environment": "dev",
                "project": PROJECT,
                "version": version,
                "path": path,
                "reason": reason,
                "status": status,
                "latency_ms": 2.0,
                "inputs": None,
                "output": None,
                "probabilities": None,
                "shadow_version": None,
                "shadow_output": None,
                "replica": "r1",
            }
        )
    write_predictions(platform.artifacts, rows)

    status = platform.deployment_status.status(OWNER, PROJECT, "dev", now=now)

    found = {(o.path, o.reason, o.status): (o.requests, o.kind) for o in status.outcomes or []}
    assert found == {
        ("champion", None, 200): (4, "answered"),  # requests, not rows
        ("rules", "latency", 200): (3, "fallback"),
        ("failover", "error", 200): (2, "fallback"),
        ("refused", "invalid_input", 422): (1, "refused"),
        ("unavailable", "error", 503): (1, "error"),
    }
    assert sum(o.share for o in status.outcomes or []) == pytest.approx(1.0)
    assert (status.split.champion, status.split.challenger, status.split.challenger_weight) == (version, second, 20.0)
    assert status.split.champion_weight == 80.0
    assert (status.rollout.active, status.rollout.weight, status.rollout.stage) == (True, 20.0, "canary 20%")
    live = platform.deployment_status.status(OWNER, PROJECT, "dev", now=now, outcomes=False)
    assert live.outcomes is None  # the live fragment does not reread the log


def test_reads_follow_grants_and_a_guarded_read_is_audited_once_per_look(platform: Platform) -> None:
    register_and_deploy(platform)
    platform.environments.configure(OWNER, "dev", {"guarded": True})
    tokens = create_users(platform)
    assert "vera" in tokens and USERS["vera"][0] == ["viewer"]
    viewer = platform.identity.actor_for("vera")
    status = platform.deployment_status.status(viewer, PROJECT, "dev")
    assert status.environment == "dev"
    platform.deployment_status.status(viewer, PROJECT, "dev")  # polling: the same look
    with platform.db.reader() as session:
        entries = session.scalars(
            select(AuditEventRow).where(AuditEventRow.action == "deployment.status.read", AuditEventRow.actor == "vera")
        ).all()
    assert len(entries) == 1 and entries[0].environment == "dev"
    unknown = platform.identity.actor_for("otto")  # an operator, no grant: reads are open to every role here
    platform.drift_view.overview(unknown, PROJECT, "dev")
    with pytest.raises(PermissionDeniedError):
        platform.deployment_status.status(Actor(name="nobody"), PROJECT, "dev")


def test_drift_reports_keep_distributions_and_the_overview_ranks_features(platform: Platform) -> None:
    version = register_and_deploy(platform)
    log_rows(platform, current_frame(600), version=version, ts=datetime.now(UTC) - timedelta(minutes=50))
    first = platform.drift.report(OWNER, PROJECT, "dev", window="1h")
    log_rows(platform, current_frame(600, shift=1.0, seed=3), version=version, first=600)
    second = platform.drift.report(OWNER, PROJECT, "dev", window="10m")

    overview = platform.drift_view.overview(OWNER, PROJECT, "dev")

    assert overview.reports == 2 and [p.report_id for p in overview.dataset] == [first.id, second.id]
    assert overview.latest is not None and overview.latest.report_id == second.id
    assert overview.latest.drifted_share == second.drifted_share > first.drifted_share
    names = [f.feature for f in overview.features if f.kind == "feature"]
    assert set(names[:2]) == {"income", "region"}  # most drifted first
    scores = [f.score for f in overview.features if f.kind == "feature" and f.drifted]
    assert scores == sorted(scores, reverse=True)
    by_name = {f.feature: f for f in overview.features}
    income = by_name["income"].distribution
    assert income is not None and income.kind == "numeric"
    assert len(income.edges) == len(income.reference) + 1 == len(income.current) + 1
    assert sum(income.reference) == pytest.approx(1.0) and sum(income.current) == pytest.approx(1.0)
    centre = np.asarray(income.edges[:-1]) + np.diff(income.edges) / 2
    assert float(np.dot(centre, income.current)) > float(np.dot(centre, income.reference)) + 5  # shifted by 10
    region = by_name["region"].distribution
    assert region is not None and region.kind == "categorical" and set(region.labels) >= {"a", "b", "c", "d"}
    assert sum(region.current) == pytest.approx(1.0)
    assert by_name["email"].distribution is None  # sensitive: no values kept
    assert [p.report_id for p in by_name["income"].history] == [first.id, second.id]
    assert by_name["income"].history[0].score < 1.0 <= by_name["income"].history[1].score


def test_runs_are_paged_newest_first_with_filters(platform: Platform) -> None:
    register_and_deploy(platform)
    started = datetime.now(UTC) - timedelta(hours=1)
    with platform.db.transaction() as session:
        for i in range(7):
            session.add(
                RunRow(
                    project=PROJECT,
                    kind="score" if i % 2 else "train",
                    status="failed" if i == 5 else "succeeded",
                    environment="dev" if i % 2 else None,
                    started_at=started + timedelta(minutes=i),
                    finished_at=started + timedelta(minutes=i, seconds=3),
                    rows_in=100 + i,
                    rows_out=100 + i,
                    error="ValueError: bad column" if i == 5 else None,
                    created_by="tests",
                )
            )
    first = platform.runs.page(OWNER, project=PROJECT, limit=3)
    assert [r.rows_in for r in first.runs] == [106, 105, 104] and first.next_before is not None
    second = platform.runs.page(OWNER, project=PROJECT, limit=3, before=first.next_before)
    third = platform.runs.page(OWNER, project=PROJECT, limit=3, before=second.next_before)
    assert [r.rows_in for r in second.runs + third.runs] == [103, 102, 101, 100] and third.next_before is None
    failed = platform.runs.page(OWNER, status="failed")
    assert [(r.rows_in, r.error) for r in failed.runs] == [(105, "ValueError: bad column")]
    assert [r.kind for r in platform.runs.page(OWNER, kind="score", environment="dev").runs] == ["score"] * 3
