"""Lifecycle cases, the pure rules: when an alert opens a case (a project's ``[lifecycle.automation]``
policy), the steps a case goes through in order, and which state each recorded step leaves it in.

A case is one record from the alert that started it to the rollout that ended it. Its states:

- ``open``: opened by an alert, waiting for a lifecycle worker to claim it;
- ``running``: a worker runs its steps (retrain, evaluate, promote, loadtest, approval);
- ``waiting_signoff``: the production approval is asked for; people sign off and promote;
- ``rolling_out``: the promotion to production happened and its rollout runs;
- ``done``: the rollout completed (or rolled back: its outcome says which);
- ``failed``: a step failed (its reason is on the case, and an alert was raised);
- ``closed``: a person closed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

STATES = ("open", "running", "waiting_signoff", "rolling_out", "done", "failed", "closed")
ACTIVE = ("open", "running", "waiting_signoff", "rolling_out")
STEPS = ("retrain", "evaluate", "promote", "loadtest", "approval")  # what a worker runs, in order
STEP_STATUSES = ("succeeded", "failed")
OPENING_CHANGES = frozenset({"firing", "escalated"})  # alert changes (core.alerts.Change) that may open a case


@dataclass(frozen=True)
class AutomationPolicy:
    """A project's ``[lifecycle.automation]`` table as the control plane keeps it (project settings)."""

    enabled: bool
    alerts: tuple[str, ...]
    environment: str
    window: str | None
    mix_training: float
    test_environment: str
    loadtest_rate: float | None
    loadtest_duration: float
    cooldown: timedelta
    serve_wait_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "alerts": list(self.alerts),
            "environment": self.environment,
            "window": self.window,
            "mix_training": self.mix_training,
            "test_environment": self.test_environment,
            "loadtest_rate": self.loadtest_rate,
            "loadtest_duration": self.loadtest_duration,
            "cooldown_hours": self.cooldown.total_seconds() / 3600,
            "serve_wait_seconds": self.serve_wait_seconds,
        }


def policy_of(settings: dict[str, Any] | None) -> AutomationPolicy | None:
    """The automation policy in a project's stored settings; None when it has none or it is not enabled."""
    table = ((settings or {}).get("lifecycle") or {}).get("automation") or {}
    if not table.get("enabled"):
        return None
    return AutomationPolicy(
        enabled=True,
        alerts=tuple(table.get("alerts") or ("drift.dataset", "model_quality.drop")),
        environment=table.get("environment") or "prod",
        window=table.get("window"),
        mix_training=float(table.get("mix_training") or 0.0),
        test_environment=table.get("test_environment") or "test",
        loadtest_rate=table.get("loadtest_rate"),
        loadtest_duration=float(table.get("loadtest_duration") or 10.0),
        cooldown=timedelta(hours=float(table.get("cooldown_hours", 6.0))),
        serve_wait_seconds=float(table.get("serve_wait_seconds", 300.0)),
    )


def opens_case(
    policy: AutomationPolicy | None,
    *,
    rule: str,
    change: str,
    environment: str | None,
    last_opened_at: datetime | None,
    now: datetime,
) -> bool:
    """Whether an alert's change opens a case: the project opted in, the rule is one it names, the alert is
    in the watched environment, the alert is new or worse, and no case of the deployment opened within the
    cool-down (one alert storm, one case; an active case also blocks another, by the store's unique key)."""
    if policy is None or change not in OPENING_CHANGES:
        return False
    if rule not in policy.alerts or environment != policy.environment:
        return False
    return last_opened_at is None or now - last_opened_at >= policy.cooldown


def state_after_step(step: str, status: str) -> str:
    """The case's state once a worker recorded ``step`` with ``status``."""
    if status == "failed":
        return "failed"
    return "waiting_signoff" if step == "approval" else "running"


def check_step(step: str, status: str, done: list[str]) -> str | None:
    """What is wrong with recording ``step`` now (None: nothing), given the steps already succeeded."""
    if step not in STEPS:
        return f"unknown step {step!r}: the steps are {', '.join(STEPS)}"
    if status not in STEP_STATUSES:
        return f"unknown step status {status!r}: succeeded or failed"
    if step in done:
        return f"step {step!r} is recorded already"
    expected = next((s for s in STEPS if s not in done), None)
    if step != expected:
        return f"step {step!r} comes after {expected!r}"
    return None


def state_after_rollout(rollout_state: str | None) -> str:
    """The case's state once production's promotion is found: an immediate one (no rollout) is done at once;
    a rollout keeps it rolling out until it completed, rolled back or was aborted."""
    if rollout_state is None or rollout_state in ("completed", "rolled_back", "aborted"):
        return "done"
    return "rolling_out"
