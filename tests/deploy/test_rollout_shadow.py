"""Shadow rollouts and blue-green promotion on a real replica: a shadow that agrees with the champion
completes by itself, one set to wait is held for a person and completes when resumed (audited); blue-green
keeps the old champion warm as the failover."""

from __future__ import annotations

import pytest
from tests.deploy.rollout_support import SYSTEM, Load, audit_actions, run_until_over, wait_for
from tests.serving.projects import MOODY

from harbourmaster.core.rollout_rules import rollout_plan

pytestmark = pytest.mark.slow


def test_a_shadow_completes_on_agreement_or_waits_for_a_person(moody_prod) -> None:
    platform, versions, replica = moody_prod
    load = Load([replica.url], threads=2, max_requests=2500, max_seconds=45).start()
    try:
        plan = rollout_plan("shadow", shadow_for=2, min_requests=20)
        first = platform.promotions.promote(SYSTEM, MOODY, versions["bad"], "prod", rollout=plan).rollout_id
        assert platform.deployments.get(SYSTEM, MOODY, "prod").challenger.mode == "shadow"
        assert run_until_over(platform, first, 30) == "completed"
        done = platform.rollouts.get(SYSTEM, first)
        assert "agreement 100.0%" in (done.reason or ""), done.reason  # the same model, behaving on these inputs
        assert platform.deployments.get(SYSTEM, MOODY, "prod").champion.number == versions["bad"]

        plan = rollout_plan("shadow", shadow_for=2, min_requests=20, decide="manual")
        second = platform.promotions.promote(SYSTEM, MOODY, versions["good"], "prod", rollout=plan).rollout_id
        controller = platform.rollouts.start_controller(0.3)
        try:
            wait_for(lambda: platform.rollouts.get(SYSTEM, second).state == "paused", 30, "the shadow to wait")
            held = platform.rollouts.get(SYSTEM, second)
            assert "waiting for a person" in held.events[-1]["text"]
            assert platform.deployments.get(SYSTEM, MOODY, "prod").champion.number == versions["bad"]
            platform.rollouts.resume(SYSTEM, second, "looks right")
            wait_for(lambda: platform.rollouts.get(SYSTEM, second).state == "completed", 20, "the approved shadow")
        finally:
            controller.stop()
    finally:
        load.stop()
    assert load.failures == []
    assert platform.deployments.get(SYSTEM, MOODY, "prod").champion.number == versions["good"]
    assert "rollout.hold" in audit_actions(platform) and "rollout.resume" in audit_actions(platform)


def test_blue_green_keeps_the_old_champion_warm_as_the_failover(moody_prod) -> None:
    platform, versions, _replica = moody_prod
    info = platform.promotions.promote(SYSTEM, MOODY, versions["bad"], "prod", rollout=rollout_plan("blue-green"))
    assert info.rollout_id is None
    state = platform.deployments.get(SYSTEM, MOODY, "prod")
    assert state.champion.number == versions["bad"] and state.failover.number == versions["good"]
