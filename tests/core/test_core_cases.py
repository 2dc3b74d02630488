"""The pure rules of lifecycle cases: which alert opens one, the step order, the states steps and rollouts
leave a case in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harbourmaster.core.cases import check_step, opens_case, policy_of, state_after_rollout, state_after_step

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
POLICY = policy_of({"lifecycle": {"automation": {"enabled": True, "alerts": ["drift.dataset"], "cooldown_hours": 6}}})


@pytest.mark.parametrize(
    ("rule", "change", "environment", "last", "opens"),
    [
        ("drift.dataset", "firing", "prod", None, True),
        ("drift.dataset", "escalated", "prod", NOW - timedelta(hours=7), True),
        ("drift.dataset", "updated", "prod", None, False),  # still firing: a later monitor pass
        ("drift.dataset", "resolved", "prod", None, False),
        ("drift.dataset", "firing", "test", None, False),  # not the watched environment
        ("model_quality.drop", "firing", "prod", None, False),  # not a rule the policy names
        ("drift.dataset", "firing", "prod", NOW - timedelta(hours=5), False),  # within the cool-down
    ],
)
def test_which_alert_change_opens_a_case(rule: str, change: str, environment: str, last, opens: bool) -> None:
    assert opens_case(POLICY, rule=rule, change=change, environment=environment, last_opened_at=last, now=NOW) is opens


def test_no_policy_opens_nothing() -> None:
    assert policy_of({}) is None and policy_of({"lifecycle": {"automation": {"enabled": False}}}) is None
    assert not opens_case(None, rule="drift.dataset", change="firing", environment="prod", last_opened_at=None, now=NOW)


def test_steps_come_in_order_once() -> None:
    assert check_step("retrain", "succeeded", []) is None
    assert "comes after 'retrain'" in check_step("evaluate", "succeeded", [])
    assert "recorded already" in check_step("retrain", "succeeded", ["retrain"])
    assert "unknown step" in check_step("deploy", "succeeded", [])
    assert "unknown step status" in check_step("retrain", "maybe", [])
    assert check_step("approval", "failed", ["retrain", "evaluate", "promote", "loadtest"]) is None


def test_states_after_steps_and_rollouts() -> None:
    assert state_after_step("retrain", "succeeded") == "running"
    assert state_after_step("loadtest", "failed") == "failed"
    assert state_after_step("approval", "succeeded") == "waiting_signoff"
    assert state_after_rollout(None) == "done"  # an immediate promotion
    assert state_after_rollout("running") == state_after_rollout("paused") == "rolling_out"
    assert {state_after_rollout(s) for s in ("completed", "rolled_back", "aborted")} == {"done"}
