"""A canary rollout survives a restart of the control plane: a real `harbourmaster server` on PostgreSQL runs
the rollout controller, two replicas serve prod under continuous load, the server is stopped mid-rollout
and started again, and the rollout goes on from the step it was at (not from the start) to completion,
with no failed request. Then `harbourmaster rollback` (over the API) puts the old champion back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import make_settings
from tests.deploy.rollout_support import FAST, SYSTEM, Load, moody_in_prod, wait_for
from tests.serving.projects import MOODY

from harbourmaster.services.platform import Platform
from harbourmaster.serving.server import ServerThread
from loopback import free_port

pytestmark = pytest.mark.slow


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
    return {**env, "HARBOURMASTER_HOME": str(home), "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **extra}


def _server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "harbourmaster", "server", "--port", str(port)], env=env, stdout=handle, stderr=handle
    )
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "harbourmaster", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_rollout_resumes_from_its_step_after_a_control_plane_restart(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARBOURMASTER_TRAFFIC_SAMPLE_SECONDS", "0")
    settings = make_settings(tmp_path / "home", postgres_url)
    platform = Platform(settings)
    versions = moody_in_prod(platform, tmp_path)
    platform.identity.create_user(SYSTEM, "root", ["admin"])
    token = platform.identity.create_token(SYSTEM, "root", "tests").secret
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = _env(
        settings.home,
        HARBOURMASTER_DATABASE_URL=postgres_url,
        HARBOURMASTER_ROLLOUT_TICK="0.3",
        HARBOURMASTER_MONITOR_INTERVAL="0",
    )
    operator = _env(tmp_path / "operator", HARBOURMASTER_URL=url, HARBOURMASTER_TOKEN=token)
    log = tmp_path / "server.log"
    server = _server(server_env, port, log)
    load = None
    try:
        with ServerThread(platform, "prod", FAST) as one, ServerThread(platform, "prod", FAST) as two:
            for replica in (one, two):
                wait_for(lambda r=replica: MOODY in r.replica.table.routes, 60, "the replicas to load moody")
            load = Load([one.url, two.url], threads=3, pause=0.02, max_requests=6000, max_seconds=100).start()
            args = ["--strategy", "canary", "--steps", "20,50,80,100", "--bake", "3s", "--min-requests", "20"]
            said = _cli(operator, "promote", MOODY, str(versions["bad"]), "--to", "prod", *args, "--url", url)
            assert "canary rollout" in said, said
            [rollout] = json.loads(_cli(operator, "rollouts", "--active", "--json", "--url", url))

            def show() -> dict:
                return json.loads(_cli(operator, "rollouts", "show", str(rollout["id"]), "--json", "--url", url))

            wait_for(lambda: show_embedded(platform, rollout["id"]).step >= 1, 30, "the first step to pass", 0.05)
            _stop(server)  # mid-rollout (a graceful stop may let it take one more step)
            held = show_embedded(platform, rollout["id"])
            assert held.state == "running" and 1 <= held.step <= 2, held
            time.sleep(1.0)  # the replicas serve on without a control plane
            server = _server(server_env, port, log)
            wait_for(
                lambda: show_embedded(platform, rollout["id"]).state != "running",
                40,
                lambda: f"the rollout to finish: {show_embedded(platform, rollout['id'])}, {load.sent} sent",
            )
            done = show()
            load.stop()  # before the replicas stop
        assert done["state"] == "completed", (done["reason"], done["events"])
        kinds = [event["kind"] for event in done["events"]]
        assert kinds == ["started", *["advanced"] * 3, "completed"], kinds  # resumed, not started again
        weights = [
            e.state["challenger"]["weight"]
            for e in platform.deployments.history(SYSTEM, MOODY, "prod")
            if e.action == "set-challenger"
        ]
        assert weights[::-1] == [20.0, 50.0, 80.0, 100.0]  # each step put in place once, in order
        assert load.failures == [] and set(load.statuses) == {200}, load.failures[:3]
        assert platform.deployments.get(SYSTEM, MOODY, "prod").champion.number == versions["bad"]

        _cli(operator, "rollback", MOODY, "--env", "prod", "--url", url)
        assert platform.deployments.get(SYSTEM, MOODY, "prod").champion.number == versions["good"]
    finally:
        if load is not None:
            load.stop()
        _stop(server)
        platform.close()


def show_embedded(platform: Platform, rollout_id: int):
    return platform.rollouts.get(SYSTEM, rollout_id)
