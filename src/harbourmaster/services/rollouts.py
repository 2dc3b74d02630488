"""Progressive rollouts: a challenger enters an environment by canary steps (or a shadow period), and the
rollout controller, on the control plane's scheduler, moves it on, completes it or rolls it back.

The state is a ``RolloutRow`` (step, state, when the step began), so a restarted control plane resumes
where it was. Each tick reads both sides' traffic over the current step from the replicas' heartbeat
samples (``store/traffic_samples.py``, ``side`` champion/challenger) and lets ``core/rollout_rules.py``
decide. Every change goes through ``DeploymentService`` (revision bump, deployment event, audit entry)
and is audited as a ``rollout.*`` entry of its own; a rollback also raises an alert saying why.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from harbourmaster.core.alerts import Severity, Verdict
from harbourmaster.core.permissions import Permission
from harbourmaster.core.rollout_rules import (
    MIN_REQUESTS,
    Decision,
    ShadowInput,
    SideFigures,
    StepInput,
    decide,
    decide_shadow,
)
from harbourmaster.core.sla import window_counts
from harbourmaster.errors import ConflictError, InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.store import traffic_samples
from harbourmaster.store.tables import RolloutRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

log = logging.getLogger("harbourmaster.rollouts")
ACTIVE = ("running", "paused")
CONTROLLER = "rollouts"  # the system actor's name and the alerts' monitor
ALERT_RULE = "rollout.rolled-back"
MAX_EVENTS = 200  # a rollout's own log stays bounded


class RolloutInfo(BaseModel):
    id: int
    project: str
    environment: str
    from_version: int | None
    to_version: int
    strategy: str
    steps: list[float]
    bake_seconds: float
    options: dict[str, Any]
    step: int
    weight: float | None  # the challenger's share now (canary)
    step_started_at: datetime
    state: str
    reason: str | None
    events: list[dict[str, Any]]
    actor: str
    promotion_id: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


def rollout_info(row: RolloutRow) -> RolloutInfo:
    weight = row.steps[row.step] if row.strategy == "canary" and row.step < len(row.steps) else None
    return RolloutInfo(
        id=row.id,
        project=row.project,
        environment=row.environment,
        from_version=row.from_version,
        to_version=row.to_version,
        strategy=row.strategy,
        steps=list(row.steps),
        bake_seconds=row.bake_seconds,
        options=dict(row.options or {}),
        step=row.step,
        weight=weight,
        step_started_at=_utc(row.step_started_at),
        state=row.state,
        reason=row.reason,
        events=list(row.events or []),
        actor=row.actor,
        promotion_id=row.promotion_id,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        finished_at=_utc(row.finished_at) if row.finished_at else None,
    )


class RolloutService:
    """Starts, reads, pauses, resumes, aborts and advances rollouts."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._lock = threading.Lock()

    # -- starting (inside the promotion's transaction) -----------------------------------

    def start(
        self,
        session: Session,
        actor: Actor,
        *,
        project: str,
        environment: str,
        from_version: int | None,
        to_version: int,
        strategy: str,
        steps: list[float],
        bake_seconds: float,
        options: dict[str, Any],
        promotion_id: int,
    ) -> RolloutRow:
        """Record a new rollout and put its first step in place (the challenger at the first weight, or as a
        shadow). One active rollout per deployment."""
        if from_version is None:
            raise ConflictError(
                f"{project} has no champion in {environment} to roll out against",
                f"promote the first version with --strategy immediate: harbourmaster promote {project} "
                f"{to_version} --to {environment}",
            )
        if from_version == to_version:
            raise ConflictError(
                f"v{to_version} is already the champion of {project} in {environment}",
                "roll out another version, or leave it as it is",
            )
        key = f"{project}/{environment}"
        if session.scalar(select(RolloutRow.id).where(RolloutRow.active_key == key)) is not None:
            raise ConflictError(
                f"a rollout of {project} in {environment} is already under way",
                f"see it with harbourmaster rollouts --project {project}; abort it with harbourmaster rollouts "
                "abort ID",
            )
        now = datetime.now(UTC)
        row = RolloutRow(
            project=project,
            environment=environment,
            from_version=from_version,
            to_version=to_version,
            strategy=strategy,
            steps=steps,
            bake_seconds=bake_seconds,
            options=options,
            step=0,
            step_started_at=now,
            state="running",
            events=[_event(now, "started", f"{strategy} of v{to_version} against v{from_version}")],
            actor=actor.name,
            promotion_id=promotion_id,
            active_key=key,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        self._place(session, actor, row)
        self._platform.audit.record(
            session,
            actor,
            "rollout.start",
            f"{project}:v{to_version}",
            environment=environment,
            after={"strategy": strategy, "steps": steps, "bake_seconds": bake_seconds, "options": options},
            details={"rollout_id": row.id, "from_version": from_version, "promotion_id": promotion_id},
        )
        return row

    # -- reading ------------------------------------------------------------------------

    def list(
        self, actor: Actor, project: str | None = None, *, active: bool = False, limit: int = 50
    ) -> list[RolloutInfo]:
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            query = select(RolloutRow).order_by(RolloutRow.id.desc()).limit(limit)
            if project:
                query = query.where(RolloutRow.project == project)
            if active:
                query = query.where(RolloutRow.state.in_(ACTIVE))
            infos = [rollout_info(row) for row in session.scalars(query)]
        self._platform.access.audit_guarded_read(actor, "rollout.list", project or "*", (i.environment for i in infos))
        return infos

    def get(self, actor: Actor, rollout_id: int) -> RolloutInfo:
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            info = rollout_info(self._row(session, rollout_id))
        self._platform.access.audit_guarded_read(actor, "rollout.read", info.project, [info.environment])
        return info

    # -- people's changes ---------------------------------------------------------------

    def pause(self, actor: Actor, rollout_id: int, reason: str | None = None) -> RolloutInfo:
        """Hold the rollout at its step (traffic stays split as it is)."""
        return self._person(actor, rollout_id, "pause", reason)

    def resume(self, actor: Actor, rollout_id: int, reason: str | None = None) -> RolloutInfo:
        """Go on from the held step (its bake time starts again; a waiting shadow completes)."""
        return self._person(actor, rollout_id, "resume", reason)

    def abort(self, actor: Actor, rollout_id: int, reason: str | None = None) -> RolloutInfo:
        """Stop the rollout: the challenger is removed, the champion stays."""
        return self._person(actor, rollout_id, "abort", reason)

    @staticmethod
    def active_in(session: Session, project: str | None = None) -> dict[tuple[str, str], RolloutInfo]:
        """The running or paused rollout of each deployment (of ``project``), read in the caller's session
        (the caller checked access)."""
        query = select(RolloutRow).where(RolloutRow.state.in_(ACTIVE))
        if project is not None:
            query = query.where(RolloutRow.project == project)
        return {(row.project, row.environment): rollout_info(row) for row in session.scalars(query)}

    @staticmethod
    def active_id(session: Session, project: str, environment: str) -> int | None:
        """The deployment's running or paused rollout, if any."""
        return session.scalar(select(RolloutRow.id).where(RolloutRow.active_key == f"{project}/{environment}"))

    def stop_active(self, session: Session, actor: Actor, project: str, environment: str, reason: str) -> int | None:
        """Abort the deployment's active rollout, if any, in ``session`` (a rollback does this); its id."""
        row = session.scalar(
            select(RolloutRow).where(RolloutRow.active_key == f"{project}/{environment}").with_for_update()
        )
        if row is None:
            return None
        self._finish(session, row, "aborted", reason, datetime.now(UTC))
        self._platform.audit.record(
            session, actor, "rollout.abort", f"{project}:v{row.to_version}", environment=environment,
            details={"rollout_id": row.id, "reason": reason},
        )  # fmt: skip
        return row.id

    def _person(self, actor: Actor, rollout_id: int, action: str, reason: str | None) -> RolloutInfo:
        with self._platform.db.reader() as session:
            found = self._row(session, rollout_id)
            project, environment = found.project, found.environment
        self._platform.access.require(actor, Permission.DEPLOY, environment=environment, target=project)
        now = datetime.now(UTC)
        with self._platform.db.transaction() as session:
            row = self._row(session, rollout_id, lock=True)
            allowed = {"pause": ("running",), "resume": ("paused",), "abort": ACTIVE}[action]
            if row.state not in allowed:
                raise ConflictError(
                    f"rollout {rollout_id} is {row.state}: it cannot be {action}d",
                    f"only a {' or '.join(allowed)} rollout can; see harbourmaster rollouts show {rollout_id}",
                )
            before = row.state
            text = reason or f"{action}d by {actor.name}"
            if action == "pause":
                row.state = "paused"
                self._log(row, now, "paused", text)
            elif action == "resume":
                row.state = "running"
                row.step_started_at = now
                row.options = {**row.options, "approved_by": actor.name} if row.options.get("awaiting") else row.options
                self._log(row, now, "resumed", text)
            else:
                self._platform.deployments.clear_challenger(actor, project, environment, session=session)
                self._finish(session, row, "aborted", text, now)
            row.updated_at = now
            self._platform.audit.record(
                session,
                actor,
                f"rollout.{action}",
                f"{project}:v{row.to_version}",
                environment=environment,
                before={"state": before},
                after={"state": row.state},
                details={"rollout_id": row.id, "reason": text},
            )
            return rollout_info(row)

    # -- the controller -------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[RolloutInfo]:
        """One pass over the running rollouts: each is judged and moved on, completed or rolled back.
        Returns the rollouts that changed."""
        now = now or datetime.now(UTC)
        with self._platform.db.reader() as session:
            ids = list(session.scalars(select(RolloutRow.id).where(RolloutRow.state == "running")))
        changed = []
        with self._lock:
            for rollout_id in ids:
                try:
                    info = self._tick_one(rollout_id, now)
                except Exception:
                    log.exception("rollout %s: tick failed (retried at the next tick)", rollout_id)
                    continue
                if info is not None:
                    changed.append(info)
        return changed

    def _tick_one(self, rollout_id: int, now: datetime) -> RolloutInfo | None:
        actor = Actor.system(CONTROLLER)
        alert: Verdict | None = None
        with self._platform.db.transaction() as session:
            row = self._row(session, rollout_id, lock=True)
            if row.state != "running":
                return None  # another control plane (or a person) moved it meanwhile
            changed = self._changed_outside(session, row)
            if changed is not None:  # someone deployed or cleared the challenger by hand: the rollout is over
                self._finish(session, row, "aborted", changed, now)
                self._platform.audit.record(
                    session, actor, "rollout.abort", f"{row.project}:v{row.to_version}",
                    environment=row.environment, details={"rollout_id": row.id, "reason": changed},
                )  # fmt: skip
                return rollout_info(row)
            started = _utc(row.step_started_at)
            elapsed = (now - started).total_seconds()
            decision = self._decide(session, row, started, now, elapsed)
            if decision.action == "wait":
                self._note(row, now, decision)
                if row.state != "paused":
                    return None
                # A shadow held for a person: audited, and the rollout waits for `rollouts resume` or `abort`.
                row.updated_at = now
                self._platform.audit.record(
                    session,
                    actor,
                    "rollout.hold",
                    f"{row.project}:v{row.to_version}",
                    environment=row.environment,
                    after={"state": row.state},
                    details={"rollout_id": row.id, "reason": decision.reason},
                )
                return rollout_info(row)
            target = f"{row.project}:v{row.to_version}"
            if decision.action == "rollback":
                self._platform.deployments.clear_challenger(actor, row.project, row.environment, session=session)
                why = f"step {row.step + 1} ({self._step_label(row)}): {decision.reason}"
                self._finish(session, row, "rolled_back", why, now)
                alert = Verdict(
                    rule=ALERT_RULE,
                    subject=f"{row.project}/{row.environment}",
                    firing=True,
                    severity=Severity.CRITICAL,
                    summary=f"rollout {row.id} of {row.project} v{row.to_version} in {row.environment} rolled back "
                    f"(v{row.from_version} stays champion): {why}",
                    project=row.project,
                    environment=row.environment,
                    evidence=f"rollout:{row.id}",
                    monitor=CONTROLLER,
                )
            elif decision.action == "advance":
                row.step += 1
                row.step_started_at = now
                self._place(session, actor, row)
                self._log(row, now, "advanced", f"to {self._step_label(row)}: {decision.reason}")
            else:
                self._platform.deployments.deploy(
                    actor,
                    row.project,
                    row.to_version,
                    row.environment,
                    action="promote",
                    details={"rollout_id": row.id, "promotion_id": row.promotion_id},
                    session=session,
                )
                self._finish(session, row, "completed", decision.reason, now)
            row.updated_at = now
            self._platform.audit.record(
                session,
                actor,
                f"rollout.{ {'rollback': 'rollback', 'advance': 'step', 'complete': 'complete'}[decision.action] }",
                target,
                environment=row.environment,
                after={"state": row.state, "step": row.step},
                details={
                    "rollout_id": row.id,
                    "reason": decision.reason,
                    "verdicts": [v.__dict__ for v in decision.verdicts],
                },
            )
            info = rollout_info(row)
        if alert is not None:
            self._platform.alerts.apply([alert], now)
        elif info.state == "completed":
            self._platform.alerts.apply([Verdict(ALERT_RULE, f"{info.project}/{info.environment}", False)], now)
        return info

    def _changed_outside(self, session: Session, row: RolloutRow) -> str | None:
        """Why the deployment no longer is what the rollout put in place (None: it still is)."""
        state = self._platform.deployments.state_in(session, row.project, row.environment)
        champion = state.champion.number if state and state.champion else None
        challenger = state.challenger.version.number if state and state.challenger else None
        if champion == row.from_version and challenger == row.to_version:
            return None
        return (
            f"the deployment was changed outside the rollout (champion v{champion}, challenger "
            f"{f'v{challenger}' if challenger else 'none'}): stopped without touching it"
        )

    def _decide(self, session: Session, row: RolloutRow, started: datetime, now: datetime, elapsed: float) -> Decision:
        min_requests = int(row.options.get("min_requests") or MIN_REQUESTS)
        if row.strategy == "shadow":
            shadow = self._shadow_figures(session, row, started, now, min_requests)
            if row.options.get("approved_by"):
                return Decision("complete", f"approved by {row.options['approved_by']}")
            decision = decide_shadow(
                shadow,
                elapsed=elapsed >= float(row.options.get("shadow_seconds") or row.bake_seconds),
                automatic=row.options.get("decide", "auto") == "auto",
            )
            if decision.action == "wait" and "waiting for a person" in decision.reason:
                row.state = "paused"
                row.options = {**row.options, "awaiting": True}
                self._log(row, now, "awaiting", decision.reason)
            return decision
        sla = self._platform.environments.get(row.environment).config.sla
        figures = {}
        for side in ("challenger", "champion"):
            found = traffic_samples.series(
                session, started - timedelta(minutes=5), row.environment, row.project, side=side
            )
            counts, _ = window_counts(found.get((row.project, row.environment), {}).values(), started.timestamp(),
                                      now.timestamp())  # fmt: skip
            figures[side] = SideFigures.of(counts)
        step = StepInput(figures["challenger"], figures["champion"], sla, min_requests, weight=row.steps[row.step])
        return decide(step, baked=elapsed >= row.bake_seconds, last_step=row.step >= len(row.steps) - 1)

    def _shadow_figures(
        self, session: Session, row: RolloutRow, started: datetime, now: datetime, min_requests: int
    ) -> ShadowInput:
        """The mirrored requests of the period, read from the prediction log: both answers side by side."""
        compared, agreed, errors = self._platform.predictions.shadow_agreement(
            row.project, row.environment, row.to_version, started, now
        )
        return ShadowInput(compared, agreed, errors, min_requests)

    # -- internals ----------------------------------------------------------------------

    def _place(self, session: Session, actor: Actor, row: RolloutRow) -> None:
        """Put the current step in place: the challenger at the step's weight, or as a shadow."""
        self._platform.deployments.set_challenger(
            actor,
            row.project,
            row.environment,
            row.to_version,
            mode="shadow" if row.strategy == "shadow" else "canary",
            weight=row.steps[row.step] if row.strategy == "canary" else 0.0,
            sticky_key=row.options.get("sticky_key"),
            session=session,
            via_promotion=True,
        )

    def _finish(self, session: Session, row: RolloutRow, state: str, reason: str, now: datetime) -> None:
        row.state, row.reason, row.active_key, row.finished_at, row.updated_at = state, reason, None, now, now
        self._log(row, now, state, reason)

    @staticmethod
    def _step_label(row: RolloutRow) -> str:
        return f"{row.steps[row.step]:g}%" if row.strategy == "canary" else "shadow"

    def _note(self, row: RolloutRow, now: datetime, decision: Decision) -> None:
        """Keep the latest verdict of the step (one entry, replaced) so that `rollouts show` says what it waits for."""
        events = list(row.events or [])
        if events and events[-1].get("kind") == "waiting":
            events.pop()
        events.append(_event(now, "waiting", decision.reason))
        row.events = events[-MAX_EVENTS:]

    @staticmethod
    def _log(row: RolloutRow, now: datetime, kind: str, text: str) -> None:
        events = [e for e in (row.events or []) if e.get("kind") != "waiting"]
        events.append(_event(now, kind, text))
        row.events = events[-MAX_EVENTS:]

    @staticmethod
    def _row(session: Session, rollout_id: int, *, lock: bool = False) -> RolloutRow:
        query = select(RolloutRow).where(RolloutRow.id == rollout_id)
        row = session.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise NotFoundError(f"no rollout {rollout_id}", "list them with: harbourmaster rollouts")
        return row

    def start_controller(self, interval: float | None = None) -> RolloutController | None:
        """Tick every ``interval`` seconds (default ``HARBOURMASTER_ROLLOUT_TICK``, 5 s) in a background thread."""
        seconds = tick_seconds(os.environ) if interval is None else interval
        if seconds <= 0:
            return None
        controller = RolloutController(self, seconds)
        controller.start()
        return controller


class RolloutController(threading.Thread):
    """Runs ``RolloutService.tick`` every ``interval`` seconds until stopped; nothing it meets stops it."""

    def __init__(self, service: RolloutService, interval: float) -> None:
        super().__init__(name="rollouts", daemon=True)
        self._service = service
        self._interval = interval
        self._stopped = threading.Event()
        self.ticks = 0

    def run(self) -> None:
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                self._service.tick()
                self.ticks += 1
            except Exception:
                log.exception("rollout tick failed")
            self._stopped.wait(max(0.0, self._interval - (time.monotonic() - started)))

    def stop(self, timeout: float = 30.0) -> None:
        self._stopped.set()
        self.join(timeout)


def _event(now: datetime, kind: str, text: str) -> dict[str, Any]:
    return {"at": now.isoformat(), "kind": kind, "text": text}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


TICK_VAR = "HARBOURMASTER_ROLLOUT_TICK"


def tick_seconds(env: Any) -> float:
    """Seconds between two controller ticks (``HARBOURMASTER_ROLLOUT_TICK``, default 5; 0: no controller)."""
    raw = env.get(TICK_VAR) or "5"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise InvalidInputError(f"{TICK_VAR}={raw!r} is not a number of seconds from 0 to 3600", f"e.g. {TICK_VAR}=5")
    return value


def rollout_stage(info: RolloutInfo) -> str:
    """A rollout in a few words: ``canary step 2 of 4 (25%), running``, ``shadow, paused``."""
    if info.strategy == "canary" and info.steps:
        where = f"canary step {info.step + 1} of {len(info.steps)} ({(info.weight or 0):g}%)"
    else:
        where = info.strategy
    return f"{where}, {info.state}"
