"""Serving replicas' heartbeats (who is alive, what each has loaded, its CPU and memory, its traffic
counters) and the people's read of what they logged."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from harbourmaster.core.permissions import Permission
from harbourmaster.core.sla import CANARY_SIDES, WINDOWS, heartbeat_sides, heartbeat_traffic
from harbourmaster.errors import ConflictError, InvalidInputError
from harbourmaster.schemas import ReplicaInfo
from harbourmaster.services.actors import Actor
from harbourmaster.services.served import record_served
from harbourmaster.store import traffic_samples
from harbourmaster.store.tables import ReplicaRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

STALE_AFTER = timedelta(seconds=30)
MAX_PROJECTS_PER_BEAT = 1000  # and versions per project: a heartbeat is bounded work
SAMPLE_EVERY = timedelta(seconds=15)  # traffic samples kept per replica (a beat comes every 5 s)
# Shorter sampling (down to every beat) for rollouts with bake times of seconds, and tests.
SAMPLE_VAR = "HARBOURMASTER_TRAFFIC_SAMPLE_SECONDS"


def sample_every(env: Any) -> timedelta:
    raw = env.get(SAMPLE_VAR) or ""
    try:
        seconds = float(raw) if raw.strip() else SAMPLE_EVERY.total_seconds()
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise InvalidInputError(
            f"{SAMPLE_VAR}={raw!r} is not a number of seconds from 0 to 3600", f"e.g. {SAMPLE_VAR}=15"
        )
    return timedelta(seconds=seconds)


SAMPLE_RETENTION = timedelta(seconds=max(WINDOWS.values())) + timedelta(hours=1)
PRUNE_EVERY = timedelta(minutes=5)


def _info(row: ReplicaRow, now: datetime) -> ReplicaInfo:
    last_seen = row.last_seen if row.last_seen.tzinfo else row.last_seen.replace(tzinfo=UTC)
    status = row.status
    if status in ("starting", "alive") and now - last_seen > STALE_AFTER:
        status = "stale"
    return ReplicaInfo(
        id=row.id,
        environment=row.environment,
        host=row.host,
        pid=row.pid,
        address=row.address,
        status=status,
        loaded=row.loaded,
        details=row.details,
        started_at=row.started_at,
        last_seen=last_seen,
    )


class ReplicaService:
    """Upserts heartbeats (one row per replica) and lists replicas."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._served: set[tuple[str, str, int]] = set()  # (environment, project, version) known to have served
        self._sampled: dict[str, datetime] = {}  # replica -> when its last traffic sample was kept
        self._pruned = datetime.min.replace(tzinfo=UTC)
        self._sample_every = sample_every(os.environ)

    def heartbeat(
        self,
        actor: Actor,
        replica_id: str,
        *,
        environment: str,
        host: str,
        pid: int,
        address: str,
        status: str = "alive",
        loaded: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        now = datetime.now(UTC)
        with self._platform.db.transaction() as session:
            row = session.get(ReplicaRow, replica_id)
            if row is None:
                row = ReplicaRow(id=replica_id, environment=environment, host=host, pid=pid, started_at=now)
                session.add(row)
            elif row.environment != environment:  # a replica credential writes its own environment's rows only
                raise ConflictError(
                    f"replica {replica_id} belongs to {row.environment}", "each replica process has an id of its own"
                )
            row.environment, row.host, row.pid, row.address = environment, host, pid, address
            row.status = status
            row.loaded = loaded or {}
            row.details = details or {}
            row.last_seen = now
            self._record_served(session, actor, replica_id, environment, (details or {}).get("answered"))
            self._record_traffic(session, replica_id, environment, status, (details or {}).get("traffic"), now)

    def _record_traffic(
        self, session: Session, replica_id: str, environment: str, status: str, raw: Any, now: datetime
    ) -> None:
        """Keep the replica's cumulative counters as samples (one per ``SAMPLE_EVERY``, and its last one
        when it stops), from which the SLA monitor computes window figures; prune old ones now and then."""
        last = self._sampled.get(replica_id)
        if status != "stopped" and last is not None and now - last < self._sample_every:
            return
        traffic = heartbeat_traffic(raw, MAX_PROJECTS_PER_BEAT)
        if traffic is None:
            return
        uptime, counts = traffic
        started = now - timedelta(seconds=uptime)
        traffic_samples.add(session, replica_id, environment, started, now, counts)
        sides = heartbeat_sides(raw, MAX_PROJECTS_PER_BEAT)
        for side in CANARY_SIDES:
            of_side = {project: c for (project, name), c in sides.items() if name == side}
            if of_side:
                traffic_samples.add(session, replica_id, environment, started, now, of_side, side)
        if status == "stopped":
            self._sampled.pop(replica_id, None)
        else:
            self._sampled[replica_id] = now
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            traffic_samples.prune(session, now - SAMPLE_RETENTION)
            for replica, when in list(self._sampled.items()):  # replicas gone without a goodbye
                if now - when > SAMPLE_RETENTION:
                    self._sampled.pop(replica, None)

    def _record_served(self, session: Session, actor: Actor, replica_id: str, environment: str, answered: Any) -> None:
        """The first answer of a version as champion in an environment, as an audited ``served`` deployment
        event: what the order gate counts as having served there."""
        if not isinstance(answered, dict):
            return
        for project, counts in list(answered.items())[:MAX_PROJECTS_PER_BEAT]:
            if not isinstance(project, str) or not isinstance(counts, dict):
                continue
            for number, count in list(counts.items())[:MAX_PROJECTS_PER_BEAT]:
                if not (isinstance(count, int) and count > 0 and str(number).isdigit()):
                    continue
                key = (environment, project, int(number))
                if key in self._served:
                    continue
                if record_served(self._platform, session, actor, project, environment, int(number), replica_id, count):
                    self._served.add(key)

    def list(self, actor: Actor, environment: str | None = None, include_stopped: bool = False) -> list[ReplicaInfo]:
        self._platform.access.require(actor, Permission.READ, target="replicas")
        now = datetime.now(UTC)
        with self._platform.db.reader() as session:
            query = select(ReplicaRow).order_by(ReplicaRow.environment, ReplicaRow.started_at)
            if environment:
                self._platform.environments.row(session, environment)  # a typo is named, not an empty list
                query = query.where(ReplicaRow.environment == environment)
            infos = [_info(row, now) for row in session.scalars(query)]
        return [info for info in infos if include_stopped or info.status != "stopped"]

    def predictions(self, actor: Actor, project: str, environment: str, limit: int = 20) -> dict[str, Any]:
        """The newest ``limit`` rows of a project's prediction log and the total count, as JSON-ready
        records (the read itself, and its audit when guarded, are the prediction-read service's)."""
        self._platform.environments.get(environment)  # an unknown environment is a 404 with a hint
        frame, count = self._platform.predictions.read(actor, project, environment, limit=limit)
        return {"count": count, "rows": orjson.loads(frame.to_json(orient="records", date_format="iso"))}
