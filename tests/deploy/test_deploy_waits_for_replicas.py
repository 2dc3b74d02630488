"""`deploy` waits for the environment's replicas and says which loaded or refused the change."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import make_settings
from tests.serving.helpers import stop_process
from tests.serving.sleepy import SLEEPY, train_sleepy

from harbourmaster.core.rollout_watch import rollout_progress
from harbourmaster.schemas import ReplicaInfo
from harbourmaster.services.platform import Platform
from loopback import free_port

from .test_deploy_and_fallback import cli


def replica(status: str = "alive", loaded: dict | None = None, refused: dict | None = None) -> ReplicaInfo:
    now = "2026-01-01T00:00:00Z"
    return ReplicaInfo.model_validate(
        {
            "id": f"host-{status}",
            "environment": "dev",
            "host": "host",
            "pid": 1,
            "status": status,
            "loaded": loaded or {},
            "details": {"refused": refused or {}},
            "started_at": now,
            "last_seen": now,
        }
    )


def test_rollout_progress_reads_each_live_replica() -> None:
    loaded = replica(loaded={"p": {"revision": 4, "champion": {"version": 2}}})
    refused = replica("alive", {"p": {"revision": 2}}, {"p": {"revision": 4, "error": "LoadTimeout: stuck"}})
    refused = refused.model_copy(update={"id": "host-refused"})
    pending = replica("alive", {"p": {"revision": 3}}).model_copy(update={"id": "host-pending"})
    gone = replica("stale", {"p": {"revision": 1}})
    starting = replica("starting")  # still in its first reconcile: it counts, as pending
    progress = rollout_progress([loaded, refused, pending, gone, starting], "p", 4)
    outcomes = {item.replica: item.outcome for item in progress.replicas}
    assert outcomes == {
        "host-alive": "loaded",
        "host-refused": "refused",
        "host-pending": "pending",
        "host-starting": "pending",
    }
    assert not progress.settled and "1 of 4 replica(s) loaded it, 1 refused, 2 pending" in progress.summary()
    described = {item.replica: item.describe() for item in progress.replicas}
    assert "refused it, still serving revision 2: LoadTimeout: stuck" in described["host-refused"]
    assert described["host-starting"] == "host-starting is starting and has not loaded it yet"
    assert rollout_progress([gone], "p", 4).replicas == ()  # only live replicas count
    assert rollout_progress([gone], "p", 4).summary() == "revision 4: no replica up yet"


def launch_replica(home: Path, port: int) -> subprocess.Popen[bytes]:
    """``harbourmaster serve --env dev &``: the process is started, not waited for."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update(
        HARBOURMASTER_HOME=str(home),
        HARBOURMASTER_SERVE_LOAD_TIMEOUT_SECONDS="8",
        HARBOURMASTER_SERVE_START_TIMEOUT_SECONDS="1",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "harbourmaster", "serve", "--env", "dev", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
def test_deploy_waits_for_the_replica_and_names_what_it_did(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(make_settings(home))
    try:
        versions = train_sleepy(platform, tmp_path)
    finally:
        platform.close()

    started = time.monotonic()
    alone = cli(home, "deploy", SLEEPY, str(versions["fast"]), "--timeout", "30", cwd=tmp_path)
    assert alone.returncode == 0 and "no replica of dev is running (none started within 5 s)" in alone.stdout
    assert time.monotonic() - started < 25  # it looks for a starting replica for a few seconds, no longer

    # `harbourmaster serve &` then `harbourmaster deploy` at once: the replica is still importing, then
    # says "starting" while it loads; deploy waits for it instead of finding no replica.
    process = launch_replica(home, free_port())
    try:
        started = time.monotonic()
        swapped = cli(home, "deploy", SLEEPY, str(versions["slow"]), "--timeout", "60", cwd=tmp_path)
        assert swapped.returncode == 0, swapped.stdout + swapped.stderr
        assert "no replica" not in swapped.stdout and "loaded it (serving revision 2)" in swapped.stdout
        assert "all 1 replica(s) of dev serve revision 2" in swapped.stdout
        assert time.monotonic() - started < 60

        (tmp_path / "hang").touch()  # this version's warm-up now never ends: the replica refuses it
        refused = cli(home, "deploy", SLEEPY, str(versions["hang"]), "--timeout", "90", cwd=tmp_path)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "refused it, still serving revision 2" in refused.stdout and "LoadTimeout" in refused.stdout
        assert "1 of 1 replica(s) of dev refused revision 3" in refused.stderr
        assert "harbourmaster rollback sleepy --env dev" in refused.stderr

        quick = cli(home, "deploy", SLEEPY, str(versions["fast"]), "--no-wait", cwd=tmp_path)
        assert quick.returncode == 0 and "replica" not in quick.stdout.replace("replicas pick it up", "")
        (tmp_path / "hang").unlink()
    finally:
        stop_process(process)
