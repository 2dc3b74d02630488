"""Separation of duties: sensitive administration waits for a second admin; token lifetime limits per role.

A sensitive step (``core.duties``) taken by a person is either refused (mode ``not-for-self``,
when it benefits them) or recorded as a pending request (mode ``two-admins``) that another
enabled admin confirms; only then does the identity service carry it out. Every request,
confirmation, rejection and refusal is audited. The platform's own processes (``system``)
and the owner of an embedded sandbox (``local-owner``, break-glass) are not people asking
for power: their steps run at once, audited as usual.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from harbourmaster.core.duties import (
    DEFAULT_DUTY_MODE,
    REQUEST_LIFETIME,
    SensitiveStep,
    check_mode,
    mode_step,
    needs_second_admin,
    refused_for_self,
)
from harbourmaster.core.environments import Environment
from harbourmaster.core.permissions import ROLE_NAMES, Permission
from harbourmaster.errors import (
    ConfirmationRequiredError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from harbourmaster.services.actors import Actor
from harbourmaster.services.dataplane import IssuedReplicaCredential
from harbourmaster.services.identity import UserInfo
from harbourmaster.services.sandbox import EMBEDDED_KINDS
from harbourmaster.store.tables import DutyRequestRow, PlatformSettingRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

MODE_KEY = "duties.mode"
TOKEN_LIMIT_PREFIX = "tokens.max_lifetime."


class DutyRequestInfo(BaseModel):
    id: int
    action: str
    target: str
    summary: str
    status: str  # pending | confirmed | rejected | expired
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None


class DutySettings(BaseModel):
    mode: str
    token_max_lifetime_seconds: dict[str, float]


class MintedToken(BaseModel):
    """A token created on confirmation: its secret appears only in this answer."""

    id: int
    user: str
    name: str
    token: str
    expires_at: datetime | None


class DutyDecision(BaseModel):
    """A decided request, and what carrying it out produced."""

    request: DutyRequestInfo
    user: UserInfo | None = None
    token: MintedToken | None = None
    settings: DutySettings | None = None
    environment: Environment | None = None
    credential: IssuedReplicaCredential | None = None  # ``secret`` shown this once, to the confirming admin


def _info(row: DutyRequestRow, now: datetime) -> DutyRequestInfo:
    status = row.status
    if status == "pending" and row.expires_at <= now:
        status = "expired"
    return DutyRequestInfo(
        id=row.id,
        action=row.action,
        target=row.target,
        summary=str(row.payload.get("summary", row.action)),
        status=status,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        expires_at=row.expires_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
    )


class DutyService:
    """Pending sensitive steps, their confirmation, and the governance settings they obey."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    # -- settings ---------------------------------------------------------------

    def settings(self, session: Session | None = None) -> DutySettings:
        def read(s: Session) -> DutySettings:
            rows = {row.key: row.value for row in s.scalars(select(PlatformSettingRow))}
            limits = {
                key.removeprefix(TOKEN_LIMIT_PREFIX): float(value)
                for key, value in rows.items()
                if key.startswith(TOKEN_LIMIT_PREFIX) and value is not None
            }
            return DutySettings(mode=str(rows.get(MODE_KEY) or DEFAULT_DUTY_MODE), token_max_lifetime_seconds=limits)

        if session is not None:
            return read(session)
        with self._platform.db.reader() as own:
            return read(own)

    def view(self, actor: Actor) -> DutySettings:
        self._platform.access.require(actor, Permission.ADMINISTER, target="separation of duties")
        return self.settings()

    def set_token_limit(self, actor: Actor, role: str, seconds: float | None) -> DutySettings:
        """The longest a token of a user holding ``role`` may live (None: no limit)."""
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"token policy:{role}")
        if role not in ROLE_NAMES:
            raise InvalidInputError(f"unknown role {role!r}", f"roles are: {', '.join(ROLE_NAMES)}")
        if seconds is not None and seconds <= 0:
            raise InvalidInputError("a maximum token lifetime must be positive", "e.g. --max-lifetime 30d")
        with self._platform.db.transaction() as session:
            before = self.settings(session).token_max_lifetime_seconds.get(role)
            self._put(session, actor, TOKEN_LIMIT_PREFIX + role, seconds)
            self._platform.audit.record(
                session,
                actor,
                "tokens.policy",
                f"role:{role}",
                before={"max_lifetime_seconds": before},
                after={"max_lifetime_seconds": seconds},
            )
            return self.settings(session)

    def set_mode(self, actor: Actor, mode: str) -> DutySettings:
        """Switch between ``two-admins`` and ``not-for-self`` (itself a step a second admin confirms)."""
        self._platform.access.require(actor, Permission.ADMINISTER, target="separation of duties")
        mode = check_mode(mode)
        current = self.settings().mode
        step = mode_step(current, mode)
        if step is None:
            return self.settings()
        self.guard(actor, step, {"mode": mode})
        return self.apply_mode(actor, mode)

    def apply_mode(self, actor: Actor, mode: str) -> DutySettings:
        with self._platform.db.transaction() as session:
            return self.apply_mode_in(session, actor, mode)

    def apply_mode_in(self, session: Session, actor: Actor, mode: str, request_id: int | None = None) -> DutySettings:
        before = self.settings(session).mode
        self._put(session, actor, MODE_KEY, mode)
        self._platform.audit.record(
            session,
            actor,
            "duties.mode",
            "platform",
            before={"mode": before},
            after={"mode": mode},
            details={"request": request_id} if request_id else None,
        )
        return self.settings(session)

    @staticmethod
    def _put(session: Session, actor: Actor, key: str, value: Any) -> None:
        row = session.get(PlatformSettingRow, key)
        now = datetime.now(UTC)
        if row is None:
            session.add(PlatformSettingRow(key=key, value=value, updated_by=actor.name, updated_at=now))
        else:
            row.value, row.updated_by, row.updated_at = value, actor.name, now
        session.flush()

    # -- the rule ---------------------------------------------------------------

    def guard(self, actor: Actor, step: SensitiveStep, payload: dict[str, Any]) -> None:
        """Let ``step`` go ahead, or refuse it, or park it for a second admin (raising either way)."""
        if actor.kind in ("system", *EMBEDDED_KINDS):
            return
        mode = self.settings().mode
        target = step.target if step.target == "platform" or ":" in step.target else f"user:{step.target}"
        if refused_for_self(step, mode):
            self._platform.audit.record_alone(
                actor,
                step.action,
                target,
                outcome="denied",
                details={"reason": "separation of duties: not for oneself", "step": step.summary},
            )
            raise PermissionDeniedError(
                f"{actor.name} may not {step.summary}: an admin cannot give themselves this power",
                "ask another admin to do it",
            )
        if not needs_second_admin(step, mode):
            return
        now = datetime.now(UTC)
        with self._platform.db.transaction() as session:
            row = DutyRequestRow(
                action=step.action,
                target=step.target,
                payload={**payload, "summary": step.summary},
                status="pending",
                requested_by=actor.name,
                requested_at=now,
                expires_at=now + REQUEST_LIFETIME,
            )
            session.add(row)
            session.flush()
            self._platform.audit.record(
                session,
                actor,
                "duty.request",
                target,
                outcome="pending",
                after={"request": row.id, "action": step.action, "step": step.summary},
            )
            request_id = row.id
        raise ConfirmationRequiredError(
            f"to {step.summary} needs a second admin: request {request_id} is pending (it expires in 24 h)",
            f"another admin confirms it: harbourmaster users confirm {request_id}",
        )

    # -- requests ---------------------------------------------------------------

    def list_requests(self, actor: Actor, status: str | None = "pending") -> list[DutyRequestInfo]:
        self._platform.access.require(actor, Permission.ADMINISTER, target="duty requests")
        now = datetime.now(UTC)
        with self._platform.db.reader() as session:
            rows = session.scalars(select(DutyRequestRow).order_by(DutyRequestRow.id.desc()).limit(500))
            infos = [_info(row, now) for row in rows]
        return [info for info in infos if status is None or info.status == status]

    def decide(self, actor: Actor, request_id: int, confirm: bool) -> DutyDecision:
        """Confirm (and carry out) or reject a pending request; never one's own, never for oneself."""
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"duty request:{request_id}")
        now = datetime.now(UTC)
        with self._platform.db.reader() as session:
            row = session.get(DutyRequestRow, request_id)
            if row is None:
                raise NotFoundError(f"no duty request {request_id}", "list them: harbourmaster users requests")
            info = _info(row, now)
            payload = dict(row.payload)
        verb = "confirm" if confirm else "reject"
        if info.status != "pending":
            self._platform.audit.record_alone(
                actor,
                f"duty.{verb}",
                f"duty request:{request_id}",
                outcome="denied",
                details={"reason": f"request {request_id} is {info.status}"},
            )
            raise ConflictError(f"request {request_id} is {info.status}", "a new request must be made")
        problem = None
        if actor.kind == "user" and info.requested_by == actor.name:
            problem = f"{actor.name} made request {request_id} and may not {verb} it"
        elif actor.kind == "user" and info.target == actor.name:
            problem = f"request {request_id} is for {actor.name}, who may not {verb} it"
        if problem:
            self._platform.audit.record_alone(
                actor,
                f"duty.{verb}",
                f"duty request:{request_id}",
                outcome="denied",
                details={"reason": problem},
            )
            raise PermissionDeniedError(problem, "a second admin, neither the requester nor its subject, decides")
        status = "confirmed" if confirm else "rejected"
        with self._platform.db.transaction() as session:
            # Claim the request first: of two admins deciding at once, exactly one gets it (the other waits
            # for the row lock, then finds it decided), so it is carried out exactly once.
            claimed = session.execute(
                update(DutyRequestRow)
                .where(
                    DutyRequestRow.id == request_id,
                    DutyRequestRow.status == "pending",
                    DutyRequestRow.expires_at > now,
                )
                .values(status=status, decided_by=actor.name, decided_at=now)
            ).rowcount
            if claimed:
                row = session.get_one(DutyRequestRow, request_id, populate_existing=True)
                # Carried out in the same transaction that closes the request: it happens exactly once.
                result = self._platform.identity.carry_out(session, actor, info, payload) if confirm else {}
                self._platform.audit.record(
                    session,
                    actor,
                    f"duty.{verb}",
                    f"duty request:{request_id}",
                    details={"action": info.action, "step": info.summary, "requested_by": info.requested_by},
                )
                issued = result.get("token")
                token = (
                    MintedToken(
                        id=issued.id,
                        user=issued.user,
                        name=issued.name,
                        token=issued.secret,
                        expires_at=issued.expires_at,
                    )
                    if issued
                    else None
                )
                return DutyDecision(
                    request=_info(row, now),
                    user=result.get("user"),
                    token=token,
                    settings=result.get("settings"),
                    environment=result.get("environment"),
                    credential=result.get("credential"),
                )

        self._platform.audit.record_alone(
            actor,
            f"duty.{verb}",
            f"duty request:{request_id}",
            outcome="denied",
            details={"reason": f"request {request_id} was decided meanwhile"},
        )
        raise ConflictError(
            f"request {request_id} was decided meanwhile", "list them again: harbourmaster users requests"
        )
