"""Promotion, sign-offs, identity and history rules, through the real services (both backends).

Versions are trained from the demo project by a data scientist; every rule is
exercised with the users of ``helpers.USERS`` (roles and grants from the table).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, text

from harbourmaster.errors import AuthenticationError, PermissionDeniedError, PromotionRefusedError
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow
from served import serve_champion

from .helpers import PROJECT, SYSTEM, actor, create_users, live_server, train


@pytest.fixture
def gov(platform: Platform) -> Platform:
    """The platform with one user per role (and an operator with a prod grant)."""
    create_users(platform)
    return platform


def to_test(platform: Platform, number: int, user: str = "dana") -> None:
    """The regular path of a version: dev, then test."""
    who = actor(platform, user)
    platform.deployments.deploy(who, PROJECT, number, "dev")
    serve_champion(platform, PROJECT, "dev")  # served: a replica answered with it
    platform.promotions.promote(who, PROJECT, number, "test")
    serve_champion(platform, PROJECT, "test")


def sign_off(platform: Platform, number: int, *approvers: str, decision: str = "approve") -> None:
    for name in approvers:
        platform.approvals.decide(actor(platform, name), PROJECT, number, "prod", decision, f"{decision} by {name}")


def refusal(call, *args, **kwargs) -> PromotionRefusedError:
    with pytest.raises(PromotionRefusedError) as raised:
        call(*args, **kwargs)
    return raised.value


def champion(platform: Platform, environment: str) -> int | None:
    state = platform.deployments.get(SYSTEM, PROJECT, environment)
    return state.champion.number if state.champion else None


def audit_rows(platform: Platform, action: str) -> list[AuditEventRow]:
    with platform.db.reader() as session:
        return list(
            session.scalars(select(AuditEventRow).where(AuditEventRow.action == action).order_by(AuditEventRow.seq))
        )


# ----------------------------------------------------------------- order and gates


def test_promotion_follows_the_order_and_lists_every_failed_gate(gov, demo_project):
    dana, olga = actor(gov, "dana"), actor(gov, "olga")
    v1 = train(gov, demo_project)

    # Never served anywhere: test refuses it, and says where to go first.
    error = refusal(gov.promotions.promote, dana, PROJECT, v1, "test")
    assert "order: v1 has never served in dev" in error.message
    assert f"harbourmaster promote {PROJECT} 1 --to dev" in error.hint

    # Skipping test (dev -> prod) is refused too, with every failed gate and its fix.
    gov.deployments.deploy(dana, PROJECT, v1, "dev")
    serve_champion(gov, PROJECT, "dev")
    error = refusal(gov.promotions.promote, olga, PROJECT, v1, "prod")
    assert "refused by 2 gate(s)" in error.message
    assert "order: v1 has never served in test" in error.message
    assert "approvals: v1 has 0 valid approval(s); needs 2 more from role approver" in error.message
    assert f"promote it to test first: harbourmaster promote {PROJECT} 1 --to test" in error.hint
    assert f"harbourmaster approve {PROJECT} 1 --env prod" in error.hint
    assert "not the author dana" in error.hint

    # The regular step passes.
    info = gov.promotions.promote(dana, PROJECT, v1, "test")
    assert (info.outcome, info.from_environment, info.to_environment) == ("promoted", "dev", "test")
    assert [(g.gate, g.passed) for g in info.gates] == [("order", True), ("schema compatible", True)]
    assert champion(gov, "test") == v1
    serve_champion(gov, PROJECT, "test")

    # Served in test, but nobody signed off: prod still refuses, now only for approvals.
    error = refusal(gov.promotions.promote, olga, PROJECT, v1, "prod")
    assert "refused by 1 gate(s): approvals:" in error.message
    with pytest.raises(Exception, match="not deployed in prod"):
        gov.deployments.get(SYSTEM, PROJECT, "prod")

    # Every attempt is stored with all its gate results, refused ones included.
    attempts = gov.promotions.list(SYSTEM, PROJECT)
    assert [(a.to_environment, a.outcome) for a in reversed(attempts)] == [
        ("test", "refused"),
        ("prod", "refused"),
        ("test", "promoted"),
        ("prod", "refused"),
    ]
    skipped = attempts[2]
    assert [(g.gate, g.passed) for g in skipped.gates] == [
        ("order", False),
        ("schema compatible", True),
        ("approvals", False),
    ]
    assert all(g.fix for g in skipped.gates if not g.passed)
    assert skipped.actor == "olga" and skipped.digest == gov.registry.get_version(SYSTEM, PROJECT, v1).digest
    # ... and in the audit log, as denied attempts naming the failed gates.
    denied = [row for row in audit_rows(gov, "version.promote") if row.outcome == "denied"]
    assert len(denied) == 3
    assert denied[1].details["failed_gates"] == ["order", "approvals"]


def test_allow_skip_lets_a_version_jump_an_environment(gov, demo_project):
    root = actor(gov, "root")
    config = gov.environments.get("test").config.model_dump(mode="json")
    gov.environments.configure(root, "test", {**config, "allow_skip": True})
    v1 = train(gov, demo_project)
    info = gov.promotions.promote(actor(gov, "dana"), PROJECT, v1, "test")  # never served in dev
    assert info.outcome == "promoted"
    assert "order" not in [g.gate for g in info.gates]


def test_metric_threshold_gate_refuses_with_the_value_and_the_fix(gov, demo_project):
    root, dana = actor(gov, "root"), actor(gov, "dana")
    gov.environments.configure(
        root, "test", {"gates": [{"kind": "metric", "metric": "roc_auc", "min": 0.999}, {"kind": "schema_compatible"}]}
    )
    v1 = train(gov, demo_project)
    roc_auc = gov.registry.get_version(SYSTEM, PROJECT, v1).metrics["roc_auc"]
    assert 0.9 < roc_auc < 0.999
    gov.deployments.deploy(dana, PROJECT, v1, "dev")
    serve_champion(gov, PROJECT, "dev")
    error = refusal(gov.promotions.promote, dana, PROJECT, v1, "test")
    assert f"metric roc_auc: roc_auc = {roc_auc:.4f} (needs >= 0.999)" in error.message
    assert "train a version whose held-out roc_auc is >= 0.999" in error.hint
    [attempt] = gov.promotions.list(SYSTEM, PROJECT)
    assert [(g.gate, g.passed) for g in attempt.gates] == [
        ("order", True),
        ("metric roc_auc", False),
        ("schema compatible", True),
    ]

    # A threshold it meets lets it through; an unknown metric is a clear refusal.
    gov.environments.configure(root, "test", {"gates": [{"kind": "metric", "metric": "roc_auc", "min": 0.9}]})
    assert gov.promotions.promote(dana, PROJECT, v1, "test").outcome == "promoted"
    gov.environments.configure(root, "test", {"gates": [{"kind": "metric", "metric": "recall", "min": 0.5}]})
    error = refusal(gov.promotions.promote, dana, PROJECT, v1, "test")
    assert "v1 has no recall" in error.message


def test_schema_compatibility_gate_refuses_a_removed_column(gov, demo_project):
    v1 = train(gov, demo_project)
    to_test(gov, v1)
    data = demo_project / "data" / "train.csv"
    pd.read_csv(data).drop(columns=["mean radius"]).to_csv(data, index=False)
    toml = demo_project / "harbourmaster.toml"  # a deliberate removal (else training names the missing column)
    toml.write_text(toml.read_text() + '\n[schema."mean radius"]\nrole = "ignored"\n')
    v2 = train(gov, demo_project)
    gov.deployments.deploy(actor(gov, "dana"), PROJECT, v2, "dev")
    error = refusal(gov.promotions.promote, actor(gov, "dana"), PROJECT, v2, "test")
    assert "schema compatible: breaking changes against champion v1" in error.message
    assert "mean radius" in error.message
    assert "keep the champion's input columns" in error.hint
    assert champion(gov, "test") == v1


# --------------------------------------------------------------------- sign-offs


def test_sign_offs_grants_and_digests(gov, demo_project):
    dana, otto, olga = actor(gov, "dana"), actor(gov, "otto"), actor(gov, "olga")
    v1, v2, v3 = train(gov, demo_project), train(gov, demo_project), train(gov, demo_project)
    to_test(gov, v3)

    # One sign-off is not enough; pending approvals say what waits for whom.
    sign_off(gov, v3, "abe")
    [waiting] = [p for p in gov.approvals.pending(actor(gov, "vera")) if p.environment == "prod"]
    assert (waiting.version, waiting.author, waiting.approvals) == (v3, "dana", ["abe (approve)"])
    assert waiting.missing == "v3 has 1 valid approval(s); needs 1 more from role approver"
    sign_off(gov, v3, "amy")
    [waiting] = [p for p in gov.approvals.pending(SYSTEM) if p.environment == "prod"]
    assert waiting.missing is None

    # Approved, yet only an operator with a prod grant may put it there.
    for who in (otto, dana, actor(gov, "root")):
        with pytest.raises(PermissionDeniedError) as raised:
            gov.promotions.promote(who, PROJECT, v3, "prod")
        assert "has no deploy grant for prod" in raised.value.message
        assert "harbourmaster users grant" in raised.value.hint
    with pytest.raises(PermissionDeniedError, match="may not deploy"):
        gov.promotions.promote(actor(gov, "abe"), PROJECT, v3, "prod")
    info = gov.promotions.promote(olga, PROJECT, v3, "prod")
    assert info.outcome == "promoted"
    assert [g.gate for g in info.gates if g.passed] == ["order", "schema compatible", "approvals"]
    assert "signed off by abe, amy" in info.gates[-1].reason
    assert champion(gov, "prod") == v3
    assert [p for p in gov.approvals.pending(SYSTEM) if p.environment == "prod"] == []

    # Approvals for v3 do not let v4 through (bound to the bundle digest).
    v4 = train(gov, demo_project)
    to_test(gov, v4)
    error = refusal(gov.promotions.promote, olga, PROJECT, v4, "prod")
    assert "approvals: v4 has 0 valid approval(s); needs 2 more from role approver" in error.message

    # A direct deploy to prod is no way around the gates.
    with pytest.raises(PermissionDeniedError) as raised:
        gov.deployments.deploy(olga, PROJECT, v4, "prod")
    assert "has not been promoted to prod" in raised.value.message
    assert f"harbourmaster promote {PROJECT} 4 --to prod" in raised.value.hint
    with pytest.raises(PermissionDeniedError, match="has not been promoted to prod"):
        gov.deployments.set_challenger(olga, PROJECT, "prod", v4)
    assert champion(gov, "prod") == v3

    # A rejection blocks even with two approvals.
    sign_off(gov, v4, "abe", "amy")
    sign_off(gov, v4, "abe", decision="reject")
    error = refusal(gov.promotions.promote, olga, PROJECT, v4, "prod")
    assert "approvals: rejected by abe" in error.message
    assert "address the rejection" in error.hint
    assert (v1, v2) == (1, 2)


def test_the_author_can_never_sign_off(gov, demo_project):
    root = actor(gov, "root")
    gov.identity.create_user(SYSTEM, "dora", ["data-scientist", "approver"])
    dora = actor(gov, "dora")
    v1 = gov.training.train(dora, demo_project).version.number
    to_test(gov, v1, "dora")
    with pytest.raises(PermissionDeniedError) as raised:
        gov.approvals.decide(dora, PROJECT, v1, "prod", "approve")
    assert "dora is the author of breast-cancer v1 and may not approve it" in raised.value.message
    assert raised.value.hint == "ask another approver to sign off"
    assert gov.approvals.list(SYSTEM, PROJECT) == []
    [denied] = [row for row in audit_rows(gov, "version.approve") if row.outcome == "denied"]
    assert (denied.actor, denied.target, denied.environment) == ("dora", "breast-cancer:v1", "prod")
    assert denied.details == {"reason": "author may not sign off own version"}

    # An admin cannot sign off at all (approve is the approver role's alone).
    with pytest.raises(PermissionDeniedError, match="may not approve"):
        gov.approvals.decide(root, PROJECT, v1, "prod", "approve")

    # With one other approver, dora (an approver too) still does not make the second sign-off.
    sign_off(gov, v1, "abe")
    [verdict] = [v for v in gov.promotions.check(SYSTEM, PROJECT, v1, "prod") if v.gate == "approvals"]
    assert not verdict.passed
    assert verdict.reason == "v1 has 1 valid approval(s); needs 1 more from role approver"


def test_an_expired_approval_is_refused(gov, demo_project):
    olga = actor(gov, "olga")
    config = gov.environments.get("prod").config.model_dump(mode="json")
    lifetime = 3.0  # seconds
    config["approvals"]["expires_after_hours"] = lifetime / 3600
    gov.environments.configure(SYSTEM, "prod", config)  # a prod policy change by one admin waits for a second
    v1 = train(gov, demo_project)
    to_test(gov, v1)
    sign_off(gov, v1, "abe", "amy")
    approvals = gov.approvals.list(SYSTEM, PROJECT)
    expires = max(a.expires_at for a in approvals)
    assert all(a.expires_at - a.created_at == timedelta(seconds=lifetime) for a in approvals)
    if datetime.now(UTC) < expires:  # still valid now (a normal machine takes milliseconds to get here)
        assert all(v.passed for v in gov.promotions.check(olga, PROJECT, v1, "prod"))
    deadline = time.monotonic() + lifetime + 5
    while datetime.now(UTC) <= expires:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    error = refusal(gov.promotions.promote, olga, PROJECT, v1, "prod")
    assert "approvals: v1 has 0 valid approval(s); needs 2 more from role approver" in error.message
    [waiting] = [p for p in gov.approvals.pending(SYSTEM) if p.environment == "prod"]
    assert waiting.approvals == []  # expired sign-offs are not listed as present


# ------------------------------------------------------------- rollback and history


def test_rollback_and_history_in_prod(gov, demo_project):
    olga = actor(gov, "olga")
    v1, v2 = train(gov, demo_project), train(gov, demo_project)
    to_test(gov, v1)
    sign_off(gov, v1, "abe", "amy")
    gov.promotions.promote(olga, PROJECT, v1, "prod")
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    to_test(gov, v2)
    sign_off(gov, v2, "amy")
    gov.approvals.decide(actor(gov, "abe"), PROJECT, v2, "prod", "approve")
    gov.promotions.promote(olga, PROJECT, v2, "prod")
    assert champion(gov, "prod") == v2

    # Roll prod back to the previous champion (admitted before), with no new sign-offs.
    state = gov.deployments.rollback(olga, PROJECT, "prod")
    assert state.champion.number == v1
    with pytest.raises(PermissionDeniedError, match="has no deploy grant for prod"):
        gov.deployments.rollback(actor(gov, "otto"), PROJECT, "prod")
    after_rollback = datetime.now(UTC)

    # Which version served prod at a time, who put it there, who approved it.
    [then] = gov.history.history(actor(gov, "vera"), PROJECT, "prod", at=between)
    assert (then.version, then.action, then.actor, then.approved_by) == (v1, "promote", "olga", ["abe", "amy"])
    [now] = gov.history.history(SYSTEM, PROJECT, "prod", at=after_rollback)
    assert (now.version, now.action, now.actor) == (v1, "rollback", "olga")
    assert gov.history.history(SYSTEM, PROJECT, "prod", at=between - timedelta(hours=1)) == []
    full = gov.history.history(SYSTEM, PROJECT, "prod")
    assert [(e.version, e.action) for e in full] == [(v1, "rollback"), (v2, "promote"), (v1, "promote")]
    assert full[1].approved_by == ["amy", "abe"]
    # Every environment at once: the version in force in each.
    at_once = {e.environment: e.version for e in gov.history.history(SYSTEM, PROJECT, at=after_rollback)}
    assert at_once == {"dev": v2, "test": v2, "prod": v1}


# ---------------------------------------------------------- identity over HTTP


def test_tokens_users_and_audit_access_over_http(gov):
    root = actor(gov, "root")
    # Minted by the platform: an admin minting for others needs a second admin (test_separation_of_duties).
    issued = {
        name: gov.identity.create_token(SYSTEM, name, "http").secret for name in ("vera", "audrey", "root", "dana")
    }
    short = gov.identity.create_token(SYSTEM, "vera", "short", expires_in=timedelta(seconds=1))
    revoked = gov.identity.create_token(SYSTEM, "vera", "revoked")
    gov.identity.revoke_token(actor(gov, "vera"), revoked.id)

    # Stored only as a hash: no column of api_tokens holds any token's secret.
    with gov.db.engine.connect() as connection:
        stored = [" ".join(map(str, row)) for row in connection.execute(text("SELECT * FROM api_tokens"))]
    secrets = [*issued.values(), short.secret, revoked.secret]
    assert len(stored) >= len(secrets)
    assert not [secret for secret in secrets if any(secret in row for row in stored)]
    assert not [secret for secret in secrets if any(secret[8:20] in row for row in stored)]
    listed = gov.identity.list_tokens(root)
    assert all(not hasattr(token, "secret") and len(token.prefix) <= 8 for token in listed)

    with live_server(gov) as live:
        live.tokens = {**issued, "short": short.secret, "revoked": revoked.secret}

        def call(user: str, path: str = "/api/v1/whoami"):
            with live.http(user) as http:
                return http.get(path)

        assert call("vera").json()["name"] == "vera"
        answer = call("revoked")
        assert (answer.status_code, answer.json()["error"]["message"]) == (401, "the API token was revoked")
        deadline = time.monotonic() + 5
        while datetime.now(UTC) <= short.expires_at:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        answer = call("short")
        assert (answer.status_code, answer.json()["error"]["message"]) == (401, "the API token has expired")

        # A disabled user's tokens stop working at once; enabling brings them back.
        gov.identity.set_disabled(root, "dana", True)
        answer = call("dana")
        assert (answer.status_code, answer.json()["error"]["message"]) == (401, "user 'dana' is disabled")
        gov.identity.set_disabled(root, "dana", False)
        assert call("dana").status_code == 200

        # Reading the audit log needs auditor or admin.
        for path in ("/api/v1/audit/verify", "/api/v1/audit/events", "/api/v1/audit/export"):
            refused = call("vera", path)
            assert refused.status_code == 403
            assert "vera (viewer) may not audit" in refused.json()["error"]["message"]
            assert "auditor" in refused.json()["error"]["hint"]
            assert call("audrey", path).status_code == 200
            assert call("root", path).status_code == 200
        events = call("audrey", "/api/v1/audit/events?limit=10000").json()
        actions = [(e["actor"], e["action"], e["outcome"]) for e in events]
        assert ("vera", "denied.audit", "denied") in actions
        assert ("root", "user.disable", "allowed") in actions and ("root", "user.enable", "allowed") in actions
        assert ("vera", "token.revoke", "allowed") in actions


def test_environment_configuration_is_audited_with_before_and_after(gov):
    root = actor(gov, "root")
    before = gov.environments.get("prod").config.model_dump(mode="json")
    changed = {**before, "sla": {**before["sla"], "p99_ms": 40}}
    gov.environments.configure(root, "prod", changed)
    [entry] = audit_rows(gov, "environment.configure")
    assert (entry.actor, entry.target, entry.environment, entry.outcome) == (
        "root",
        "environment:prod",
        "prod",
        "allowed",
    )
    assert entry.before["config"] == before and entry.after["config"] == changed
    assert entry.before["config"]["sla"]["p99_ms"] == 25 and entry.after["config"]["sla"]["p99_ms"] == 40
    assert entry.before["position"] == entry.after["position"]

    # Only admins configure environments, and the refusal is audited too.
    with pytest.raises(PermissionDeniedError):
        gov.environments.configure(actor(gov, "olga"), "prod", before)
    [refused] = audit_rows(gov, "denied.administer")
    assert (refused.actor, refused.environment) == ("olga", "prod")
    assert gov.environments.get("prod").config.sla.p99_ms == 40

    # A new environment goes at the end of the order and takes part in promotion.
    gov.environments.configure(root, "staging", {"guarded": True}, position=3)
    assert [env.name for env in gov.environments.list()] == ["dev", "test", "prod", "staging"]
    assert gov.access.is_guarded("staging")


def test_local_owner_cli_is_never_an_approver(gov, demo_project, tmp_path: Path):
    """The embedded owner is a sandbox admin: never a sign-off, never a guarded environment (tests/test_sandbox.py)."""
    from harbourmaster.services.actors import Actor

    owner = Actor.local_owner()
    v1 = train(gov, demo_project)
    to_test(gov, v1)
    with pytest.raises(PermissionDeniedError, match="cannot sign off"):
        gov.approvals.decide(owner, PROJECT, v1, "prod", "approve")
    with pytest.raises(PermissionDeniedError, match="prod is a guarded environment") as raised:
        gov.promotions.promote(owner, PROJECT, v1, "prod")
    assert "--url" in raised.value.hint
    with pytest.raises(AuthenticationError):
        gov.identity.authenticate("hm_" + "n" * 40)
