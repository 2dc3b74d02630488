"""Shared helpers for governance tests: a live control plane on loopback, and one user per role."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from harbourmaster.api.app import create_app
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(platform), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-governance", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Live(url=f"http://127.0.0.1:{port}", platform=platform)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the test server did not stop"


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
