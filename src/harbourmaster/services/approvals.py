"""Sign-offs: approve or reject one bundle digest for one environment."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from harbourmaster.core.duties import ApproverStanding, joined_after, standing_of
from harbourmaster.core.gates import ApprovalRecord, ApprovalsGate, CandidateVersion, GateContext
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import ConflictError, PermissionDeniedError
from harbourmaster.schemas import ApprovalInfo, PendingApproval, VersionDetail
from harbourmaster.services.actors import Actor
from harbourmaster.services.registry import VersionRef
from harbourmaster.store.tables import ApprovalRow, AuditEventRow, UserRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

DECISIONS = ("approve", "reject")


def approval_info(row: ApprovalRow) -> ApprovalInfo:
    return ApprovalInfo(
        id=row.id,
        project=row.project,
        version=row.version_number,
        digest=row.digest,
        environment=row.environment,
        decision=row.decision,
        actor=row.actor,
        comment=row.comment,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def candidate_of(detail: VersionDetail) -> CandidateVersion:
    return CandidateVersion(
        project=detail.project,
        number=detail.number,
        digest=detail.digest,
        created_by=detail.created_by,
        metrics=detail.metrics,
        input_schema=detail.input_schema,
        output_schema=detail.output_schema,
    )


def approval_record(row: ApprovalRow, approver: ApproverStanding, registered_at: datetime) -> ApprovalRecord:
    """A sign-off as the gate sees it: with the roles its approver still holds, and whether they came late."""
    standing, roles = standing_of(approver, frozenset(row.actor_roles))
    return ApprovalRecord(
        actor=row.actor,
        roles=roles,
        decision=row.decision,
        digest=row.digest,
        created_at=row.created_at,
        expires_at=row.expires_at,
        comment=row.comment,
        standing=standing,
        joined_late=joined_after(approver, registered_at),
    )


def author_may_not_sign(actor: str, author: str) -> bool:
    """The four-eyes rule: nobody signs off (or rejects) a version they made."""
    return actor == author


def _standing(user: UserRow | None) -> ApproverStanding:
    if user is None:
        return ApproverStanding(False, False, frozenset(), None, None)
    return ApproverStanding(True, user.disabled, frozenset(user.roles), user.created_at, user.roles_updated_at)


class ApprovalService:
    """Records decisions; the approvals gate decides whether they are enough."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def decide(
        self,
        actor: Actor,
        project: str,
        version: VersionRef,
        environment: str,
        decision: str,
        comment: str = "",
    ) -> ApprovalInfo:
        """Approve or reject a version for an environment (never your own version)."""
        if decision not in DECISIONS:
            raise ConflictError(f"unknown decision {decision!r}", "approve or reject")
        self._platform.access.require(actor, Permission.APPROVE, environment=environment, target=f"{project}:{version}")
        detail = self._platform.registry.get_version(actor, project, version)
        env = self._platform.environments.get(environment)
        if author_may_not_sign(actor.name, detail.created_by):
            self._platform.audit.record_alone(
                actor,
                f"version.{decision}",
                f"{project}:v{detail.number}",
                outcome="denied",
                environment=environment,
                details={"reason": "author may not sign off own version"},
            )
            raise PermissionDeniedError(
                f"{actor.name} is the author of {project} v{detail.number} and may not {decision} it",
                "ask another approver to sign off",
            )
        hours = env.config.approvals.expires_after_hours
        now = datetime.now(UTC)
        with self._platform.db.transaction() as session:
            row = ApprovalRow(
                project=project,
                version_number=detail.number,
                digest=detail.digest,
                environment=environment,
                decision=decision,
                actor=actor.name,
                actor_roles=sorted(actor.roles),
                comment=comment,
                created_at=now,
                expires_at=now + timedelta(hours=hours) if hours else None,
            )
            session.add(row)
            session.flush()
            row.audit_seq = self._platform.audit.record(
                session,
                actor,
                f"version.{decision}",
                f"{project}:v{detail.number}",
                environment=environment,
                after={
                    "digest": detail.digest,
                    "comment": comment,
                    "expires_at": row.expires_at.isoformat() if row.expires_at else None,
                },
            )
            return approval_info(row)

    def why_not(self, actor: Actor, author: str, environment: str) -> str | None:
        """Why ``actor`` may not approve or reject a version by ``author`` for ``environment`` (None: they may).

        The same rules as ``decide``, asked without acting (nothing is audited): faces use it to say why a
        button is missing."""
        if not self._platform.access.allows(actor, Permission.APPROVE, environment):
            return f"{actor.name} has no approve permission ({', '.join(sorted(actor.roles)) or 'no role'})"
        if author_may_not_sign(actor.name, author):
            return f"{actor.name} is the author of this version and may not sign it off"
        return None

    def for_version(self, project: str, digest: str, environment: str) -> list[ApprovalRow]:
        """The sign-offs of a digest for an environment that the audit chain vouches for (what gates count)."""
        with self._platform.db.reader() as session:
            return self._platform.audit.confirmed(
                session,
                session.scalars(
                    select(ApprovalRow)
                    .where(
                        ApprovalRow.project == project,
                        ApprovalRow.digest == digest,
                        ApprovalRow.environment == environment,
                    )
                    .order_by(ApprovalRow.id)
                ),
            )

    def records(self, detail: VersionDetail, environment: str) -> tuple[ApprovalRecord, ...]:
        """The version's sign-offs for ``environment``, judged against their approvers' accounts today."""
        rows = self.for_version(detail.project, detail.digest, environment)
        rows += self._rejections_without_rows(detail, environment, {row.audit_seq for row in rows})
        names = {row.actor for row in rows}
        with self._platform.db.reader() as session:
            users = {user.name: user for user in session.scalars(select(UserRow).where(UserRow.name.in_(names)))}
            for row in rows:
                if row.id is None and row.actor in users:  # rebuilt from the chain: the roles its approver holds
                    row.actor_roles = sorted(users[row.actor].roles)
            return tuple(approval_record(row, _standing(users.get(row.actor)), detail.created_at) for row in rows)

    def _rejections_without_rows(self, detail: VersionDetail, environment: str, linked: set) -> list[ApprovalRow]:
        """Signed rejections of this digest whose row was deleted behind the platform's back: they still block."""
        with self._platform.db.reader() as session:
            entries = session.scalars(
                select(AuditEventRow).where(
                    AuditEventRow.action == "version.reject",
                    AuditEventRow.outcome == "allowed",
                    AuditEventRow.environment == environment,
                    AuditEventRow.target == f"{detail.project}:v{detail.number}",
                )
            ).all()
            rebuilt = [
                ApprovalRow(
                    project=detail.project,
                    version_number=detail.number,
                    digest=detail.digest,
                    environment=environment,
                    decision="reject",
                    actor=entry.actor,
                    actor_roles=[],
                    comment=(entry.after or {}).get("comment", ""),
                    created_at=datetime.fromisoformat(entry.at),
                    expires_at=_parse_time((entry.after or {}).get("expires_at")),
                    audit_seq=entry.seq,
                )
                for entry in entries
                if entry.seq not in linked and (entry.after or {}).get("digest") == detail.digest
            ]
            return self._platform.audit.confirmed(session, rebuilt)  # only what authentic entries say

    def list(self, actor: Actor, project: str | None = None) -> list[ApprovalInfo]:
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            query = select(ApprovalRow).order_by(ApprovalRow.id.desc())
            if project:
                self._platform.registry.project_row(session, project)  # a typo is named, not an empty list
                query = query.where(ApprovalRow.project == project)
            approvals = [approval_info(row) for row in session.scalars(query)]
        self._platform.access.audit_guarded_read(
            actor, "approval.list", project or "*", (a.environment for a in approvals)
        )
        return approvals

    def pending(self, actor: Actor, project: str | None = None) -> list[PendingApproval]:
        """Versions champion in one environment whose next environment needs sign-offs they lack."""
        self._platform.access.require(actor, Permission.READ)
        environments = self._platform.environments.list()
        waiting: list[PendingApproval] = []
        now = datetime.now(UTC)
        for previous, target in itertools.pairwise(environments):
            if not target.config.approvals.required:
                continue
            for state in self._platform.deployments.list(
                actor, environment=previous.name, project=project, audit_read=False
            ):
                candidates = [p for p in (state.champion, state.challenger.version if state.challenger else None) if p]
                for pointer in candidates:
                    target_state = next(
                        iter(
                            self._platform.deployments.list(
                                actor, environment=target.name, project=state.project, audit_read=False
                            )
                        ),
                        None,
                    )
                    if target_state and target_state.champion and target_state.champion.digest == pointer.digest:
                        continue
                    detail = self._platform.registry.get_version(actor, state.project, pointer.number)
                    records = self.records(detail, target.name)
                    verdict = ApprovalsGate().evaluate(
                        GateContext(
                            candidate=candidate_of(detail),
                            environment=target.name,
                            approval_policy=target.config.approvals,
                            champion=None,
                            approvals=records,
                            now=now,
                        )
                    )
                    waiting.append(
                        PendingApproval(
                            project=state.project,
                            version=pointer.number,
                            digest=pointer.digest,
                            environment=target.name,
                            author=detail.created_by,
                            approvals=[
                                f"{record.actor} ({record.decision}"
                                + (f", {record.standing}" if record.standing != "ok" else "")
                                + (", joined late" if record.joined_late else "")
                                + ")"
                                for record in records
                                if record.expires_at is None or record.expires_at > now
                            ],
                            missing=None if verdict.passed else verdict.reason,
                        )
                    )
        self._platform.access.audit_guarded_read(
            actor, "approval.pending", project or "*", (item.environment for item in waiting)
        )
        return waiting


def _parse_time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
