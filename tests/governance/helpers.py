"""Shared helpers for governance tests: a live control plane on loopback, and one user per role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harbourmaster.api.app import create_app
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from loopback import serve_in_thread

PROJECT = "breast-cancer"
SYSTEM = Actor.system("tests")

# name -> (roles, grants as (environment, permission))
USERS: dict[str, tuple[list[str], list[tuple[str, str]]]] = {
    "vera": (["viewer"], []),
    "dana": (["data-scientist"], []),
    "otto": (["operator"], []),  # an operator without any grant
    "olga": (["operator"], [("prod", "deploy"), ("prod", "predict")]),  # the prod operator
    "abe": (["approver"], []),
    "amy": (["approver"], []),
    "audrey": (["auditor"], []),
    "root": (["admin"], []),
}


@dataclass
class Live:
    url: str
    platform: Platform
    tokens: dict[str, str] = field(default_factory=dict)

    def http(self, user: str | None) -> httpx.Client:
        """A client acting as ``user`` (None: no token at all)."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def live_server(platform: Platform) -> Iterator[Live]:
    """A real uvicorn server over ``platform`` on 127.0.0.1 (stopped, bounded, on exit)."""
    with serve_in_thread(create_app(platform)) as url:
        yield Live(url=url, platform=platform)


def create_users(platform: Platform) -> dict[str, str]:
    """Every user of ``USERS`` with its grants; returns name -> token (created by the platform)."""
    tokens = {}
    for name, (roles, grants) in USERS.items():
        platform.identity.create_user(SYSTEM, name, roles)
        for environment, permission in grants:
            platform.identity.grant(SYSTEM, name, environment, permission)
        tokens[name] = platform.identity.create_token(SYSTEM, name, "tests").secret
    return tokens


def actor(platform: Platform, name: str) -> Actor:
    return platform.identity.actor_for(name)


def train(platform: Platform, project_dir: Path, user: str = "dana") -> int:
    """Train the demo project as ``user``; returns the new version number."""
    return platform.training.train(actor(platform, user), project_dir).version.number
