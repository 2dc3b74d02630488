"""Replicas' traffic samples in the metadata database: written from heartbeats, read back as series."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from harbourmaster.core.sla import Counts, Sample
from harbourmaster.store.tables import TrafficSampleRow


def add(
    session: Session,
    replica: str,
    environment: str,
    started: datetime,
    at: datetime,
    counts: dict[str, Counts],
    side: str | None = None,
) -> None:
    """One sample per project of one replica's heartbeat (``side``: of one side of a canary)."""
    session.add_all(
        TrafficSampleRow(
            replica=replica,
            environment=environment,
            project=project,
            side=side,
            sampled_at=at,
            started_at=started,
            requests=c.requests,
            errors=c.errors,
            fallbacks=c.fallbacks,
            timed=c.timed,
            latency_sum=c.latency_sum,
            buckets=list(c.buckets),
        )
        for project, c in counts.items()
    )


def series(
    session: Session,
    since: datetime,
    environment: str | None = None,
    project: str | None = None,
    side: str | None = None,
) -> dict[tuple[str, str], dict[str, list[Sample]]]:
    """Samples taken after ``since``, per (project, environment), per replica, oldest first: the whole
    projects' samples, or with ``side`` those of one side of their canaries."""
    t = TrafficSampleRow
    # Columns, not ORM objects: hours of samples of several replicas are thousands of rows per read.
    query = select(
        t.project,
        t.environment,
        t.replica,
        t.sampled_at,
        t.started_at,
        t.requests,
        t.errors,
        t.fallbacks,
        t.timed,
        t.latency_sum,
        t.buckets,
    ).where(t.sampled_at > since)
    query = query.where(t.side.is_(None) if side is None else t.side == side)
    if environment is not None:
        query = query.where(t.environment == environment)
    if project is not None:
        query = query.where(t.project == project)
    found: dict[tuple[str, str], dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for row in session.execute(query.order_by(t.sampled_at, t.id)):
        counts = Counts(row.requests, row.errors, row.fallbacks, row.timed, row.latency_sum, buckets=tuple(row.buckets))
        sample = Sample(_utc(row.sampled_at).timestamp(), _utc(row.started_at).timestamp(), counts)
        found[(row.project, row.environment)][row.replica].append(sample)
    return found


def prune(session: Session, before: datetime) -> None:
    session.execute(delete(TrafficSampleRow).where(TrafficSampleRow.sampled_at < before))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
