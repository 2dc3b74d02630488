"""The automation policy end to end on real parts: a drift alert in prod opens one case for an opted-in
project (the storm of drift and quality alerts of one pass opens one, a second monitor pass opens no other; a
project not opted in opens none); the lifecycle worker, from the CLI against a live control plane with the
prod operator's token, retrains on production data, evaluates, promotes to test, load-tests on a real replica
of test and asks for prod's sign-offs, every step linked on the case; the canary people then start is linked
and its end closes the case; a failing step fails the case with the reason and an alert; every state change
is in the audit chain, which verifies; a viewer cannot run the worker's writes; two workers at once run a
case exactly once (PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import make_settings

from cli_inprocess import invoke
from governance.helpers import actor, create_users, live_server
from harbourmaster.client import Client
from harbourmaster.core.rollout_rules import rollout_plan
from harbourmaster.errors import PermissionDeniedError
from harbourmaster.lifecycle_worker import work
from harbourmaster.services.cases import FAILED_RULE, CaseInfo
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow
from loopback import free_port
from served import serve_champion
from serving.helpers import STARTED, reap_started, stop_process

from .projects import PROJECT, SYSTEM, TOML, frame, log_traffic, write_project

pytestmark = pytest.mark.slow

AUTOMATION = """
[lifecycle.automation]
enabled = true
alerts = ["drift.dataset", "model_quality.drop"]
environment = "prod"
test_environment = "test"
loadtest_rate = 20
loadtest_duration = 1
cooldown_hours = 6
serve_wait_seconds = 60
"""


def _drifting_prod(platform: Platform, folder: Path, *, labelled: int | None = None, author: str = "dana") -> int:
    """v1 (trained by ``author``) champion of dev, test and prod; prod's traffic drifted, with ground truth."""
    number = platform.training.train(actor(platform, author), folder).version.number
    platform.deployments.deploy(SYSTEM, PROJECT, number, "dev")
    serve_champion(platform, PROJECT, "dev")
    platform.promotions.promote(SYSTEM, PROJECT, number, "test")
    serve_champion(platform, PROJECT, "test")
    for approver in ("abe", "amy"):
        platform.approvals.decide(actor(platform, approver), PROJECT, number, "prod", "approve")
    platform.promotions.promote(actor(platform, "olga"), PROJECT, number, "prod")
    log_traffic(platform, frame(300, seed=11, shifted=True), version=number, environment="prod", labelled=labelled)
    return number


def _replica_of_test(platform: Platform, url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    """``harbourmaster serve --env test --url`` in a process of its own with a replica credential (a shared
    store: the replica reaches state through the control plane), once it is ready."""
    secret = platform.dataplane.create_credential(SYSTEM, "test", "web").secret
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update(HARBOURMASTER_HOME=str(tmp_path / "replica-home"), HARBOURMASTER_TOKEN=secret)
    port = free_port()
    command = [sys.executable, "-m", "harbourmaster", "serve", "--env", "test", "--port", str(port), "--url", url]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    STARTED.append(process)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                return process
        time.sleep(0.2)
    raise AssertionError("the replica of test did not get ready")


def _configure(platform: Platform, environment: str, **changes: object) -> None:
    config = platform.environments.get(environment).config.model_dump(exclude_none=True)
    platform.environments.configure(SYSTEM, environment, {**config, **changes})


def _actions(platform: Platform, prefix: str) -> list[str]:
    with platform.db.reader() as session:
        query = select(AuditEventRow).where(AuditEventRow.action.like(f"{prefix}%")).order_by(AuditEventRow.seq)
        rows = session.scalars(query)  # in the chain's order (PostgreSQL returns rows in any order without it)
        return [row.action for row in rows]


def _drift_alert(platform: Platform) -> set[str]:
    """One monitor pass over prod's drifted traffic; the rules of the alerts it opened in prod."""
    report = platform.monitoring.run_once()
    fired = {c.rule for c in report.changes if c.change == "firing" and c.subject.endswith("prod")}
    assert "drift.dataset" in fired, [c.model_dump() for c in report.changes]
    return fired


def test_a_drift_alert_opens_one_case_and_the_worker_takes_it_to_the_sign_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    platform = Platform(make_settings(home))
    monkeypatch.setenv("HARBOURMASTER_HOME", str(tmp_path / "cli-home"))  # the CLI's cache, not the store
    replica = None
    try:
        tokens = create_users(platform)
        # test lets a version in without serving in dev first; prod keeps its sign-offs, with an SLA generous
        # for a shared machine (what is tested is the case, not this host).
        _configure(platform, "test", allow_skip=True)
        _configure(platform, "prod", sla={"p99_ms": 2000, "error_rate": 0.0})
        champion = _drifting_prod(platform, write_project(tmp_path / "shifty", TOML + AUTOMATION))

        assert {"drift.dataset", "model_quality.drop"} <= _drift_alert(platform)  # both rules the policy names
        opened = platform.cases.list(SYSTEM)
        assert [(c.project, c.environment, c.state) for c in opened] == [(PROJECT, "prod", "open")]
        case = opened[0]
        assert case.trigger["rule"] == "drift.dataset" and case.trigger["subject"].endswith("prod")
        assert case.policy["loadtest_rate"] == 20 and case.policy["test_environment"] == "test"
        platform.monitoring.run_once()  # the alert still fires: no second case
        assert [c.id for c in platform.cases.list(SYSTEM)] == [case.id]

        with live_server(platform) as live:
            replica = _replica_of_test(platform, live.url, tmp_path)
            worker = ["lifecycle", "worker", "--once", "--url", live.url]
            refused = invoke([*worker, "--token", tokens["vera"]])
            assert refused.code == 1 and refused.crash is None and "vera" in refused.err, refused.err
            assert platform.cases.get(SYSTEM, case.id).state == "open"

            done = invoke([*worker, "--token", tokens["olga"], "--json"])
            assert done.code == 0, done.out + done.err + str(done.crash)
            assert [c["id"] for c in json.loads(done.out)] == [case.id]
            shown = invoke(["cases", "show", str(case.id), "--url", live.url, "--token", tokens["vera"]])
            assert shown.code == 0 and "waiting_signoff" in shown.out and "drift.dataset" in shown.out, shown.err

        case = platform.cases.get(SYSTEM, case.id)
        assert case.state == "waiting_signoff", (case.reason, case.steps)
        assert case.claimed_by == "olga"
        steps = {s["step"]: s for s in case.steps}
        assert list(steps) == ["retrain", "evaluate", "promote", "loadtest", "approval"]
        assert all(s["status"] == "succeeded" and s["actor"] == "olga" for s in steps.values())
        retrained = steps["retrain"]["links"]["version"]
        assert retrained == champion + 1 == case.version
        run = platform.runs.get(SYSTEM, steps["retrain"]["links"]["run_id"])
        assert run.kind == "retrain" and run.version_number == retrained
        verdicts = {e["check"]: e["passed"] for e in steps["evaluate"]["links"]["evidence"]}
        assert verdicts == {"beats_champion": True, "drift_fixed": True}
        promoted = steps["promote"]["links"]["promotions"]
        assert [p["environment"] for p in promoted] == ["test"]
        assert platform.deployments.get(SYSTEM, PROJECT, "test").champion.number == retrained
        load = steps["loadtest"]["links"]
        stored = {e.id: e for e in platform.evidence.list(SYSTEM, PROJECT, version=retrained, environment="prod")}
        assert load["passed"] and stored[load["evidence_id"]].check == "loadtest"
        asked = steps["approval"]["links"]
        assert asked["promotion_id"], asked
        refusal = next(p for p in platform.promotions.list(SYSTEM, PROJECT) if p.id == asked["promotion_id"])
        assert refusal.outcome == "refused" and refusal.to_environment == "prod" and refusal.version == retrained
        assert any(m.startswith("approvals") for m in asked["missing"]), asked
        pending = platform.approvals.pending(SYSTEM, PROJECT)
        assert any(p.version == retrained and p.environment == "prod" for p in pending)
        assert platform.deployments.get(SYSTEM, PROJECT, "prod").champion.number == champion  # people decide

        # People sign off and start a canary: the next monitor pass links the promotion and its rollout; the
        # case closes when the rollout ends (here a person stops it; the rollout tests cover the canary itself).
        serve_champion(platform, PROJECT, "test")
        for approver in ("abe", "amy"):
            platform.approvals.decide(actor(platform, approver), PROJECT, retrained, "prod", "approve")
        olga = actor(platform, "olga")
        canary = rollout_plan("canary", bake=600)
        promotion = platform.promotions.promote(olga, PROJECT, retrained, "prod", rollout=canary)
        platform.monitoring.run_once()
        case = platform.cases.get(SYSTEM, case.id)
        assert (case.state, case.promotion_id, case.rollout_id) == ("rolling_out", promotion.id, promotion.rollout_id)
        platform.rollouts.abort(olga, promotion.rollout_id, "the test ends here")
        platform.cases.follow()
        case = platform.cases.get(SYSTEM, case.id)
        assert (case.state, case.outcome) == ("done", "aborted") and case.closed_at is not None

        actions = _actions(platform, "case.")
        assert actions[:3] == ["case.open", "case.claim", "case.step.retrain"], actions
        assert actions[-2:] == ["case.promoted", "case.done"] and "case.step.approval" in actions
        assert platform.audit.verify(actor(platform, "audrey")).ok
    finally:
        if replica is not None:
            stop_process(replica)
        reap_started()
        platform.close()


def test_a_failing_step_fails_the_case_with_the_reason_and_an_alert_and_two_workers_run_it_once(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARBOURMASTER_HOME", str(tmp_path / "cli-home"))
    platform = Platform(make_settings(tmp_path / "home", postgres_url))
    try:
        tokens = create_users(platform)
        # Only 40 rows of ground truth arrived: fewer than the project's [retrain] min_rows (60).
        _drifting_prod(platform, write_project(tmp_path / "shifty", TOML + AUTOMATION), labelled=40)
        _drift_alert(platform)
        (case,) = platform.cases.list(SYSTEM)
        with pytest.raises(PermissionDeniedError):
            platform.cases.claim(actor(platform, "vera"))
        with pytest.raises(PermissionDeniedError):  # an operator without prod's grant cannot take a prod case
            platform.cases.claim(actor(platform, "otto"))
        ran: list[list[CaseInfo]] = []
        barrier = threading.Barrier(2)
        with live_server(platform) as live:

            def one_worker(name: str) -> None:
                with Client(url=live.url, token=tokens["olga"]) as hm:
                    barrier.wait(30)
                    ran.append(work(hm, once=True, worker=name))

            workers = [threading.Thread(target=one_worker, args=(f"w{i}",)) for i in (1, 2)]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join(120)
        # Two workers at once on PostgreSQL: the case ran exactly once.
        assert sorted(len(r) for r in ran) == [0, 1], ran
        (failed,) = [c for r in ran for c in r]
        assert failed.id == case.id and failed.state == "failed" and failed.claimed_by in ("w1", "w2")
        assert "only 40 labelled production row" in failed.reason, failed.reason
        assert [(s["step"], s["status"]) for s in failed.steps] == [("retrain", "failed")]
        assert [v.number for v in platform.registry.list_versions(SYSTEM, PROJECT)] == [1]  # nothing registered
        alerts = [a for a in platform.alerts.list(SYSTEM) if a.rule == FAILED_RULE]
        assert [(a.subject, a.severity) for a in alerts] == [(f"case:{case.id}", "critical")]
        assert "failed at retrain" in alerts[0].summary
        # Over, so the deployment is free again, but the cool-down holds the next pass's alerts off.
        platform.monitoring.run_once()
        assert [c.id for c in platform.cases.list(SYSTEM)] == [case.id]
        assert _actions(platform, "case.") == ["case.open", "case.claim", "case.step.retrain"]
        assert platform.audit.verify(actor(platform, "audrey")).ok
    finally:
        platform.close()


def test_a_project_not_opted_in_opens_no_case(tmp_path: Path) -> None:
    platform = Platform(make_settings(tmp_path / "home"))
    try:
        create_users(platform)
        _drifting_prod(platform, write_project(tmp_path / "shifty"))
        _drift_alert(platform)
        assert platform.cases.list(SYSTEM) == []
        assert _actions(platform, "case.") == []
    finally:
        platform.close()
