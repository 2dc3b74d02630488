"""Replicas' traffic samples in the metadata database: written from heartbeats, read back as series."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, case, delete, func, literal, select
from sqlalchemy.orm import Session, aliased

from harbourmaster.core.sla import LATENCY_BUCKETS, Counts, FirstSample, Sample, Slice, step_increase
from harbourmaster.store.tables import TrafficSampleRow

INCREMENTS = (
    "inc_requests",
    "inc_errors",
    "inc_fallbacks",
    "inc_timed",
    "inc_latency_sum",
    *(f"inc_b{i}" for i in range(len(LATENCY_BUCKETS))),
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST = "traffic_samples.last"  # session.info key: the series' newest sample written in this transaction


def micros(value: datetime) -> int:
    """``value`` as integer microseconds since the epoch (the samples' ``at_us``)."""
    return (_utc(value) - _EPOCH) // timedelta(microseconds=1)


def add(
    session: Session,
    replica: str,
    environment: str,
    started: datetime,
    at: datetime,
    counts: dict[str, Counts],
    side: str | None = None,
) -> None:
    """One sample per project of one replica's heartbeat (``side``: of one side of a canary), each with
    its increase over the series' previous sample (``core/sla.py``'s ``step_increase``)."""
    known: dict[tuple[str, str, str | None, str], Sample] = session.info.setdefault(_LAST, {})
    missing = [project for project in counts if (replica, environment, side, project) not in known]
    if missing:
        known.update(_newest(session, replica, environment, side, missing))
    at_us = micros(at)
    rows = []
    for project, c in counts.items():
        sample = Sample(at_us / 1e6, _utc(started).timestamp(), c)
        key = (replica, environment, side, project)
        step = step_increase(known.get(key), sample)
        known[key] = sample
        rows.append(
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
                at_us=at_us,
                **dict(zip(INCREMENTS, _values(step), strict=True)),
            )
        )
    session.add_all(rows)


def _newest(
    session: Session, replica: str, environment: str, side: str | None, projects: list[str]
) -> dict[tuple[str, str, str | None, str], Sample]:
    """The newest stored sample of each project's series of this replica (one query)."""
    t = TrafficSampleRow
    newer = aliased(TrafficSampleRow)
    later = (
        select(newer.id)
        .where(
            newer.replica == t.replica,
            newer.environment == t.environment,
            newer.project == t.project,
            newer.side.is_(None) if side is None else newer.side == side,
            newer.at_us > t.at_us,
        )
        .exists()
    )
    query = select(t.project, t.at_us, t.started_at, *_COUNTERS).where(
        t.replica == replica,
        t.environment == environment,
        t.side.is_(None) if side is None else t.side == side,
        t.project.in_(projects),
        ~later,
    )
    found = {}
    for row in session.execute(query.order_by(t.id)):
        counts = Counts(row.requests, row.errors, row.fallbacks, row.timed, row.latency_sum, buckets=tuple(row.buckets))
        found[(replica, environment, side, row.project)] = Sample(
            row.at_us / 1e6, _utc(row.started_at).timestamp(), counts
        )
    return found


def sums(
    session: Session,
    environment: str,
    project: str,
    since: datetime,
    end: datetime,
    *,
    step: float | None = None,
    count: int = 0,
    bounds: Sequence[float] = (),
) -> dict[str, dict[int, Slice]]:
    """The whole project's samples in ``(since, end]`` summed per replica and interval, in SQL.

    With ``step`` (seconds): interval ``j`` holds the samples of ``(end - (j+1) step, end - j step]`` for
    ``j < count``, and ``count`` all older ones. With ``bounds`` (ascending seconds): group ``k`` holds
    the samples less than ``bounds[k]`` seconds before ``end`` and not in an earlier group, and
    ``len(bounds)`` all older ones.
    """
    t = TrafficSampleRow
    end_us = micros(end)
    age = literal(end_us, BigInteger) - t.at_us
    if step is not None:
        step_us = round(step * 1_000_000)
        group = case((age < count * step_us, age // literal(step_us, BigInteger)), else_=literal(count, BigInteger))
    else:
        group = case(
            *((age < round(b * 1_000_000), literal(k, BigInteger)) for k, b in enumerate(bounds)),
            else_=literal(len(bounds), BigInteger),
        )
    group = group.label("slot")
    query = (
        select(
            t.replica,
            group,
            func.count(),
            func.min(t.at_us),
            func.max(t.at_us),
            *(func.sum(getattr(t, name)) for name in INCREMENTS),
        )
        .where(
            t.environment == environment,
            t.project == project,
            t.side.is_(None),
            t.at_us > micros(since),
            t.at_us <= end_us,
        )
        .group_by(t.replica, group)
    )
    found: dict[str, dict[int, Slice]] = defaultdict(dict)
    for replica, slot, samples, first_us, last_us, *values in session.execute(query):
        found[replica][int(slot)] = Slice(_counts(values), int(samples), first_us / 1e6, last_us / 1e6)
    return dict(found)


def first_samples(
    session: Session, environment: str, project: str, since: datetime, replicas: Sequence[str]
) -> dict[str, FirstSample]:
    """Each replica's oldest sample of the whole project after ``since``, with its increment."""
    t = TrafficSampleRow
    found: dict[str, FirstSample] = {}
    for replica in replicas:
        row = session.execute(
            select(t.at_us, t.started_at, *_COUNTERS, *(getattr(t, name) for name in INCREMENTS))
            .where(
                t.replica == replica,
                t.environment == environment,
                t.project == project,
                t.side.is_(None),
                t.at_us > micros(since),
            )
            .order_by(t.at_us, t.id)
            .limit(1)
        ).first()
        if row is None:
            continue
        counts = Counts(row.requests, row.errors, row.fallbacks, row.timed, row.latency_sum, buckets=tuple(row.buckets))
        increment = _counts([getattr(row, name) for name in INCREMENTS])
        found[replica] = FirstSample(Sample(row.at_us / 1e6, _utc(row.started_at).timestamp(), counts), increment)
    return found


def _counts(values: Sequence[float]) -> Counts:
    numbers = [float(v or 0.0) for v in values]
    return Counts(*numbers[:5], buckets=tuple(numbers[5:]))


def _values(counts: Counts) -> tuple[float, ...]:
    return (counts.requests, counts.errors, counts.fallbacks, counts.timed, counts.latency_sum, *counts.buckets)


_COUNTERS = (
    TrafficSampleRow.requests,
    TrafficSampleRow.errors,
    TrafficSampleRow.fallbacks,
    TrafficSampleRow.timed,
    TrafficSampleRow.latency_sum,
    TrafficSampleRow.buckets,
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
