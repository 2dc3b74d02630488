"""Separation of duties (issue: one admin alone must not reach prod), on both backends.

The attack: one admin creates two approvers, mints their tokens and signs off as them.
Sensitive steps (handing out admin/approver, prod grants, tokens for others, the mode itself)
now wait for a second admin, or are refused for the acting admin's own benefit; sign-offs
count only while their approver holds the role and is enabled; late approvers are flagged;
tokens die with the token that minted them and obey a per-role maximum lifetime.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from harbourmaster.errors import (
    AuthenticationError,
    ConfirmationRequiredError,
    InvalidInputError,
    PermissionDeniedError,
)
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow, UserRow
from served import serve_champion

from .helpers import PROJECT, SYSTEM, actor, create_users, live_server, train


@pytest.fixture
def gov(platform: Platform) -> Platform:
    create_users(platform)
    platform.identity.create_user(SYSTEM, "root2", ["admin"])
    return platform


def audit(platform: Platform, action: str) -> list[AuditEventRow]:
    with platform.db.reader() as session:
        return list(session.scalars(select(AuditEventRow).where(AuditEventRow.action == action)))


def user_exists(platform: Platform, name: str) -> bool:
    with platform.db.reader() as session:
        return session.scalar(select(UserRow).where(UserRow.name == name)) is not None


def pending_id(raised: pytest.ExceptionInfo[ConfirmationRequiredError]) -> int:
    return int(raised.value.hint.rsplit(" ", 1)[1])


def test_one_admin_alone_cannot_make_approvers_grant_prod_or_mint_tokens_for_others(gov):
    root = actor(gov, "root")
    with pytest.raises(ConfirmationRequiredError) as raised:
        gov.identity.create_user(root, "eve1", ["approver"])
    assert "to make eve1 approver needs a second admin: request" in raised.value.message
    assert raised.value.hint.startswith("another admin confirms it: harbourmaster users confirm ")
    assert not user_exists(gov, "eve1")

    with pytest.raises(ConfirmationRequiredError):
        gov.identity.set_roles(root, "dana", ["data-scientist", "approver"])
    assert actor(gov, "dana").roles == {"data-scientist"}
    with pytest.raises(ConfirmationRequiredError):
        gov.identity.grant(root, "otto", "prod", "deploy")
    assert actor(gov, "otto").grants == frozenset()
    with pytest.raises(ConfirmationRequiredError):
        gov.identity.create_token(root, "abe", "for-abe")

    # Steps that hand out no power over guarded environments need nobody else.
    assert gov.identity.create_user(root, "val", ["viewer"]).roles == ["viewer"]
    assert gov.identity.grant(root, "otto", "dev", "deploy").grants == ["dev:deploy"]
    assert gov.identity.create_token(root, "root", "mine").user == "root"

    pending = gov.duties.list_requests(root)
    assert [r.summary for r in reversed(pending)] == [
        "make eve1 approver",
        "make dana approver",
        "grant otto deploy on prod",
        "mint a token for abe",
    ]
    assert {row.outcome for row in audit(gov, "duty.request")} == {"pending"}


def test_a_second_admin_confirms_and_only_then_the_step_happens(gov):
    root, root2 = actor(gov, "root"), actor(gov, "root2")
    with pytest.raises(ConfirmationRequiredError) as raised:
        gov.identity.create_user(root, "eve1", ["approver"])
    request = pending_id(raised)

    # The requester cannot confirm their own request.
    with pytest.raises(PermissionDeniedError, match="made request"):
        gov.duties.decide(root, request, confirm=True)
    assert not user_exists(gov, "eve1")
    [denied] = [row for row in audit(gov, "duty.confirm") if row.outcome == "denied"]
    assert denied.actor == "root"

    decision = gov.duties.decide(root2, request, confirm=True)
    assert decision.request.status == "confirmed" and decision.request.decided_by == "root2"
    assert decision.user is not None and decision.user.roles == ["approver"]
    [created] = audit(gov, "user.create")[-1:]
    assert created.actor == "root2"
    assert created.details == {"request": request, "requested_by": "root"}

    # Decided once: a second confirmation is a conflict, not a second user.
    with pytest.raises(Exception, match="is confirmed"):
        gov.duties.decide(root2, request, confirm=True)

    # A token for another user: the confirming admin receives the secret, once.
    with pytest.raises(ConfirmationRequiredError) as raised:
        gov.identity.create_token(root, "eve1", "eve-laptop")
    decision = gov.duties.decide(root2, pending_id(raised), confirm=True)
    assert decision.token is not None and decision.token.user == "eve1"
    assert gov.identity.authenticate(decision.token.token).name == "eve1"


def test_nobody_confirms_a_step_for_themselves_and_rejections_end_requests(gov):
    root, root2 = actor(gov, "root"), actor(gov, "root2")
    with pytest.raises(ConfirmationRequiredError) as raised:
        gov.identity.grant(root, "root2", "prod", "deploy")
    with pytest.raises(PermissionDeniedError, match="is for root2"):
        gov.duties.decide(root2, pending_id(raised), confirm=True)
    assert actor(gov, "root2").grants == frozenset()

    with pytest.raises(ConfirmationRequiredError) as raised:
        gov.identity.create_user(root, "mallory", ["admin"])
    rejected = gov.duties.decide(root2, pending_id(raised), confirm=False)
    assert rejected.request.status == "rejected"
    assert not user_exists(gov, "mallory")


def test_not_for_self_mode_refuses_only_what_benefits_the_acting_admin(gov):
    root, root2 = actor(gov, "root"), actor(gov, "root2")
    with pytest.raises(ConfirmationRequiredError) as raised:
        gov.duties.set_mode(root, "not-for-self")
    assert gov.duties.settings().mode == "two-admins"
    gov.duties.decide(root2, pending_id(raised), confirm=True)
    assert gov.duties.settings().mode == "not-for-self"

    with pytest.raises(PermissionDeniedError, match="cannot give themselves"):
        gov.identity.grant(root, "root", "prod", "deploy")
    with pytest.raises(PermissionDeniedError, match="cannot give themselves"):
        gov.identity.set_roles(root, "root", ["admin", "approver"])
    denied = [row for row in audit(gov, "grant.add") if row.outcome == "denied"]
    assert denied and denied[0].details["reason"] == "separation of duties: not for oneself"

    assert gov.identity.grant(root, "otto", "prod", "deploy").grants == ["prod:deploy"]
    with pytest.raises(InvalidInputError, match="unknown separation-of-duties mode"):
        gov.duties.set_mode(root, "anything-goes")


def test_sign_offs_count_only_while_the_approver_holds_the_role_and_is_enabled(gov, demo_project):
    dana, olga = actor(gov, "dana"), actor(gov, "olga")
    number = train(gov, demo_project)
    gov.deployments.deploy(dana, PROJECT, number, "dev")
    serve_champion(gov, PROJECT, "dev")
    gov.promotions.promote(dana, PROJECT, number, "test")
    for name in ("abe", "amy"):
        gov.approvals.decide(actor(gov, name), PROJECT, number, "prod", "approve", "fine")

    def approvals_verdict() -> str:
        [verdict] = [v for v in gov.promotions.check(SYSTEM, PROJECT, number, "prod") if v.gate == "approvals"]
        return ("passed: " if verdict.passed else "failed: ") + verdict.reason

    assert approvals_verdict() == "passed: signed off by abe, amy"
    gov.identity.set_disabled(SYSTEM, "amy", True)
    assert approvals_verdict() == (
        "failed: v1 has 1 valid approval(s); needs 1 more from role approver"
        " (amy's sign-off no longer counts: disabled)"
    )
    gov.identity.set_disabled(SYSTEM, "amy", False)
    gov.identity.set_roles(SYSTEM, "abe", ["viewer"])
    assert "abe's sign-off no longer counts: role removed" in approvals_verdict()
    with pytest.raises(Exception, match="refused"):
        gov.promotions.promote(olga, PROJECT, number, "prod")

    # An approver made after the version was registered is flagged ...
    gov.identity.create_user(SYSTEM, "newbie", ["approver"])
    gov.approvals.decide(actor(gov, "newbie"), PROJECT, number, "prod", "approve", "ok")
    assert approvals_verdict() == (
        "passed: signed off by amy, newbie (abe's sign-off no longer counts: role removed; "
        "flagged: newbie became approver after v1 was registered)"
    )
    pending = gov.approvals.pending(SYSTEM, PROJECT)
    assert any("newbie (approve, joined late)" in item.approvals for item in pending)

    # ... or, where the environment says so, not counted at all.
    config = gov.environments.get("prod").config.model_dump(mode="json")
    config["approvals"]["late_approvers"] = "exclude"
    gov.environments.configure(SYSTEM, "prod", config)
    assert approvals_verdict().startswith("failed: v1 has 1 valid approval(s)")
    assert "not counted: newbie became approver after v1" in approvals_verdict()


def test_tokens_minted_with_a_token_die_with_it_and_never_outlive_it(gov):
    with live_server(gov) as live:
        parent = gov.identity.create_token(SYSTEM, "olga", "laptop", expires_in=timedelta(hours=2))
        with live.http(None) as http:
            http.headers["Authorization"] = f"Bearer {parent.secret}"
            answer = http.post("/api/v1/tokens", json={"name": "ci", "expires_in_days": 30})
            assert answer.status_code == 201, answer.text
            child = answer.json()
            assert datetime.fromisoformat(child["expires_at"]) <= parent.expires_at
            listed = {t["id"]: t for t in http.get("/api/v1/tokens").json()}
            assert listed[child["id"]]["parent_id"] == parent.id

        with live.http(None) as http:
            http.headers["Authorization"] = f"Bearer {child['token']}"
            assert http.get("/api/v1/whoami").status_code == 200
            gov.identity.revoke_token(SYSTEM, parent.id)
            refused = http.get("/api/v1/whoami")
            assert refused.status_code == 401
            assert f"the token that minted this one (id {parent.id}) was revoked" in refused.json()["error"]["message"]


def test_admins_set_a_maximum_token_lifetime_per_role(gov):
    root = actor(gov, "root")
    gov.duties.set_token_limit(root, "operator", 3600)
    with pytest.raises(InvalidInputError, match="may live at most 1h"):
        gov.identity.create_token(SYSTEM, "olga", "long", expires_in=timedelta(days=2))
    issued = gov.identity.create_token(SYSTEM, "olga", "default")
    assert issued.expires_at is not None
    assert issued.expires_at - datetime.now(UTC) <= timedelta(hours=1)
    [change] = audit(gov, "tokens.policy")
    assert change.after == {"max_lifetime_seconds": 3600}

    # A token older than a limit set later stops working.
    old = gov.identity.create_token(SYSTEM, "otto", "old")
    gov.duties.set_token_limit(root, "operator", 1)
    time.sleep(1.2)
    with pytest.raises(AuthenticationError, match="older than its roles allow"):
        gov.identity.authenticate(old.secret)
    with pytest.raises(PermissionDeniedError):
        gov.duties.set_token_limit(actor(gov, "dana"), "operator", None)


def test_over_http_a_pending_step_is_202_and_the_sdk_raises_it(gov):
    from harbourmaster.client import Client

    with live_server(gov) as live:
        live.tokens["root"] = gov.identity.create_token(SYSTEM, "root", "t").secret
        with live.http("root") as http:
            answer = http.post("/api/v1/users", json={"name": "eve1", "roles": ["approver"]})
            assert answer.status_code == 202
            assert answer.json()["error"]["code"] == "confirmation_required"
            request = int(answer.json()["error"]["hint"].rsplit(" ", 1)[1])
            listed = http.get("/api/v1/duty-requests").json()
            assert [item["id"] for item in listed] == [request]

        root2 = Client(url=live.url, token=gov.identity.create_token(SYSTEM, "root2", "t").secret)
        assert root2.decide_request(request).request.status == "confirmed"
        assert root2.duty_requests() == []
        with pytest.raises(ConfirmationRequiredError, match="to make eve2 approver needs a second admin"):
            Client(url=live.url, token=live.tokens["root"]).create_user("eve2", ["approver"])

        # A replica credential of prod (its bundles, its prediction log): one admin asks, another confirms
        # and receives the secret once; dev's is minted at once.
        root = Client(url=live.url, token=live.tokens["root"])
        assert root.create_replica_credential("dev", "web").secret.startswith("hmr_")
        with pytest.raises(ConfirmationRequiredError, match="replica credential for guarded environment prod") as asked:
            root.create_replica_credential("prod", "web", expires_in_days=1)
        assert [c.environment for c in root2.replica_credentials()] == ["dev"]
        decision = root2.decide_request(pending_id(asked))
        assert decision.credential is not None and decision.credential.environment == "prod"
        replica = gov.dataplane.authenticate(hashlib.sha256(decision.credential.secret.encode()).hexdigest())
        assert (replica.kind, replica.environment) == ("replica", "prod")
        [minted] = audit(gov, "replica-credential.create")[-1:]
        assert (minted.actor, minted.environment, minted.details["requested_by"]) == ("root2", "prod", "root")


def test_one_admin_alone_cannot_disable_or_demote_the_other_admin_or_an_approver(gov):
    """Else one admin disables the other and is left holding every power alone."""
    root, root2 = actor(gov, "root"), actor(gov, "root2")
    with pytest.raises(ConfirmationRequiredError) as raised:
        gov.identity.set_disabled(root, "root2", True)
    assert "to disable root2 (admin) needs a second admin" in raised.value.message
    with gov.db.reader() as session:
        assert session.scalar(select(UserRow.disabled).where(UserRow.name == "root2")) is False
    # The subject cannot confirm their own removal either: with two admins, a third (or break glass) decides.
    with pytest.raises(PermissionDeniedError, match="is for root2"):
        gov.duties.decide(root2, pending_id(raised), confirm=True)

    with pytest.raises(ConfirmationRequiredError, match="take admin away from root2"):
        gov.identity.set_roles(root, "root2", ["viewer"])
    with gov.db.reader() as session:
        assert session.scalar(select(UserRow.roles).where(UserRow.name == "root2")) == ["admin"]

    # An approver disabled by one admin would stop countering that admin's promotions: a second admin confirms.
    with pytest.raises(ConfirmationRequiredError) as raised:
        gov.identity.set_disabled(root, "abe", True)
    decision = gov.duties.decide(root2, pending_id(raised), confirm=True)
    assert decision.user is not None and decision.user.disabled
    [disabled] = audit(gov, "user.disable")
    assert disabled.actor == "root2" and disabled.details["requested_by"] == "root"

    # What is not sensitive goes ahead at once: disabling a viewer, or oneself; demoting oneself.
    assert gov.identity.set_disabled(root, "vera", True).disabled
    assert gov.identity.set_roles(root2, "root2", ["admin", "viewer"]).roles == ["admin", "viewer"]
    assert gov.identity.set_disabled(root2, "root2", True).disabled
