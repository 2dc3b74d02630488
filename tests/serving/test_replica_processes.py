"""Replicas as real processes / side by side: SIGTERM drains the log, two replicas on PostgreSQL converge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import make_settings
from tests.serving.helpers import PROJECT, record, train_versions, wait_for_revision

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread, free_port
from harbourmaster.store.prediction_log import PredictionLog

ACTOR = Actor.local_owner()


@pytest.mark.slow
def test_sigterm_drains_and_flushes_every_prediction(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(make_settings(home))
    versions = train_versions(platform, tmp_path)
    platform.deployments.deploy(ACTOR, PROJECT, versions["good"], "dev")
    row = record(platform)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "harbourmaster", "serve", "--env", "dev", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        sent = 0
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(300):
                assert client.post(f"/v1/projects/{PROJECT}/predict", json=row).status_code == 200
                sent += 1
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        log = process.stdout.read().decode() if process.stdout else ""
        assert code in (0, -signal.SIGTERM), log  # uvicorn re-raises the signal after a clean shutdown
        assert "Application shutdown complete" in log
    finally:
        if process.poll() is None:
            process.kill()
    assert PredictionLog(platform.artifacts).count("dev", PROJECT) == sent
    stopped = [r for r in platform.replicas.list(ACTOR, "dev", include_stopped=True) if r.status == "stopped"]
    assert stopped
    platform.close()


@pytest.mark.slow
def test_two_replicas_on_postgresql_follow_the_desired_state(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", postgres_url)
    control = Platform(settings)
    versions = train_versions(control, tmp_path)
    state = control.deployments.deploy(ACTOR, PROJECT, versions["good"], "dev")
    first_platform, second_platform = Platform(settings), Platform(settings)
    options = ReplicaOptions(poll_seconds=0.2, heartbeat_seconds=0.5)
    with ServerThread(first_platform, "dev", options) as first, ServerThread(second_platform, "dev", options) as second:
        for server in (first, second):
            wait_for_revision(server, state.revision)
        row = record(control)
        state = control.deployments.deploy(ACTOR, PROJECT, versions["other"], "dev")
        started = time.monotonic()
        for server in (first, second):
            wait_for_revision(server, state.revision, timeout=10)
        assert time.monotonic() - started < 10
        for server in (first, second):
            body = httpx.post(f"{server.url}/v1/projects/{PROJECT}/predict", json=row).json()
            assert body["version"] == versions["other"]
        time.sleep(0.8)
        alive = {r.id for r in control.replicas.list(ACTOR, "dev") if r.status == "alive"}
        assert {first.replica.id, second.replica.id} <= alive
    assert PredictionLog(control.artifacts).count("dev", PROJECT) == 2
    for platform in (first_platform, second_platform, control):
        platform.close()
