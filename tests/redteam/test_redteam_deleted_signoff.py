"""Attack: with owner rights on the database, delete a rejection from the sign-off table.

Found by the red-team pass: a valid rejection blocks prod, but the approvals gate reads the
``approvals`` table, and ``audit verify`` checked only that each row there matches its signed
entry, never that each signed sign-off still has its row. Deleting the rejection row let the
version into prod, and ``audit verify`` said "intact". Now verify names every signed sign-off,
promotion and deployment event whose row is gone, and the approvals gate refuses while a
signed sign-off of the version is missing from the table.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from tests.governance.helpers import PROJECT, SYSTEM, actor, create_users, live_server, train

from harbourmaster.schemas import GateResult
from harbourmaster.services.platform import Platform
from served import serve_champion


def _approvals_gate(platform: Platform, number: int) -> GateResult:
    verdicts = platform.promotions.check(actor(platform, "olga"), PROJECT, number, "prod")
    [gate] = [verdict for verdict in verdicts if verdict.gate == "approvals"]
    return gate


def test_a_rejection_deleted_behind_the_platforms_back_still_blocks_and_is_named(
    platform: Platform, demo_project: Path
) -> None:
    tokens = create_users(platform)
    platform.identity.create_user(SYSTEM, "ann", ["approver"])
    number = train(platform, demo_project)
    dana = actor(platform, "dana")
    platform.deployments.deploy(dana, PROJECT, number, "dev")
    serve_champion(platform, PROJECT, "dev")
    platform.promotions.promote(dana, PROJECT, number, "test")
    serve_champion(platform, PROJECT, "test")
    for name, decision in (("abe", "approve"), ("amy", "approve"), ("ann", "reject")):
        platform.approvals.decide(actor(platform, name), PROJECT, number, "prod", decision, f"{decision} by {name}")
    assert not _approvals_gate(platform, number).passed

    with platform.db.engine.begin() as connection:  # the approvals table has no append-only trigger to drop
        deleted = connection.execute(text("DELETE FROM approvals WHERE decision = 'reject'"))
        assert deleted.rowcount == 1
        # And who deployed to dev disappears from history.
        deleted = connection.execute(text("DELETE FROM deployment_events WHERE environment = 'dev'"))
        assert deleted.rowcount == 2  # the deploy, and the replica's first answer with it

    with live_server(platform) as live:
        live.tokens = tokens
        with live.http("olga") as olga, live.http("audrey") as audrey:
            promoted = olga.post("/api/v1/promotions", json={"project": PROJECT, "version": number, "to": "prod"})
            assert promoted.status_code == 409, promoted.text
            report = audrey.get("/api/v1/audit/verify").json()
    assert not _approvals_gate(platform, number).passed
    assert report["ok"] is False
    problems = report["problems"]
    assert any("version.reject by ann" in problem and "no row in approvals" in problem for problem in problems)
    assert any(
        "deployment.deploy by dana" in problem and "no row in deployment_events" in problem for problem in problems
    )
