"""Data for the console's deployment, drift and runs pages at scale, for the page benchmark (``run.py``).

``fill_charts`` adds to a store where PROJECT is deployed in ENVIRONMENT: 6 hours of traffic samples from
4 replicas (one every 15 s each, the heartbeat cadence the replicas service keeps: 5,760 rows, one replica
restarting halfway), live heartbeats of those replicas, 200 drift reports of 31 rows each (30 features
with their distributions, and the dataset verdict), 1,000 pipeline runs, and 20,000 prediction-log
requests over the last hour (fallbacks and refusals among them). Rows are inserted directly (fast), in
the shapes the services write.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from harbourmaster.core.drift import DataQuality, Distribution, DriftMethod, DriftReport, FeatureDrift
from harbourmaster.core.sla import LATENCY_BUCKETS, Counts
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store import drift_results, traffic_samples
from harbourmaster.store.prediction_log import write_predictions
from harbourmaster.store.tables import RunRow

REPLICAS = 4
FEATURES = 30
REPORTS = 200
RUNS = 1000
LOGGED = 20_000


def chart_pages(project: str, environment: str) -> list[str]:
    """The pages to time (as the admin)."""
    return [
        "/console/deployments",
        f"/console/deployments/{project}/{environment}",
        f"/console/deployments/{project}/{environment}?span=6h",
        f"/console/deployments/{project}/{environment}/live",
        f"/console/drift/{project}/{environment}",
        f"/console/drift/{project}/{environment}?reports=200&page=3",
        "/console/runs",
        "/console/runs?before=500",
        f"/console/runs?status=failed&project={project}",
        "/console/runs/1000",
    ]


def fill_charts(platform: Platform, project: str, environment: str) -> None:
    now = datetime.now(UTC)
    _traffic(platform, project, environment, now)
    _drift(platform, project, environment, now)
    _runs(platform, project, now)
    _log(platform, project, environment, now)


def _traffic(platform: Platform, project: str, environment: str, now: datetime) -> None:
    samples = 6 * 3600 // 15
    with platform.db.transaction() as session:
        for r in range(REPLICAS):
            replica = f"bench-replica-{r}"
            started = now - timedelta(hours=6, minutes=1)
            total = 0.0
            for i in range(samples, -1, -1):
                at = now - timedelta(seconds=15 * i)
                if r == 0 and i == samples // 2:  # a restart: counters from zero again
                    started, total = at - timedelta(seconds=1), 0.0
                total += 150.0 + 10 * (i % 7)
                buckets = tuple(total * min(1.0, bound / 0.02) for bound in LATENCY_BUCKETS)
                counts = Counts(total, total * 0.001, total * 0.004, total, total * 0.004, buckets)
                traffic_samples.add(session, replica, environment, started, at, {project: counts})
    for r in range(REPLICAS):
        platform.replicas.heartbeat(
            Actor.system("benchmark"),
            f"bench-replica-{r}",
            environment=environment,
            host=f"host-{r}",
            pid=1000 + r,
            address=f"http://127.0.0.1:{9000 + r}",
            loaded={project: {"revision": 1, "champion": {"version": 1, "engine": "sklearn"}}},
            details={"cpu_percent": 20.0 + r, "memory_bytes": 200 * 1024 * 1024, "capture_pending": 0},
        )


def _drift(platform: Platform, project: str, environment: str, now: datetime) -> None:
    edges = [i / 10 for i in range(11)]
    with platform.db.transaction() as session:
        for n in range(REPORTS):
            shift = n / REPORTS
            features = [
                FeatureDrift(
                    feature=f"f{i}",
                    kind="numeric",
                    method=DriftMethod.WASSERSTEIN,
                    statistic=shift * i / FEATURES,
                    threshold=0.1,
                    drifted=shift * i / FEATURES >= 0.1,
                    score=shift * i / FEATURES / 0.1,
                    reference="sample",
                    current_values=1000,
                    quality=DataQuality(missing_reference=0.0, missing_current=0.0, out_of_range=0.0),
                    distribution=Distribution(kind="numeric", edges=edges, reference=[0.1] * 10, current=[0.1] * 10),
                )
                for i in range(FEATURES)
            ]
            drifted = sum(f.drifted for f in features) / FEATURES
            report = DriftReport(
                id=uuid.uuid4().hex,
                project=project,
                environment=environment,
                version=1,
                window="1h",
                rows=1000,
                reference="sample",
                reference_rows=5000,
                drift_share=0.5,
                drifted_share=drifted,
                drifted=drifted >= 0.5,
                features=features,
                computed_at=now - timedelta(hours=REPORTS - n),
            )
            drift_results.save_report(session, report)


def _runs(platform: Platform, project: str, now: datetime) -> None:
    rows = [
        {
            "project": project,
            "kind": "score" if n % 3 else "train",
            "status": "failed" if n % 17 == 0 else "succeeded",
            "environment": "dev" if n % 3 else None,
            "started_at": now - timedelta(minutes=RUNS - n),
            "finished_at": now - timedelta(minutes=RUNS - n) + timedelta(seconds=5 + n % 11),
            "rows_in": 10_000 + n,
            "rows_out": 10_000 + n,
            "details": {},
            "error": "ValueError: a column went missing" if n % 17 == 0 else None,
            "created_by": "dana",
            "validation": "valid",
            "validation_report": {"status": "valid", "rows": 10_000 + n, "findings": []},
            "steps": [
                {
                    "name": name,
                    "status": "succeeded",
                    "started_at": (now - timedelta(minutes=RUNS - n)).isoformat(),
                    "finished_at": (now - timedelta(minutes=RUNS - n)).isoformat(),
                    "duration_seconds": 1.0 + k,
                    "rows_in": 10_000,
                    "rows_out": 10_000,
                    "note": None,
                }
                for k, name in enumerate(("read", "validate", "score", "write"))
            ],
        }
        for n in range(1, RUNS + 1)
    ]
    with platform.db.transaction() as session:
        session.execute(insert(RunRow), rows)


def _log(platform: Platform, project: str, environment: str, now: datetime) -> None:
    rows = []
    for i in range(LOGGED):
        path, reason, status = "champion", None, 200
        if i % 50 == 0:
            path, reason = "rules", "latency"
        elif i % 333 == 0:
            path, reason, status = "refused", "invalid_input", 422
        rows.append(
            {
                "request_id": f"bench-{i}",
                "row": 0,
                "ts": now - timedelta(seconds=3500 * i / LOGGED),
                "environment": environment,
                "project": project,
                "version": 1,
                "path": path,
                "reason": reason,
                "status": status,
                "latency_ms": 2.0,
                "inputs": "{}",
                "output": "0",
                "probabilities": None,
                "shadow_version": None,
                "shadow_output": None,
                "replica": "bench-replica-0",
            }
        )
    write_predictions(platform.artifacts, rows)
