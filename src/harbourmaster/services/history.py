"""History: which version served an environment when, who put it there, who signed off.

Read from the deployment events and sign-offs that match their signed audit entries.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from harbourmaster.core.permissions import Permission
from harbourmaster.schemas import HistoryEntry
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import ApprovalRow, DeploymentEventRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

CHAMPION_ACTIONS = ("deploy", "promote", "rollback")


class HistoryService:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def history(
        self, actor: Actor, project: str, environment: str | None = None, at: datetime | None = None
    ) -> list[HistoryEntry]:
        """Champion changes, newest first; with ``at``, only the change in force at that time."""
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        self._platform.registry.get_project(actor, project)
        audit = self._platform.audit
        with self._platform.db.reader() as session:
            query = (
                select(DeploymentEventRow)
                .where(DeploymentEventRow.project == project, DeploymentEventRow.action.in_(CHAMPION_ACTIONS))
                .order_by(DeploymentEventRow.id.desc())
            )
            if environment:
                self._platform.environments.row(session, environment)  # a typo is named, not "never served"
                query = query.where(DeploymentEventRow.environment == environment)
            if at is not None:
                query = query.where(DeploymentEventRow.created_at <= at)
            # Only changes and sign-offs the signed audit chain vouches for: a row written
            # behind the platform's back is left out here (and named by `audit verify`).
            events = audit.confirmed(session, session.scalars(query))
            entries = []
            for event in events:
                champion = event.state.get("champion") or {}
                digest = champion.get("digest")
                approvals = [
                    row.actor
                    for row in audit.confirmed(
                        session,
                        session.scalars(
                            select(ApprovalRow)
                            .where(
                                ApprovalRow.project == project,
                                ApprovalRow.environment == event.environment,
                                ApprovalRow.digest == digest,
                                ApprovalRow.decision == "approve",
                                ApprovalRow.created_at <= event.created_at,
                            )
                            .order_by(ApprovalRow.id)
                        ),
                    )
                ]
                entries.append(
                    HistoryEntry(
                        at=event.created_at,
                        environment=event.environment,
                        action=event.action,
                        version=event.champion,
                        digest=digest,
                        actor=event.actor,
                        approved_by=list(dict.fromkeys(approvals)),
                        revision=event.revision,
                    )
                )
        self._platform.access.audit_guarded_read(
            actor, "history.read", project, (entry.environment for entry in entries)
        )
        if at is not None:
            seen: set[str] = set()
            in_force = []
            for entry in entries:
                if entry.environment not in seen:
                    seen.add(entry.environment)
                    in_force.append(entry)
            return in_force
        return entries
