"""One deployment as an operator watches it: traffic split and rollout progress, traffic against the
SLA over time, how requests were answered (fallbacks and refusals by reason), and its replicas.

A read (``read`` on the environment). A guarded environment's read is audited, once per person and
deployment per ``AUDIT_EVERY``: a page polling every few seconds is one look, not thousands of entries.
The figures come from the same places as the SLA report (traffic samples, ``core/sla.py``), the
prediction log (reasons) and the replicas' heartbeats.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy.orm import Session

from harbourmaster.core.environments import SlaConfig
from harbourmaster.core.permissions import Permission
from harbourmaster.core.sla import FALLBACK_PATHS, WINDOWS, ZERO, Counts, SlaReport, report_of, slices_increase
from harbourmaster.core.sla_timeline import TrafficPoint, intervals, timeline_of_slices
from harbourmaster.schemas import DeploymentState
from harbourmaster.services.actors import Actor
from harbourmaster.services.rollouts import RolloutInfo, RolloutService, rollout_stage
from harbourmaster.services.sla import LOOKBACK
from harbourmaster.store import traffic_samples
from harbourmaster.store.prediction_log import PredictionLog

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

AUDIT_EVERY = timedelta(minutes=10)
SPANS: dict[str, tuple[int, int]] = {"15m": (900, 15), "1h": (3600, 60), "6h": (21600, 300)}  # span, step (s)
DEFAULT_SPAN = "1h"
_MB = 1024 * 1024


class TrafficSplit(BaseModel):
    """Who answers what share of the requests (percent), and the shadow, if any."""

    champion: int | None
    champion_weight: float
    challenger: int | None = None
    challenger_mode: str | None = None  # canary | shadow
    challenger_weight: float = 0.0
    sticky_key: str | None = None


class RolloutProgress(BaseModel):
    """How far a challenger has come: an active rollout's stage and plan, or the canary weight set by hand
    (``harbourmaster challenger``)."""

    active: bool
    weight: float  # percent of traffic the challenger answers now
    stage: str  # e.g. "canary 10%", "shadow", "none"
    steps: list[float] = []  # planned weights, when a rollout plan exists
    source: str = "challenger"  # what the figures are read from


class Outcome(BaseModel):
    """Requests of the log window answered one way: path (champion, challenger, failover, rules,
    unavailable, refused), the reason of a fallback or refusal, the HTTP status."""

    path: str
    reason: str | None
    status: int
    requests: int
    share: float
    kind: str  # answered | fallback | error | refused


class ReplicaView(BaseModel):
    id: str
    host: str
    pid: int
    status: str  # alive | stale | stopped
    last_seen: datetime
    heartbeat_age_seconds: float
    revision: int | None  # of this deployment, as the replica loaded it
    versions: dict[str, int]  # role -> version loaded for this project
    cpu_percent: float | None
    memory_mb: float | None
    capture_pending: float | None
    throughput: list[float | None]  # per interval of the timeline (this replica's share)


class DeploymentStatus(BaseModel):
    """Everything the deployment page shows, as plain data."""

    project: str
    environment: str
    state: DeploymentState
    split: TrafficSplit
    rollout: RolloutProgress
    sla: SlaConfig
    report: SlaReport
    span: str
    step_seconds: float
    points: list[TrafficPoint]
    outcomes: list[Outcome] | None  # None: not read (the live fragment skips the prediction log)
    outcomes_since: datetime
    replicas: list[ReplicaView]
    computed_at: datetime


class DeploymentStatusService:
    """Reads a deployment's live status for the console."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._audited: dict[tuple[str, str, str], datetime] = {}
        self._lock = threading.Lock()

    def status(
        self,
        actor: Actor,
        project: str,
        environment: str,
        *,
        span: str = DEFAULT_SPAN,
        outcomes: bool = True,
        now: datetime | None = None,
    ) -> DeploymentStatus:
        """The deployment's split, rollout, SLA figures over ``span`` (15m, 1h, 6h), outcomes by reason
        (from the prediction log over the last hour, unless ``outcomes`` is false) and replicas."""
        from harbourmaster.errors import InvalidInputError

        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        if span not in SPANS:
            raise InvalidInputError(f"unknown span {span!r}", f"use one of: {', '.join(SPANS)}")
        now = now or datetime.now(UTC)
        sla = self._platform.environments.get(environment).config.sla
        span_seconds, step = SPANS[span]
        with self._platform.db.reader() as session:
            state = self._platform.deployments.state_in(session, project, environment, required=True)
            rollout = RolloutService.active_in(session, project).get((project, environment))
            report, points, throughput = _traffic(session, project, environment, sla, now, span_seconds, step)
        step_seconds = (points[1].end - points[0].end).total_seconds() if len(points) > 1 else float(step)
        outcomes_since = now - timedelta(hours=1)
        found = self._outcomes(project, environment, outcomes_since) if outcomes else None
        result = DeploymentStatus(
            project=project,
            environment=environment,
            state=state,
            split=_split(state),
            rollout=rollout_progress(state, rollout),
            sla=sla,
            report=report,
            span=span,
            step_seconds=step_seconds,
            points=points,
            outcomes=found,
            outcomes_since=outcomes_since,
            replicas=self._replicas(
                actor, project, environment, now, throughput, len(points), now - timedelta(seconds=span_seconds)
            ),
            computed_at=now,
        )
        self._audit(actor, project, environment, now)
        return result

    def _outcomes(self, project: str, environment: str, since: datetime) -> list[Outcome]:
        rows = PredictionLog(self._platform.artifacts).outcomes(environment, project, since)
        total = sum(n for *_, n in rows) or 1
        return [
            Outcome(path=path, reason=reason, status=status, requests=n, share=n / total, kind=_kind(path, status))
            for path, reason, status, n in rows
        ]

    def _replicas(
        self,
        actor: Actor,
        project: str,
        environment: str,
        now: datetime,
        throughput: dict[str, list[float | None]],
        points: int,
        since: datetime,
    ) -> list[ReplicaView]:
        """The environment's running replicas, and those stopped within the span (their last heartbeat)."""
        views = []
        for info in self._platform.replicas.list(actor, environment, include_stopped=True):
            if info.status == "stopped" and info.last_seen < since:
                continue
            loaded = (info.loaded or {}).get(project) or {}
            details = info.details or {}
            memory = _number(details.get("memory_bytes"))
            views.append(
                ReplicaView(
                    id=info.id,
                    host=info.host,
                    pid=info.pid,
                    status=info.status,
                    last_seen=info.last_seen,
                    heartbeat_age_seconds=max(0.0, (now - info.last_seen).total_seconds()),
                    revision=loaded.get("revision") if isinstance(loaded.get("revision"), int) else None,
                    versions={
                        role: int(value["version"])
                        for role, value in loaded.items()
                        if isinstance(value, dict) and isinstance(value.get("version"), int)
                    },
                    cpu_percent=_number(details.get("cpu_percent")),
                    memory_mb=None if memory is None else memory / _MB,
                    capture_pending=_number(details.get("capture_pending")),
                    throughput=throughput.get(info.id, [None] * points),
                )
            )
        return views

    def _audit(self, actor: Actor, project: str, environment: str, now: datetime) -> None:
        if not self._platform.access.is_guarded(environment):
            return
        key = (actor.name, project, environment)
        with self._lock:
            last = self._audited.get(key)
            if last is not None and now - last < AUDIT_EVERY:
                return
            self._audited[key] = now
        self._platform.audit.record_alone(actor, "deployment.status.read", project, environment=environment)


def _traffic(
    session: Session, project: str, environment: str, sla: SlaConfig, now: datetime, span_seconds: int, wanted: int
) -> tuple[SlaReport, list[TrafficPoint], dict[str, list[float | None]]]:
    """The SLA report and the timeline (in total and per replica) from the samples' kept increments,
    summed per replica and interval in SQL: a few hundred rows, whatever the heartbeat cadence. The
    figures are those ``assess`` and ``timeline`` compute from the raw samples (tests/monitoring)."""
    since = now - max(LOOKBACK, timedelta(seconds=span_seconds) + timedelta(minutes=15))
    bounds = sorted(WINDOWS.values())
    step, count = intervals(span_seconds, wanted)
    bands = traffic_samples.sums(session, environment, project, since, now, bounds=bounds)
    slots = traffic_samples.sums(session, environment, project, since, now, step=step, count=count)
    # A replica with no sample before the longest window (or the span) needs its first one (rare: a new replica).
    unbased = {r for r, parts in bands.items() if len(bounds) not in parts} | {
        r for r, parts in slots.items() if count not in parts
    }
    firsts = traffic_samples.first_samples(session, environment, project, since, sorted(unbased))
    end = now.timestamp()

    def counts_over(seconds: int) -> tuple[Counts, float]:
        inner = bounds.index(seconds)
        total, covered = ZERO, 0.0
        for replica, parts in bands.items():
            older = [p.last_at for k, p in parts.items() if k > inner and p.samples]
            inside = [p for k, p in parts.items() if k <= inner]
            counts, seconds_ = slices_increase(inside, max(older, default=None), firsts.get(replica), end - seconds)
            total, covered = total + counts, max(covered, seconds_)
        return total, covered

    live = sum(1 for parts in bands.values() if any(k < len(bounds) for k in parts))
    report = report_of(project, environment, sla, counts_over, live, now)
    replicas = sorted(slots)
    points, own = timeline_of_slices(
        [(slots[replica], firsts.get(replica)) for replica in replicas], sla, now, step, count
    )
    return report, points, dict(zip(replicas, own, strict=True))


def _split(state: DeploymentState) -> TrafficSplit:
    challenger = state.challenger
    weight = challenger.weight if challenger is not None and challenger.mode == "canary" else 0.0
    return TrafficSplit(
        champion=state.champion.number if state.champion else None,
        champion_weight=100.0 - weight if state.champion else 0.0,
        challenger=challenger.version.number if challenger else None,
        challenger_mode=challenger.mode if challenger else None,
        challenger_weight=weight,
        sticky_key=challenger.sticky_key if challenger else None,
    )


def rollout_progress(state: DeploymentState, rollout: RolloutInfo | None = None) -> RolloutProgress:
    """How far the challenger has come: the active rollout's plan and step, or the challenger set by hand."""
    challenger = state.challenger
    weight = challenger.weight if challenger is not None and challenger.mode == "canary" else 0.0
    if rollout is not None:
        return RolloutProgress(
            active=True,
            weight=weight,
            stage=rollout_stage(rollout) + (f": {rollout.reason}" if rollout.reason else ""),
            steps=rollout.steps if rollout.strategy == "canary" else [],
            source=f"rollout {rollout.id}",
        )
    if challenger is None:
        return RolloutProgress(active=False, weight=0.0, stage="none")
    if challenger.mode == "shadow":
        return RolloutProgress(active=True, weight=0.0, stage="shadow")
    return RolloutProgress(active=True, weight=challenger.weight, stage=f"canary {challenger.weight:g}%")


def _kind(path: str, status: int) -> str:
    if path == "refused":
        return "refused"
    if status >= 500:
        return "error"
    if path in FALLBACK_PATHS:
        return "fallback"
    return "answered"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
