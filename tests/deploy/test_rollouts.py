"""Canary rollouts on a real replica under continuous load: a clean canary completes with no failed request
and no replica restart; an error fault and a latency fault in the challenger roll it back automatically,
each with an alert that says why; a rollback stops a rollout at once."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from tests.deploy.rollout_support import (
    PROD_CONFIG,
    SYSTEM,
    Load,
    audit_actions,
    run_until_over,
    start_canary,
    wait_for,
)
from tests.serving.projects import MOODY, RAISE, SLOW

from harbourmaster.store.tables import DeploymentEventRow

pytestmark = pytest.mark.slow


def test_a_canary_under_load_completes_with_no_failed_request_and_no_restart(moody_prod) -> None:
    platform, versions, replica = moody_prod
    replica_id = replica.replica.id
    load = Load([replica.url], max_requests=3000, max_seconds=45).start()
    try:
        wait_for(lambda: load.sent > 50, 20, "traffic")
        rollout_id = start_canary(platform, versions["bad"], steps="20,60,100", bake=1.5, min_requests=30)
        # The console's overview and deployment page show the rollout while it runs.
        [cell] = [c for c in platform.overview.overview(SYSTEM).cells if (c.project, c.environment) == (MOODY, "prod")]
        assert cell.rollout is not None and cell.rollout.startswith("canary step 1 of 3 (20%)"), cell.rollout
        progress = platform.deployment_status.status(SYSTEM, MOODY, "prod", outcomes=False).rollout
        assert (progress.source, progress.steps) == (f"rollout {rollout_id}", [20.0, 60.0, 100.0]), progress
        assert run_until_over(platform, rollout_id, 40) == "completed", platform.rollouts.get(SYSTEM, rollout_id).reason
    finally:
        load.stop()
    info = platform.rollouts.get(SYSTEM, rollout_id)
    assert load.failures == [] and set(load.statuses) == {200}, load.failures[:3]
    assert load.paths["challenger"] > 0 and load.paths["champion"] > 0
    state = platform.deployments.get(SYSTEM, MOODY, "prod")
    assert state.champion.number == versions["bad"] and state.challenger is None
    assert [e["kind"] for e in info.events] == ["started", "advanced", "advanced", "completed"]
    assert replica.replica.id == replica_id and replica._thread.is_alive()  # the same replica all along
    actions = audit_actions(platform)
    done = actions.index("rollout.complete")
    assert actions.count("rollout.step") == 2 and actions[done - 1] == "deployment.promote"
    # The new champion answers (the replica's heartbeat records that as an audited "served" event): wait for
    # that entry, so that the chain is verified as a whole rather than while the heartbeat writes to it.
    answer = httpx.post(f"{replica.url}/v1/projects/{MOODY}/predict", json={"x1": 2.0, "x2": 3.0}, timeout=30)
    assert answer.status_code == 200 and answer.json()["version"] == versions["bad"], answer.text
    wait_for(
        lambda: any(
            e.action == "served" and e.champion == versions["bad"]
            for e in platform.deployments.history(SYSTEM, MOODY, "prod")
        ),
        30,  # heartbeats carry it; a loaded machine delays them
        "the new champion's served event",
    )
    assert platform.audit.verify(SYSTEM).ok


@pytest.mark.parametrize(
    ("fault", "why"),
    [(RAISE, "challenger error rate"), (SLOW, "challenger p99")],
    ids=["error-fault", "latency-fault"],
)
def test_a_faulty_challenger_is_rolled_back_with_an_alert_saying_why(moody_prod, fault: float, why: str) -> None:
    platform, versions, replica = moody_prod
    if fault == SLOW:  # one request in five sleeps 0.6 s: above a 400 ms p99
        config = {**PROD_CONFIG, "sla": {**PROD_CONFIG["sla"], "p99_ms": 400}}
        platform.environments.configure(SYSTEM, "prod", config)
    load = Load([replica.url], fault=fault, fault_share=5, max_requests=2000, max_seconds=40).start()
    try:
        rollout_id = start_canary(platform, versions["bad"], steps="50,100", bake=30, min_requests=30)
        assert run_until_over(platform, rollout_id, 35) == "rolled_back"
    finally:
        load.stop()
    info = platform.rollouts.get(SYSTEM, rollout_id)
    assert why in (info.reason or ""), info.reason
    assert load.failures == [], load.failures[:3]  # the champion answered what the challenger failed
    state = platform.deployments.get(SYSTEM, MOODY, "prod")
    assert state.champion.number == versions["good"] and state.challenger is None
    [alert] = [a for a in platform.alerts.list(SYSTEM) if a.rule == "rollout.rolled-back"]
    assert alert.status == "firing" and alert.severity == "critical" and why in alert.summary
    assert alert.evidence == f"rollout:{rollout_id}"
    assert "rollout.rollback" in audit_actions(platform)


def test_rollback_to_a_version_stops_a_running_rollout_at_once(moody_prod) -> None:
    platform, versions, _replica = moody_prod
    rollout_id = start_canary(platform, versions["bad"], steps="10,100", bake=600)
    assert platform.deployments.get(SYSTEM, MOODY, "prod").challenger.weight == 10
    state = platform.deployments.rollback(SYSTEM, MOODY, "prod", versions["good"])
    assert state.champion.number == versions["good"] and state.challenger is None
    info = platform.rollouts.get(SYSTEM, rollout_id)
    assert info.state == "aborted" and "rollback" in (info.reason or "")
    assert platform.rollouts.tick() == []  # nothing left for the controller
    with platform.db.reader() as session:
        last = session.scalars(select(DeploymentEventRow).order_by(DeploymentEventRow.id.desc())).first()
    assert last.action in ("rollback", "clear-challenger")
    # A second rollout may start now that the first is over; a third at the same time is refused.
    start_canary(platform, versions["bad"], steps="10,100", bake=600)
    from harbourmaster.errors import ConflictError

    with pytest.raises(ConflictError, match="already under way"):
        start_canary(platform, versions["bad"], steps="10,100", bake=600)


def test_a_challenger_cleared_by_hand_ends_the_rollout_without_touching_the_deployment(moody_prod) -> None:
    platform, versions, _replica = moody_prod
    rollout_id = start_canary(platform, versions["bad"], steps="10,100", bake=600)
    platform.deployments.clear_challenger(SYSTEM, MOODY, "prod")
    [info] = platform.rollouts.tick()
    assert info.id == rollout_id and info.state == "aborted" and "changed outside the rollout" in info.reason
    state = platform.deployments.get(SYSTEM, MOODY, "prod")
    assert state.challenger is None and state.champion.number == versions["good"]  # left as the person made it
