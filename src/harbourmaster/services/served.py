"""Which versions have served in an environment: a replica loaded the version and answered with it.

A replica counts the requests each version answered as champion and reports the counts in its
heartbeats. The first report of a version in an environment becomes a ``served`` deployment event,
recorded with its audit entry in the same transaction; the order gate counts only such events that
the audit chain vouches for (a deployment alone, with no replica answering, is not serving).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import DeploymentEventRow, DeploymentRow, ProjectRow, VersionRow

if TYPE_CHECKING:
    from harbourmaster.services.audit import AuditService
    from harbourmaster.services.platform import Platform

SERVED = "served"


def served_events(session: Session, project: str, environment: str, number: int) -> list[DeploymentEventRow]:
    """The ``served`` events of one version in one environment (not yet checked against the audit chain)."""
    return list(
        session.scalars(
            select(DeploymentEventRow).where(
                DeploymentEventRow.project == project,
                DeploymentEventRow.environment == environment,
                DeploymentEventRow.action == SERVED,
                DeploymentEventRow.champion == number,
            )
        )
    )


def has_served(session: Session, project: str, environment: str, number: int, *, audit: AuditService) -> bool:
    """Whether a replica of ``environment`` loaded the version and answered with it as champion (as the
    audit chain vouches)."""
    return bool(audit.confirmed(session, served_events(session, project, environment, number)))


def record_served(
    platform: Platform,
    session: Session,
    actor: Actor,
    project: str,
    environment: str,
    number: int,
    replica_id: str,
    answered: int,
) -> bool:
    """Record that ``number`` answered in ``environment`` (once); False when it cannot count: no such
    deployment, or the version was never its champion."""
    deployment = session.scalar(
        select(DeploymentRow)
        .join(ProjectRow, ProjectRow.id == DeploymentRow.project_id)
        .where(ProjectRow.name == project, DeploymentRow.environment == environment)
    )
    if deployment is None:
        return False
    if platform.audit.confirmed(session, served_events(session, project, environment, number)):
        return True  # already recorded (a row the audit chain does not vouch for is no record)
    was_champion = session.scalar(
        select(DeploymentEventRow.id)
        .where(
            DeploymentEventRow.deployment_id == deployment.id,
            DeploymentEventRow.champion == number,
            DeploymentEventRow.action != SERVED,
        )
        .limit(1)
    )
    version = session.scalar(
        select(VersionRow).where(VersionRow.project_id == deployment.project_id, VersionRow.number == number)
    )
    if was_champion is None or version is None:
        return False
    state = {"champion": {"number": number, "digest": version.digest}, "revision": deployment.revision}
    event = DeploymentEventRow(
        deployment_id=deployment.id,
        project=project,
        environment=environment,
        revision=deployment.revision,
        action=SERVED,
        champion=number,
        state=state,
        details={"replica": replica_id, "answered": answered},
        actor=actor.name,
    )
    session.add(event)
    session.flush()
    event.audit_seq = platform.audit.record(
        session,
        actor,
        f"deployment.{SERVED}",
        project,
        environment=environment,
        after=state,
        details={"replica": replica_id, "answered": answered, "version": number},
    )
    return True
