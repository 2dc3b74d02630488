"""Lifecycle cases: the control plane opens one when an alert a project's ``[lifecycle.automation]`` names
fires in its watched environment; a lifecycle worker (``harbourmaster lifecycle worker``, which runs the
project's code, never the control plane) claims it and records each step here; the control plane links the
production promotion and its rollout when people have signed off and promoted, and closes the case when the
rollout ends. Every state change is an audit entry (``case.*``), so the record is in the signed chain.

Rules (when a case opens, step order, states) are in ``core/cases.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harbourmaster.core.alerts import Severity, Verdict
from harbourmaster.core.cases import (
    ACTIVE,
    OPENING_CHANGES,
    check_step,
    opens_case,
    policy_of,
    state_after_rollout,
    state_after_step,
)
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import ConflictError, InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import AlertRow, LifecycleCaseRow, ProjectRow, PromotionRow, RolloutRow

if TYPE_CHECKING:
    from harbourmaster.services.alerts import AppliedChange
    from harbourmaster.services.platform import Platform

log = logging.getLogger("harbourmaster.cases")
AUTOMATION = "automation"  # the system actor that opens and follows cases, and the failed cases' monitor
FAILED_RULE = "lifecycle.case-failed"
DEFAULT_LEASE_SECONDS = 60.0  # how long a claim holds without renewal (the worker renews it every third of it)
LEASE_BOUNDS = (2.0, 3600.0)


class CaseInfo(BaseModel):
    id: int
    project: str
    environment: str
    state: str
    reason: str | None
    trigger: dict[str, Any]
    policy: dict[str, Any]
    steps: list[dict[str, Any]]
    version: int | None
    promotion_id: int | None
    rollout_id: int | None
    outcome: str | None
    claimed_by: str | None
    claimed_at: datetime | None
    lease_expires_at: datetime | None
    claims: int
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


def _info(row: LifecycleCaseRow) -> CaseInfo:
    return CaseInfo.model_validate(row, from_attributes=True)


def _key(project: str, environment: str) -> str:
    return f"{project}/{environment}"


class CaseService:
    """Opens, hands out, records and follows lifecycle cases."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    # -- the control plane -----------------------------------------------------------------

    def open_from_alerts(self, changes: Sequence[AppliedChange], now: datetime | None = None) -> list[CaseInfo]:
        """Open a case for each alert change that a project's automation policy names (at most one active
        case per deployment, and none within the cool-down after the last one opened)."""
        moment = now or datetime.now(UTC)
        opened: list[CaseInfo] = []
        for change in changes:
            if change.change not in OPENING_CHANGES:
                continue  # a still-firing alert's update, or a resolution: never a new case
            try:
                case = self._open_one(change, moment)
            except IntegrityError:
                case = None  # an active case of the deployment exists (maybe opened by another control plane)
            if case is not None:
                opened.append(case)
                log.warning("case %s opened for %s in %s by alert %s", case.id, case.project, case.environment,
                            change.alert_id)  # fmt: skip
        return opened

    def _open_one(self, change: AppliedChange, moment: datetime) -> CaseInfo | None:
        with self._platform.db.reader() as session:
            alert = session.get(AlertRow, change.alert_id)
            if alert is None or alert.project is None:
                return None
            project = session.scalar(select(ProjectRow).where(ProjectRow.name == alert.project))
            policy = policy_of(project.settings if project is not None else None)
            if policy is None or alert.environment is None:
                return None
            last = session.scalar(
                select(LifecycleCaseRow.created_at)
                .where(LifecycleCaseRow.project == alert.project, LifecycleCaseRow.environment == alert.environment)
                .order_by(LifecycleCaseRow.id.desc())
                .limit(1)
            )
            if not opens_case(
                policy,
                rule=alert.rule,
                change=change.change,
                environment=alert.environment,
                last_opened_at=last,
                now=moment,
            ):
                return None
            trigger = {
                "alert_id": alert.id,
                "rule": alert.rule,
                "subject": alert.subject,
                "summary": alert.summary,
                "severity": alert.severity,
                "fired_at": moment.isoformat(),
            }
            names = (alert.project, alert.environment)
        with self._platform.db.transaction() as session:
            row = LifecycleCaseRow(
                project=names[0],
                environment=names[1],
                state="open",
                trigger=trigger,
                policy=policy.as_dict(),
                steps=[],
                active_key=_key(*names),
                created_at=moment,
                updated_at=moment,
            )
            session.add(row)
            session.flush()
            self._audit(session, Actor.system(AUTOMATION), row, "case.open", None, details={"trigger": trigger})
            return _info(row)

    def follow(self, now: datetime | None = None) -> list[CaseInfo]:
        """Link production's promotion (and its rollout) to each case waiting for it, and close the case when
        the promotion was immediate or its rollout ended."""
        moment = now or datetime.now(UTC)
        changed: list[CaseInfo] = []
        with self._platform.db.reader() as session:
            ids = list(
                session.scalars(
                    select(LifecycleCaseRow.id).where(LifecycleCaseRow.state.in_(("waiting_signoff", "rolling_out")))
                )
            )
        for case_id in ids:
            try:
                info = self._follow_one(case_id, moment)
            except Exception:
                log.exception("case %s: following its promotion failed (retried at the next pass)", case_id)
                continue
            if info is not None:
                changed.append(info)
        return changed

    def _follow_one(self, case_id: int, moment: datetime) -> CaseInfo | None:
        with self._platform.db.transaction() as session:
            row = session.get(LifecycleCaseRow, case_id, with_for_update=True)
            if row is None or row.state not in ("waiting_signoff", "rolling_out") or row.version is None:
                return None
            if row.promotion_id is None:
                asked = _asked_promotion(row)
                query = (
                    select(PromotionRow)
                    .where(
                        PromotionRow.project == row.project,
                        PromotionRow.to_environment == row.environment,
                        PromotionRow.version_number == row.version,
                        PromotionRow.outcome == "promoted",
                    )
                    .order_by(PromotionRow.id)
                )
                if asked is not None:
                    query = query.where(PromotionRow.id > asked)
                promotion = session.scalars(query).first()
                if promotion is None:
                    return None
                rollout = session.scalar(select(RolloutRow).where(RolloutRow.promotion_id == promotion.id))
                before = row.state
                row.promotion_id = promotion.id
                row.rollout_id = rollout.id if rollout is not None else None
                state = state_after_rollout(rollout.state if rollout is not None else None)
                outcome = (rollout.state if rollout is not None else "promoted") if state == "done" else None
                self._move(session, row, state, moment, outcome=outcome)
                self._audit(
                    session,
                    Actor.system(AUTOMATION),
                    row,
                    "case.promoted",
                    before,
                    details={"promotion_id": promotion.id, "rollout_id": row.rollout_id, "by": promotion.actor},
                )
                return _info(row)
            if row.rollout_id is None:
                return None
            rollout = session.get(RolloutRow, row.rollout_id)
            if rollout is None or state_after_rollout(rollout.state) != "done":
                return None
            self._move(session, row, "done", moment, outcome=rollout.state, reason=rollout.reason)
            self._audit(
                session,
                Actor.system(AUTOMATION),
                row,
                "case.done",
                "rolling_out",
                details={"rollout_id": rollout.id, "outcome": rollout.state},
            )
            return _info(row)

    # -- people and workers -------------------------------------------------------------

    def list(
        self, actor: Actor, *, project: str | None = None, active: bool = False, limit: int = 100
    ) -> list[CaseInfo]:
        """Cases, newest first (``active``: only the ones not over yet)."""
        self._platform.access.require(actor, Permission.READ, target="cases")
        query = select(LifecycleCaseRow).order_by(LifecycleCaseRow.id.desc()).limit(limit)
        if project:
            query = query.where(LifecycleCaseRow.project == project)
        if active:
            query = query.where(LifecycleCaseRow.state.in_(ACTIVE))
        with self._platform.db.reader() as session:
            if project and session.scalar(select(ProjectRow.id).where(ProjectRow.name == project)) is None:
                raise NotFoundError(f"project {project!r} does not exist", "list projects with: harbourmaster projects")
            items = [_info(row) for row in session.scalars(query)]
        self._platform.access.audit_guarded_read(actor, "cases.read", "cases", (c.environment for c in items))
        return items

    def get(self, actor: Actor, case_id: int) -> CaseInfo:
        self._platform.access.require(actor, Permission.READ, target=f"case:{case_id}")
        with self._platform.db.reader() as session:
            info = _info(self._row(session, case_id))
        self._platform.access.audit_guarded_read(actor, "cases.read", f"case:{case_id}", [info.environment])
        return info

    def claim(
        self, actor: Actor, worker: str | None = None, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> CaseInfo | None:
        """Hand the oldest open case to this worker, or else the oldest running case whose lease expired (its
        worker died or hung): exactly once, two workers never get the same claim. The claim holds for
        ``lease_seconds`` unless renewed (``renew``). None when there is nothing to take. Needs ``deploy`` (and
        on a guarded environment a deploy grant there)."""
        self._platform.access.require(actor, Permission.DEPLOY, target="cases")
        lease = _lease(lease_seconds)
        name = worker or actor.name
        now = datetime.now(UTC)
        with self._platform.db.reader() as session:
            candidates = list(
                session.execute(
                    select(LifecycleCaseRow.id, LifecycleCaseRow.environment, LifecycleCaseRow.claims)
                    .where(LifecycleCaseRow.state == "open")
                    .order_by(LifecycleCaseRow.id)
                    .limit(20)
                )
            ) + list(
                session.execute(
                    select(LifecycleCaseRow.id, LifecycleCaseRow.environment, LifecycleCaseRow.claims)
                    .where(LifecycleCaseRow.state == "running", LifecycleCaseRow.lease_expires_at < now)
                    .order_by(LifecycleCaseRow.id)
                    .limit(20)
                )
            )
        for case_id, environment, claims in candidates:
            self._platform.access.require(actor, Permission.DEPLOY, environment=environment, target=f"case:{case_id}")
            moment = datetime.now(UTC)
            with self._platform.db.transaction() as session:
                before = session.execute(
                    select(
                        LifecycleCaseRow.state, LifecycleCaseRow.claimed_by, LifecycleCaseRow.lease_expires_at
                    ).where(LifecycleCaseRow.id == case_id)
                ).one()
                # The claims count fences the take: of two workers that saw the same case, one changes it.
                taken = session.execute(
                    update(LifecycleCaseRow)
                    .where(
                        LifecycleCaseRow.id == case_id,
                        LifecycleCaseRow.claims == claims,
                        (LifecycleCaseRow.state == "open")
                        | ((LifecycleCaseRow.state == "running") & (LifecycleCaseRow.lease_expires_at < moment)),
                    )
                    .values(
                        state="running",
                        claimed_by=name,
                        claimed_at=moment,
                        lease_expires_at=moment + lease,
                        claims=claims + 1,
                        updated_at=moment,
                    )
                )
                if taken.rowcount != 1:
                    continue  # another worker took it first
                row = self._row(session, case_id)
                if before.state == "open":
                    self._audit(
                        session, actor, row, "case.claim", "open", details={"worker": name, "claim": row.claims}
                    )
                else:
                    done = [item["step"] for item in row.steps if item.get("status") == "succeeded"]
                    details = {
                        "worker": name,
                        "claim": row.claims,
                        "from_worker": before.claimed_by,
                        "lease_expired_at": before.lease_expires_at.isoformat() if before.lease_expires_at else None,
                        "steps_done": done,
                    }
                    self._audit(session, actor, row, "case.reclaim", "running", details=details)
                    log.warning("case %s reclaimed by %s: the lease of %s expired", case_id, name, before.claimed_by)
                return _info(row)
        return None

    def renew(
        self, actor: Actor, case_id: int, claim: int, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> CaseInfo:
        """Extend the lease of the claim a worker holds (a heartbeat; not audited: it changes no state). A
        ConflictError when the case is no longer running under that claim (another worker reclaimed it)."""
        environment = self._environment_of(case_id)
        self._platform.access.require(actor, Permission.DEPLOY, environment=environment, target=f"case:{case_id}")
        lease = _lease(lease_seconds)
        moment = datetime.now(UTC)
        with self._platform.db.transaction() as session:
            renewed = session.execute(
                update(LifecycleCaseRow)
                .where(
                    LifecycleCaseRow.id == case_id,
                    LifecycleCaseRow.state == "running",
                    LifecycleCaseRow.claims == claim,
                )
                .values(lease_expires_at=moment + lease)
            )
            row = self._row(session, case_id)
            if renewed.rowcount != 1:
                raise _lost(row, claim)
            return _info(row)

    def record_step(
        self,
        actor: Actor,
        case_id: int,
        step: str,
        status: str,
        *,
        links: dict[str, Any] | None = None,
        error: str | None = None,
        started_at: datetime | None = None,
        claim: int | None = None,
    ) -> CaseInfo:
        """Record one step a worker ran on a case it claimed; a failed step fails the case (with ``error`` as
        its reason) and raises an alert; the approval step leaves it waiting for sign-off. ``claim``: the
        claim the worker holds; refused when the case was reclaimed since (its lease expired)."""
        environment = self._environment_of(case_id)
        self._platform.access.require(actor, Permission.DEPLOY, environment=environment, target=f"case:{case_id}")
        if status == "failed" and not error:
            raise InvalidInputError("a failed step needs its error", "say what went wrong in error")
        moment = datetime.now(UTC)
        with self._platform.db.transaction() as session:
            row = session.get(LifecycleCaseRow, case_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no case {case_id}", "see harbourmaster cases")
            if row.state != "running":
                raise ConflictError(
                    f"case {case_id} is {row.state}: only a running case takes steps",
                    "a worker claims an open case first (harbourmaster lifecycle worker)",
                )
            if claim is not None and row.claims != claim:
                raise _lost(row, claim)
            done = [item["step"] for item in row.steps if item.get("status") == "succeeded"]
            problem = check_step(step, status, done)
            if problem:
                raise InvalidInputError(problem, f"case {case_id} has: {', '.join(done) or 'no step yet'}")
            entry = {
                "step": step,
                "status": status,
                "actor": actor.name,
                "started_at": (started_at or moment).isoformat(),
                "finished_at": moment.isoformat(),
                "links": links or {},
                "error": error,
            }
            row.steps = [*row.steps, entry]
            if step == "retrain" and status == "succeeded" and (links or {}).get("version") is not None:
                row.version = int(links["version"])
            state = state_after_step(step, status)
            before = row.state
            self._move(session, row, state, moment, reason=error if state == "failed" else None)
            self._audit(session, actor, row, f"case.step.{step}", before, details={"step": entry})
            info = _info(row)
        if info.state == "failed":
            self._raise_failure(info, step, error or "")
        return info

    def close(self, actor: Actor, case_id: int, reason: str) -> CaseInfo:
        """A person closes a case that is not over (e.g. nobody will sign off, or its worker died)."""
        environment = self._environment_of(case_id)
        self._platform.access.require(actor, Permission.DEPLOY, environment=environment, target=f"case:{case_id}")
        if not reason.strip():
            raise InvalidInputError("closing a case needs a reason", 'e.g. --reason "the drift was a data bug"')
        with self._platform.db.transaction() as session:
            row = session.get(LifecycleCaseRow, case_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no case {case_id}", "see harbourmaster cases")
            if row.state not in ACTIVE:
                raise ConflictError(f"case {case_id} is {row.state} already", "only an active case can be closed")
            before = row.state
            self._move(session, row, "closed", datetime.now(UTC), reason=reason)
            self._audit(session, actor, row, "case.close", before, details={"reason": reason})
            return _info(row)

    # -- helpers --------------------------------------------------------------------------

    def _raise_failure(self, case: CaseInfo, step: str, error: str) -> None:
        verdict = Verdict(
            rule=FAILED_RULE,
            subject=f"case:{case.id}",
            firing=True,
            severity=Severity.CRITICAL,
            summary=f"lifecycle case {case.id} of {case.project} in {case.environment} failed at {step}: {error}",
            project=case.project,
            environment=case.environment,
            evidence=f"case:{case.id}",
            monitor=AUTOMATION,
        )
        try:
            self._platform.alerts.apply([verdict])
        except Exception:  # the case is failed and audited either way; the alert is the extra voice
            log.exception("case %s failed, and its alert could not be raised", case.id)

    @staticmethod
    def _move(
        session: Session,
        row: LifecycleCaseRow,
        state: str,
        moment: datetime,
        *,
        reason: str | None = None,
        outcome: str | None = None,
    ) -> None:
        row.state, row.updated_at = state, moment
        if reason is not None:
            row.reason = reason[:4000]
        if outcome is not None:
            row.outcome = outcome
        if state not in ACTIVE:
            row.active_key, row.closed_at = None, moment
        if state != "running":
            row.lease_expires_at = None  # nothing runs on it any more: no claim to renew or reclaim
        session.flush()

    def _audit(
        self,
        session: Session,
        actor: Actor,
        row: LifecycleCaseRow,
        action: str,
        before: str | None,
        *,
        details: dict[str, Any],
    ) -> None:
        self._platform.audit.record(
            session,
            actor,
            action,
            f"case:{row.id}",
            environment=row.environment,
            before={"state": before} if before else None,
            after={"state": row.state, "reason": row.reason, "version": row.version},
            details={"project": row.project, **details},
        )

    def _environment_of(self, case_id: int) -> str:
        with self._platform.db.reader() as session:
            return self._row(session, case_id).environment

    @staticmethod
    def _row(session: Session, case_id: int) -> LifecycleCaseRow:
        row = session.get(LifecycleCaseRow, case_id)
        if row is None:
            raise NotFoundError(f"no case {case_id}", "see harbourmaster cases")
        return row


def _asked_promotion(row: LifecycleCaseRow) -> int | None:
    """The id of the refused promotion the approval step opened (production's later promotion comes after)."""
    for item in row.steps:
        if item.get("step") == "approval":
            return (item.get("links") or {}).get("promotion_id")
    return None


def _lease(seconds: float) -> timedelta:
    low, high = LEASE_BOUNDS
    if not low <= seconds <= high:
        raise InvalidInputError(
            f"a lease of {seconds:g} s: give {low:g} to {high:g} seconds", "e.g. --lease 60 (renewed every 20 s)"
        )
    return timedelta(seconds=seconds)


def _lost(row: LifecycleCaseRow, claim: int) -> ConflictError:
    """The worker holding claim ``claim`` of the case no longer does."""
    if row.state != "running":
        return ConflictError(
            f"case {row.id} is {row.state}: claim {claim} no longer holds",
            "stop working on it (see harbourmaster cases)",
        )
    return ConflictError(
        f"case {row.id} was reclaimed by {row.claimed_by} (claim {row.claims}) after the lease of claim {claim} "
        "expired",
        "stop working on it: the worker holding the case now resumes it",
    )
