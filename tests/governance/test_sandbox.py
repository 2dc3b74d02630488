"""Embedded mode is one person's sandbox: no guarded environment from it, and a shared store refuses it
(except ``init``, migrations and an audited break glass), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.errors import ConflictError, PermissionDeniedError
from harbourmaster.services import sandbox
from harbourmaster.services.platform import Platform
from served import serve_champion

from .helpers import PROJECT, SYSTEM


def audit_actions(settings: Settings) -> list[tuple[str, str, str]]:
    platform = Platform(settings)
    try:
        return [(e["action"], e["actor"], e["outcome"]) for e in platform.audit.entries(SYSTEM)]
    finally:
        platform.close()


def serve(settings: Settings, environment: str) -> None:
    """A replica of ``environment`` answers one request with the champion (the order gate asks for that)."""
    platform = Platform(settings)
    try:
        serve_champion(platform, PROJECT, environment)
    finally:
        platform.close()


def test_embedded_mode_never_reaches_a_guarded_environment(settings: Settings, demo_project: Path, monkeypatch):
    monkeypatch.delenv(sandbox.BREAK_GLASS_VARIABLE, raising=False)
    with Client(settings=settings) as hm:
        assert hm.actor.kind == "local-owner"
        number = hm.train(demo_project).version.number
        hm.deploy(PROJECT, number, "dev")
        serve(settings, "dev")  # served: a replica of dev answered with it
        assert hm.promote(PROJECT, number, "test").outcome == "promoted"  # the sandbox's own environments work

        refusals = {
            "promote": lambda: hm.promote(PROJECT, number, "prod"),
            "deploy": lambda: hm.deploy(PROJECT, number, "prod"),
            "read": lambda: hm.history(PROJECT, "prod"),
            "reconfigure": lambda: hm.configure_environment("prod", {"guarded": False}),
        }
        for what, attempt in refusals.items():
            with pytest.raises(PermissionDeniedError) as raised:
                attempt()
            assert "prod is a guarded environment: embedded mode" in raised.value.message, what
            assert "--url" in raised.value.hint and "token" in raised.value.hint, what
        with pytest.raises(PermissionDeniedError, match="cannot sign off"):
            hm.approve(PROJECT, number, "test")
        assert hm.environments()[2].config.guarded  # prod is still guarded
        me = hm.whoami()
        assert me["mode"] == "embedded" and "one person's sandbox" in me["note"]
    denied = [(action, outcome) for action, actor, outcome in audit_actions(settings) if actor.startswith("local:")]
    assert ("denied.deploy", "denied") in denied and ("denied.read", "denied") in denied
    assert ("denied.administer", "denied") in denied and ("denied.approve", "denied") in denied


def test_a_shared_store_refuses_embedded_mode_but_init_and_break_glass(settings: Settings, monkeypatch):
    monkeypatch.delenv(sandbox.BREAK_GLASS_VARIABLE, raising=False)
    with Client(settings=settings) as hm:
        assert hm.projects() == []
    [token], _ = sandbox.init_store(settings, ["alice"])
    assert token.secret.startswith("hm_")

    with pytest.raises(PermissionDeniedError) as raised:
        Client(settings=settings)
    assert "this store is shared" in raised.value.message
    assert "--url" in raised.value.hint and sandbox.BREAK_GLASS_VARIABLE in raised.value.hint
    with pytest.raises(ConflictError, match="already has users"):
        sandbox.init_store(settings, ["mallory"])

    # Break glass: opens as break-glass:<os user>, audited with the reason; still no prod, still no sign-off.
    monkeypatch.setenv(sandbox.BREAK_GLASS_VARIABLE, "alice lost her token")
    with Client(settings=settings) as admin:
        assert admin.actor.kind == "break-glass" and admin.actor.name.startswith("break-glass:")
        issued = admin.create_token("alice", "recovered")
        assert issued.user == "alice"
        with pytest.raises(PermissionDeniedError, match="prod is a guarded environment"):
            admin.configure_environment("prod", {"guarded": False})
        assert "break-glass administration" in admin.whoami()["note"]

    # A replica (or scorer) started embedded on a shared store refuses, break glass or not.
    platform = Platform(settings)
    try:
        with pytest.raises(PermissionDeniedError, match="a serving replica cannot open it directly") as raised:
            sandbox.require_unshared(platform, "a serving replica")
        assert "control plane" in raised.value.hint
        entries = platform.audit.entries(SYSTEM)
    finally:
        platform.close()
    opened = [e for e in entries if e["action"] == "store.break_glass"]
    assert len(opened) == 1 and opened[0]["details"]["reason"] == "alice lost her token"
    assert opened[0]["details"]["os_user"] and opened[0]["actor"].startswith("break-glass:")
    assert [e["outcome"] for e in entries if e["action"] == "denied.embedded_open"] == ["denied", "denied"]
    assert [e["outcome"] for e in entries if e["action"] == "store.init"] == ["denied"]
    assert any(e["action"] == "token.create" and e["actor"].startswith("break-glass:") for e in entries)


def _cli(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update(HARBOURMASTER_HOME=str(home), **extra)
    return subprocess.run(
        [sys.executable, "-m", "harbourmaster", *args],
        cwd=home.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_cli_says_what_embedded_mode_is_and_refuses_a_shared_store(tmp_path: Path):
    home = tmp_path / "home"
    me = _cli(home, "whoami")
    assert me.returncode == 0 and "one person's sandbox" in me.stdout, me.stderr
    assert _cli(home, "init", "--admin", "alice").returncode == 0
    for args in (["projects"], ["serve", "--env", "dev", "--port", "1"]):
        refused = _cli(home, *args)
        assert refused.returncode == 1, refused.stdout
        assert "this store is shared" in refused.stderr and "--url" in refused.stderr
        assert "Traceback" not in refused.stderr
    glass = _cli(home, "whoami", HARBOURMASTER_BREAK_GLASS="recover the admin token")
    assert glass.returncode == 0 and "break-glass administration" in glass.stdout, glass.stderr
