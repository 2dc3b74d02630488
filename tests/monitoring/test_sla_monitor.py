"""The SLA monitor on both metadata backends: a real replica on loopback carries its counters in its
heartbeats into stored samples; stored samples give a deployment's figures, and the monitor raises the
fast burn alert (critical, naming the deployment) but not the slow one; reads follow roles and grants."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import yaml
from sqlalchemy import select

from governance.helpers import create_users, live_server
from harbourmaster.client import Client
from harbourmaster.core.alerts import Severity, Verdict
from harbourmaster.core.sla import LATENCY_BUCKETS
from harbourmaster.services.platform import Platform
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.tables import AuditEventRow, MonitorResultRow, TrafficSampleRow
from monitoring.helpers import OWNER, PROJECT, register_and_deploy, store_burst
from served import any_record

SUBJECT = f"{PROJECT}/dev"


def test_the_monitor_raises_the_fast_burn_alert_from_stored_samples(platform: Platform) -> None:
    register_and_deploy(platform)
    platform.environments.configure(OWNER, "dev", {"sla": {"p99_ms": 100, "error_rate": 0.001, "min_rps": 50}})
    store_burst(platform, datetime.now(UTC))

    run = platform.monitoring.run_once()
    [sla_run] = [r for r in run.runs if r.monitor == "sla"]
    assert sla_run.status == "succeeded", sla_run.error
    changes = {(c.rule, c.subject): c.change for c in run.changes}
    assert changes[("sla.fast-burn", SUBJECT)] == "firing"
    assert changes[("sla.throughput", SUBJECT)] == "firing"  # 10 requests/s, SLA at least 50
    assert ("sla.slow-burn", SUBJECT) not in changes  # 6 h: 5.1x, below 6x
    alerts = {a.rule: a for a in platform.alerts.list(OWNER)}
    fast = alerts["sla.fast-burn"]
    assert (fast.severity, fast.project, fast.environment, fast.subject) == ("critical", PROJECT, "dev", SUBJECT)
    assert "errors budget burning 30.0x (1h)" in fast.summary and SUBJECT in fast.summary
    assert alerts["sla.throughput"].severity == "warning"

    with platform.db.reader() as session:
        stored = {
            row.metric: row
            for row in session.scalars(select(MonitorResultRow).where(MonitorResultRow.monitor == "sla"))
        }
    assert set(stored) == {
        "throughput",
        "latency-p50",
        "latency-p95",
        "latency-p99",
        "error-rate",
        "fallback-rate",
        "fast-burn",
        "slow-burn",
    }
    assert abs(stored["error-rate"].value - 0.03) < 1e-9
    assert abs(stored["throughput"].value - 10.0) < 0.2
    assert stored["latency-p99"].value < 5.0 and stored["latency-p99"].status == "ok"
    assert (stored["fast-burn"].status, stored["slow-burn"].status) == ("critical", "ok")
    windows = {w["window"]: w for w in stored["fast-burn"].details["windows"]}
    assert set(windows) == {"5m", "30m", "1h", "6h"}
    assert abs(windows["6h"]["burn"]["errors"] - 1080 / (360 * 582 + 1080) / 0.001) < 0.05  # 5.1x: below 6x
    assert abs(stored["fast-burn"].value - 30.0) < 0.1  # the burn over the alert's windows (the lower of the two)

    again = platform.monitoring.run_once()  # still burning: the same alert, no news
    assert {(c.rule, c.change) for c in again.changes if c.subject == SUBJECT} == {
        ("sla.fast-burn", "updated"),
        ("sla.throughput", "updated"),
    }

    # An alert about a deployment that is gone (its project or environment removed) resolves at the next run.
    gone = Verdict("sla.fast-burn", "gone/dev", True, Severity.CRITICAL, "burning", project="gone", monitor="sla")
    platform.alerts.apply([gone])
    after = platform.monitoring.run_once()
    assert ("sla.fast-burn", "gone/dev", "resolved") in {(c.rule, c.subject, c.change) for c in after.changes}

    # A person's read over HTTP with the SDK: the same figures; when the environment is guarded, audited.
    tokens = create_users(platform)
    platform.environments.configure(
        OWNER, "dev", {"guarded": True, "sla": {"p99_ms": 100, "error_rate": 0.001, "min_rps": 50}}
    )
    with live_server(platform) as live, Client(live.url, token=tokens["vera"]) as sdk:
        report = sdk.sla(PROJECT, "dev")
        rules = sdk.prometheus_rules("dev")
    assert report.window("1h").error_rate == stored["error-rate"].value and report.alerts[0].firing
    assert report.alerts[0].objectives == ["errors"] and report.sla.error_rate == 0.001
    alerts = [rule for group in yaml.safe_load(rules)["groups"] for rule in group["rules"] if "alert" in rule]
    fast = next(rule for rule in alerts if rule["alert"] == "HarbourmasterSLOFastBurn")
    assert fast["labels"]["environment"] == "dev" and "(14.4 * 0.001)" in fast["expr"]
    assert {rule["labels"]["environment"] for rule in alerts} == {"dev"}
    with platform.db.reader() as session:
        audited = session.scalars(select(AuditEventRow.actor).where(AuditEventRow.action == "sla.read")).all()
    assert audited == ["vera"]


def test_a_replica_on_loopback_sends_its_counters_in_its_heartbeats(platform: Platform) -> None:
    number = register_and_deploy(platform)
    record = {**any_record(platform, PROJECT, number), "email": "someone@example.com"}
    with ServerThread(platform, "dev") as server:
        deadline = time.monotonic() + 60
        while PROJECT not in server.replica.table.routes:
            assert time.monotonic() < deadline, "the replica did not load the project"
            time.sleep(0.05)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(20):
                answer = http.post(f"/v1/projects/{PROJECT}/predict", json=record)
                assert answer.status_code == 200, answer.text
            refused = http.post(f"/v1/projects/{PROJECT}/predict", json={"records": []})
            assert refused.status_code == 422
            http.post("/v1/projects/nope/predict", json=record)  # an unknown project: no deployment's traffic
        replica_id = server.replica.id
    # Leaving the block stopped the replica: its goodbye heartbeat carried its final counters.
    with platform.db.reader() as session:
        rows = session.scalars(select(TrafficSampleRow).order_by(TrafficSampleRow.id)).all()
    assert rows and {(r.replica, r.environment, r.project) for r in rows} == {(replica_id, "dev", PROJECT)}
    last = rows[-1]
    assert (last.requests, last.errors, last.fallbacks, last.timed) == (21, 0, 0, 20)
    assert last.buckets[-1] == 20 and len(last.buckets) == len(LATENCY_BUCKETS)

    report = platform.sla.report(OWNER, PROJECT, "dev")
    five = report.window("5m")
    assert (five.requests, five.error_rate, five.fallback_rate) == (21, 0.0, 0.0)
    assert five.p50_ms is not None and five.p50_ms <= five.p95_ms <= five.p99_ms
    assert five.throughput is not None and five.throughput > 0
    assert report.replicas == 1 and report.objectives == ["latency"]  # dev: p99 within 100 ms
    fast = report.alerts[0]
    assert fast.burn == {"latency": [report.window("1h").burn["latency"], five.burn["latency"]]}
    assert five.burn["latency"] == five.slow_rate / 0.01
