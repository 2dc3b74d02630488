"""Retraining in prod through a live control plane, from the CLI: the prod operator may (audited prod
reads, a run of kind retrain, evidence for the gates), a viewer is refused (audited) and nothing is registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from cli_inprocess import invoke
from governance.helpers import actor, create_users, live_server
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow
from served import serve_champion

from .projects import PROJECT, frame, log_traffic, write_project


def _to_prod(platform: Platform, folder: Path) -> int:
    """Train as the data scientist and promote through dev and test to prod, as the platform requires."""
    dana = actor(platform, "dana")
    number = platform.training.train(dana, folder).version.number
    platform.deployments.deploy(dana, PROJECT, number, "dev")
    serve_champion(platform, PROJECT, "dev")
    platform.promotions.promote(dana, PROJECT, number, "test")
    serve_champion(platform, PROJECT, "test")
    for approver in ("abe", "amy"):
        platform.approvals.decide(actor(platform, approver), PROJECT, number, "prod", "approve")
    platform.promotions.promote(actor(platform, "olga"), PROJECT, number, "prod")
    return number


def _events(platform: Platform, action: str) -> list[AuditEventRow]:
    with platform.db.reader() as session:
        return list(session.scalars(select(AuditEventRow).where(AuditEventRow.action == action)))


@pytest.mark.slow
def test_prod_operator_retrains_and_evaluates_viewer_is_refused(
    sqlite_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARBOURMASTER_HOME", str(tmp_path / "cli-home"))  # the CLI's cache, not the store
    platform = Platform(sqlite_settings)
    try:
        tokens = create_users(platform)
        champion = _to_prod(platform, write_project(tmp_path / "shifty"))
        log_traffic(platform, frame(300, seed=11, shifted=True), version=champion, environment="prod")
        with live_server(platform) as live:
            common = ["--env", "prod", "--url", live.url]
            refused = invoke(["retrain", PROJECT, *common, "--token", tokens["vera"]])
            assert refused.code == 1 and refused.crash is None
            assert "vera" in refused.err and "register" in refused.err, refused.err
            assert [v.number for v in platform.registry.list_versions(actor(platform, "root"), PROJECT)] == [champion]

            done = invoke(["retrain", PROJECT, *common, "--token", tokens["olga"], "--json"])
            assert done.code == 0, done.err or done.crash
            result = json.loads(done.out)
            record = result["version"]["lineage"]["retrain"]
            assert record["run_by"] == "olga" and record["environment"] == "prod"
            assert record["champion"]["version"] == champion and record["rows"]["production_labelled"] == 300
            assert result["run"]["kind"] == "retrain" and result["run"]["environment"] == "prod"
            number = result["version"]["number"]

            shown = invoke(["evaluate", PROJECT, str(number), *common, "--token", tokens["olga"]])
            assert shown.code == 0, shown.err or shown.crash
            assert "beats champion" in shown.out and "McNemar" in shown.out, shown.out
            assert shown.out.count("PASSED") == 2 and "fixes the drift of x1" in shown.out

            viewer_eval = invoke(["evaluate", PROJECT, str(number), *common, "--token", tokens["vera"]])
            assert viewer_eval.code == 0, viewer_eval.err  # reading prod and judging is a read: audited, allowed
    finally:
        platform.close()
    platform = Platform(sqlite_settings)
    try:
        denied = [e for e in _events(platform, "denied.register") if e.actor == "vera"]
        assert denied and denied[0].target == PROJECT
        reads = [(e.actor, e.environment) for e in _events(platform, "retrain.read")]
        assert reads == [("olga", "prod")]
        assert ("olga", "prod") in [(e.actor, e.environment) for e in _events(platform, "evaluate.read")]
        assert [e.actor for e in _events(platform, "run.retrain")] == ["olga"]
        assert platform.audit.verify(actor(platform, "root")).ok
    finally:
        platform.close()
