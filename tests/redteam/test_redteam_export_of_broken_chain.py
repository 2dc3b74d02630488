"""Attack: hand a regulator an export of a chain the control plane knows is broken.

Found by the red-team pass: after a deployment-event row was deleted in the database, ``audit
verify`` named it, and the export's signed trailer said ``chain_verified: false``, yet
``audit verify-export --public-key`` checked only the exported entries and said intact. The offline
check now fails with the problem the control plane recorded in the trailer.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from tests.governance.helpers import PROJECT, actor, create_users, live_server, train

from harbourmaster.core.audit_chain import parse_public_key
from harbourmaster.services.audit import verify_export
from harbourmaster.services.platform import Platform


def test_an_export_of_a_broken_chain_does_not_verify_offline(platform: Platform, demo_project: Path) -> None:
    tokens = create_users(platform)
    number = train(platform, demo_project)
    platform.deployments.deploy(actor(platform, "dana"), PROJECT, number, "dev")
    with platform.db.engine.begin() as connection:
        assert connection.execute(text("DELETE FROM deployment_events")).rowcount == 1
    with live_server(platform) as live:
        live.tokens = tokens
        with live.http("audrey") as audrey:
            assert audrey.get("/api/v1/audit/verify").json()["ok"] is False
            exported = audrey.get("/api/v1/audit/export", params={"format": "jsonl"})
            public_key = parse_public_key(audrey.get("/api/v1/audit/public-key").content)
    assert exported.status_code == 200, exported.text
    report = verify_export(exported.text, public_key)
    assert report.ok is False
    assert "deployment_events" in report.problem
