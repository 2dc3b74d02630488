"""A live control plane on loopback with two admins, for attacks from the outside (over HTTP only)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from harbourmaster.api.app import create_app
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from loopback import serve_in_thread

SYSTEM = Actor.system("redteam")


@dataclass
class Outside:
    url: str
    tokens: dict[str, str]

    def http(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1", headers={"Authorization": f"Bearer {self.tokens[user]}"}, timeout=60
        )


@contextmanager
def two_admins(platform: Platform) -> Iterator[Outside]:
    """Admins ``a1`` and ``a2`` (as ``harbourmaster init --admin a1 --admin a2`` makes them) on a live server."""
    tokens = {}
    for name in ("a1", "a2"):
        platform.identity.create_user(SYSTEM, name, ["admin"])
        tokens[name] = platform.identity.create_token(SYSTEM, name, "init").secret
    with serve_in_thread(create_app(platform)) as url:
        yield Outside(url, tokens)


def pending_request(response: httpx.Response) -> int:
    """The id of the duty request a 202 answer names."""
    assert response.status_code == 202, response.text
    assert response.json()["error"]["code"] == "confirmation_required"
    return int(response.json()["error"]["message"].split("request ")[1].split()[0])
