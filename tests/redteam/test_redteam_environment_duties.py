"""Attack: one admin alone reaches prod by reconfiguring it (unguarded, no gates, no sign-offs).

Found by the red-team pass over HTTP: ``PUT /environments/prod`` with ``{"guarded": false, "gates": []}``
went through at once for a single admin, after which that admin could deploy to prod with no grant and
no approver. Moving test after prod (so that prod follows dev, and test's gates drop out of prod's
path) went through alone too. Changing how a guarded environment is governed, or what comes before
it, now waits for a second admin.
"""

from __future__ import annotations

from harbourmaster.services.platform import Platform

from .helpers import SYSTEM, pending_request, two_admins

OPEN_PROD = {"guarded": False, "allow_skip": True, "gates": []}


def _entries(platform: Platform, action: str) -> list[dict]:
    return [entry for entry in platform.audit.entries(SYSTEM) if entry["action"] == action]


def test_one_admin_cannot_unguard_prod_alone(platform: Platform) -> None:
    with two_admins(platform) as outside, outside.http("a1") as a1, outside.http("a2") as a2:
        before = platform.environments.get("prod").config
        request_id = pending_request(a1.put("/environments/prod", json={"config": OPEN_PROD}))
        moved = a1.put("/environments/prod", json={"config": before.model_dump(mode="json"), "position": 0})
        moved_id = pending_request(moved)
        prod = platform.environments.get("prod")
        assert prod.config == before and prod.config.guarded and prod.position == 2

        # Its author cannot confirm it; a second admin can, and the change names the request.
        own = a1.post(f"/duty-requests/{request_id}/confirm")
        assert own.status_code == 403, own.text
        assert platform.environments.get("prod").config.guarded
        confirmed = a2.post(f"/duty-requests/{request_id}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["environment"]["config"]["guarded"] is False
        assert a2.post(f"/duty-requests/{moved_id}/reject").status_code == 200
        assert platform.environments.get("prod").position == 2

        # Service-level and CLI-level changes that do not touch governance (an SLA) still happen at once.
        sla = a1.put("/environments/test", json={"config": {"sla": {"p99_ms": 40}}})
        assert sla.status_code == 200, sla.text

    [configured] = [e for e in _entries(platform, "environment.configure") if e["environment"] == "prod"]
    assert configured["actor"] == "a2"
    assert configured["details"] == {"moved": False, "request": request_id, "requested_by": "a1"}
    assert configured["before"]["config"]["guarded"] is True and configured["after"]["config"]["guarded"] is False
    assert [e["outcome"] for e in _entries(platform, "duty.request")] == ["pending", "pending"]


def test_not_for_self_refuses_unguarding_prod(platform: Platform) -> None:
    platform.duties.apply_mode(SYSTEM, "not-for-self")
    with two_admins(platform) as outside, outside.http("a1") as a1:
        refused = a1.put("/environments/prod", json={"config": OPEN_PROD})
        assert refused.status_code == 403, refused.text
        assert platform.environments.get("prod").config.guarded
    [denied] = _entries(platform, "environment.configure")
    assert (denied["actor"], denied["outcome"], denied["target"]) == ("a1", "denied", "environment:prod")


def test_one_admin_cannot_change_what_comes_before_prod_alone(platform: Platform) -> None:
    """Moving test after prod makes dev prod's predecessor: test's gates drop out of prod's path."""
    with two_admins(platform) as outside, outside.http("a1") as a1:
        config = platform.environments.get("test").config.model_dump(mode="json")
        moved = a1.put("/environments/test", json={"config": config, "position": 5})
        assert moved.status_code == 202, moved.text
        assert [env.name for env in platform.environments.list()] == ["dev", "test", "prod"]


def test_one_admin_cannot_give_a_disabled_approver_their_sign_offs_back_alone(platform: Platform) -> None:
    """Disabling an approver withdraws their sign-offs; enabling them again alone would restore them at will."""
    platform.identity.create_user(SYSTEM, "abe", ["approver"])
    platform.identity.create_user(SYSTEM, "vera", ["viewer"])
    with two_admins(platform) as outside, outside.http("a1") as a1, outside.http("a2") as a2:
        # Disabling an approver is itself a second admin's decision (one admin must not silence a counter-signature).
        disabling = pending_request(a1.put("/users/abe/disabled", json={"disabled": True}))
        assert not _disabled(platform, "abe")
        assert a2.post(f"/duty-requests/{disabling}/confirm").status_code == 200
        assert _disabled(platform, "abe")
        request_id = pending_request(a1.put("/users/abe/disabled", json={"disabled": False}))
        assert _disabled(platform, "abe")
        confirmed = a2.post(f"/duty-requests/{request_id}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        assert not _disabled(platform, "abe")
        # People without power are enabled at once.
        assert a1.put("/users/vera/disabled", json={"disabled": True}).status_code == 200
        assert a1.put("/users/vera/disabled", json={"disabled": False}).status_code == 200


def _disabled(platform: Platform, name: str) -> bool:
    return next(user.disabled for user in platform.identity.list_users(SYSTEM) if user.name == name)
