"""Attack: a replica credential outlives the admin token that minted it.

Found by the red-team pass: an admin's token mints a prod replica credential over HTTP; the token is
then revoked (say after a compromise) and the credential must stop working, as people's tokens die with
the token that minted them (issue 7, item 5). Replica credentials now record their minting token
(``parent_token_id``) and authentication walks the same chain.
"""

from __future__ import annotations

import httpx

from harbourmaster.services.platform import Platform

from .helpers import pending_request, two_admins


def test_a_replica_credential_dies_with_the_token_that_minted_it(platform: Platform) -> None:
    with two_admins(platform) as outside, outside.http("a1") as a1, outside.http("a2") as a2:
        minted = a1.post("/tokens", json={"name": "short"})
        assert minted.status_code == 201, minted.text
        headers = {"Authorization": f"Bearer {minted.json()['token']}"}
        with httpx.Client(base_url=f"{outside.url}/api/v1", headers=headers, timeout=60) as short:
            dev = short.post("/replica-credentials", json={"environment": "dev", "name": "web"})
            assert dev.status_code == 201, dev.text
            # prod: a second admin confirms and receives it
            asked = pending_request(short.post("/replica-credentials", json={"environment": "prod", "name": "web"}))
        confirmed = a2.post(f"/duty-requests/{asked}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        secrets = {"dev": dev.json()["token"], "prod": confirmed.json()["credential"]["secret"]}
        for environment, secret in secrets.items():
            with _replica(outside.url, secret) as replica:
                assert replica.get(f"/dataplane/{environment}/state").status_code == 200

        assert a1.delete(f"/tokens/{minted.json()['id']}").status_code == 200
        for environment, secret in secrets.items():
            with _replica(outside.url, secret) as replica:
                refused = replica.get(f"/dataplane/{environment}/state")
                assert refused.status_code == 401, refused.text
                error = refused.json()["error"]
                assert f"the token that minted this one (id {minted.json()['id']}) was revoked" in error["message"]
                assert "replica-tokens create" in error["hint"]
        listed = {item["environment"]: item for item in a1.get("/replica-credentials").json()}
        assert listed["prod"]["parent_token_id"] == minted.json()["id"]


def _replica(url: str, secret: str) -> httpx.Client:
    return httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {secret}"}, timeout=60)
