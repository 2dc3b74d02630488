"""The order gate counts a version as having served only if a replica loaded it and answered with it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import DeploymentEventRow
from served import serve_champion

PROJECT = "breast-cancer"
OWNER = Actor.local_owner()


def served_rows(platform: Platform) -> list[DeploymentEventRow]:
    with platform.db.reader() as session:
        return list(session.scalars(select(DeploymentEventRow).where(DeploymentEventRow.action == "served")))


def order_gate(platform: Platform, number: int) -> tuple[bool, str, str | None]:
    [verdict] = [v for v in platform.promotions.check(OWNER, PROJECT, number, "test") if v.gate == "order"]
    return verdict.passed, verdict.reason, verdict.fix


def test_a_deployed_version_has_served_only_once_a_replica_answered_with_it(
    platform: Platform, demo_project: Path
) -> None:
    number = platform.training.train(OWNER, demo_project).version.number
    platform.deployments.deploy(OWNER, PROJECT, number, "dev")
    passed, reason, fix = order_gate(platform, number)
    assert not passed and reason == "v1 was deployed in dev, but no replica there has answered with it yet"
    assert "harbourmaster serve --env dev" in (fix or "")

    # A row claiming it served, written behind the platform's back (no audit entry), does not count.
    with platform.db.reader() as session:
        deployment_id = session.scalars(select(DeploymentEventRow.deployment_id)).first()
    with platform.db.transaction() as session:
        session.add(
            DeploymentEventRow(
                deployment_id=deployment_id,
                project=PROJECT,
                environment="dev",
                revision=1,
                action="served",
                champion=number,
                state={},
                details={},
                actor="forger",
            )
        )
    assert not order_gate(platform, number)[0]

    assert serve_champion(platform, PROJECT, "dev") == number  # a real replica loads it and answers
    genuine = [row for row in served_rows(platform) if row.actor != "forger"]
    assert len(genuine) == 1 and genuine[0].details["answered"] >= 1 and genuine[0].audit_seq is not None
    assert order_gate(platform, number) == (True, "v1 has served in dev (a replica answered with it)", None)
    info = platform.promotions.promote(OWNER, PROJECT, number, "test")
    assert info.outcome == "promoted"

    # Answering again records nothing new: one served event per version and environment.
    serve_champion(platform, PROJECT, "dev")
    assert len([row for row in served_rows(platform) if row.actor != "forger"]) == 1
    [prod_order] = [
        v for v in platform.promotions.check(Actor.system("tests"), PROJECT, number, "prod") if v.gate == "order"
    ]
    assert not prod_order.passed
    assert prod_order.reason == "v1 was deployed in test, but no replica there has answered with it yet"
