"""The rollout rules (pure): plans are checked whole, and a step's verdict follows the SLA, the champion,
the minimum traffic and the bake time, with a reason for each."""

from __future__ import annotations

import pytest

from harbourmaster.core.environments import SlaConfig
from harbourmaster.core.rollout_rules import (
    DEFAULT_STEPS,
    ShadowInput,
    SideFigures,
    StepInput,
    decide,
    decide_shadow,
    parse_seconds,
    parse_steps,
    rollout_plan,
)
from harbourmaster.core.sla import LATENCY_BUCKETS, Counts
from harbourmaster.errors import InvalidInputError

SLA = SlaConfig(p99_ms=300, error_rate=0.05, fallback_rate=0.2)


def side(requests: float, errors: float = 0, fallbacks: float = 0, seconds: float = 0.01) -> SideFigures:
    """Figures of ``requests`` requests that all took ``seconds`` (a histogram with them in one bucket)."""
    buckets = tuple(requests if bound >= seconds else 0.0 for bound in LATENCY_BUCKETS)
    return SideFigures.of(Counts(requests, errors, fallbacks, requests, requests * seconds, buckets))


def test_plans_are_checked_whole_with_a_hint() -> None:
    assert rollout_plan("canary")["steps"] == list(DEFAULT_STEPS)
    assert rollout_plan("canary", steps="10,100", bake="30s")["bake_seconds"] == 30
    assert rollout_plan("shadow", shadow_for="1h")["options"]["shadow_seconds"] == 3600
    assert parse_seconds("10m", 1, "--bake") == 600 and parse_seconds(2.5, 1, "--bake") == 2.5
    for bad, fix in (("5,25", "end at 100"), ("50,25,100", "must rise"), ("a,b", "e.g. --steps")):
        with pytest.raises(InvalidInputError) as raised:
            parse_steps(bad)
        assert fix in str(raised.value) + (raised.value.hint or "")
    with pytest.raises(InvalidInputError, match="strategy 'rolling' is unknown"):
        rollout_plan("rolling")
    with pytest.raises(InvalidInputError, match="is not a duration"):
        rollout_plan("canary", bake="soon")


def test_no_verdict_on_a_handful_of_requests_then_bake_then_advance_or_complete() -> None:
    few = StepInput(side(3), side(30), SLA)
    assert decide(few, baked=True, last_step=False).action == "wait"
    assert "3 of 50" in decide(few, baked=True, last_step=False).reason
    healthy = StepInput(side(80), side(400), SLA)
    assert decide(healthy, baked=False, last_step=False).action == "wait"
    assert decide(healthy, baked=True, last_step=False).action == "advance"
    assert decide(healthy, baked=True, last_step=True).action == "complete"


def test_breaches_against_the_sla_and_against_the_champion_name_the_rule() -> None:
    errors = decide(StepInput(side(100, errors=10), side(400), SLA), baked=False, last_step=False)
    assert errors.action == "rollback" and "error rate 10.00% is above the SLA's 5.00%" in errors.reason
    worse = decide(StepInput(side(100, errors=3), side(400), SLA), baked=True, last_step=False)
    assert worse.action == "rollback" and "worse than the champion's 0.00%" in worse.reason
    slow = decide(StepInput(side(100, seconds=0.5), side(400), SLA), baked=False, last_step=False)
    assert slow.action == "rollback" and "p99" in slow.reason and "SLA's 300 ms" in slow.reason
    # Many failures roll back before the minimum traffic: 12 failed of 20 is enough to tell.
    early = decide(StepInput(side(20, errors=12), side(80), SLA), baked=False, last_step=False)
    assert early.action == "rollback"
    # At 100 % the champion sees too little to compare with: only the SLA judges.
    alone = decide(StepInput(side(100, errors=2), side(3), SLA), baked=True, last_step=True)
    assert alone.action == "complete"


def test_a_shadow_completes_on_agreement_or_waits_for_a_person() -> None:
    agreeing = ShadowInput(compared=200, agreed=199, shadow_errors=0)
    assert decide_shadow(agreeing, elapsed=False, automatic=True).action == "wait"
    assert decide_shadow(agreeing, elapsed=True, automatic=True).action == "complete"
    held = decide_shadow(agreeing, elapsed=True, automatic=False)
    assert held.action == "wait" and "waiting for a person" in held.reason
    poor = decide_shadow(ShadowInput(200, 150, 0), elapsed=True, automatic=True)
    assert poor.action == "wait" and "agreement 75.0%" in poor.reason and "below the bar" in poor.reason
