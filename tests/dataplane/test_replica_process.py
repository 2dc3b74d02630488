"""The production layout for real: `harbourmaster server` (SQLite or PostgreSQL) in one process, and a
replica (`harbourmaster serve --url`), a batch scorer (`score --url`) and the operator's CLI in others,
none of which has the database URL in its environment or the control plane's home."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.services.platform import Platform
from loopback import free_port

from .helpers import OWNER, PROJECT, SYSTEM, a_record, train_two


def _environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
    return {**env, "HARBOURMASTER_HOME": str(home), **extra}


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "harbourmaster", *args], env=env, stdout=handle, stderr=handle)


def _wait(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in {timeout}s:\n{log.read_text()}")


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "harbourmaster", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.mark.slow
def test_a_replica_process_without_the_database_serves_swaps_and_logs(settings: Settings, tmp_path: Path) -> None:
    platform = Platform(settings)
    first, second = train_two(platform, tmp_path)
    platform.deployments.deploy(OWNER, PROJECT, first, "dev")
    platform.identity.create_user(SYSTEM, "root", ["admin"])
    root = platform.identity.create_token(SYSTEM, "root", "tests").secret
    record = a_record(platform)

    control_env = _environment(settings.home)
    if settings.database_url.startswith("postgresql"):
        control_env["HARBOURMASTER_DATABASE_URL"] = settings.database_url
    control_port, replica_port = free_port(), free_port()
    url = f"http://127.0.0.1:{control_port}"
    control = _start(["server", "--port", str(control_port)], control_env, tmp_path / "server.log")
    # The operator's machine and the replica's: homes of their own, no database URL anywhere.
    operator_env = _environment(tmp_path / "operator-home", HARBOURMASTER_URL=url, HARBOURMASTER_TOKEN=root)
    replica_home = tmp_path / "replica-home"
    replica = None
    try:
        _wait(f"{url}/health", control, tmp_path / "server.log")
        issued = json.loads(_cli(operator_env, "replica-tokens", "create", "--env", "dev", "--name", "web", "--json"))
        replica_env = _environment(replica_home, HARBOURMASTER_TOKEN=issued["token"])
        replica_log = tmp_path / "replica.log"
        replica = _start(["serve", "--env", "dev", "--port", str(replica_port), "--url", url], replica_env, replica_log)
        replica_url = f"http://127.0.0.1:{replica_port}"
        _wait(f"{replica_url}/v2/health/ready", replica, replica_log)
        environ = Path(f"/proc/{replica.pid}/environ").read_bytes().split(b"\0")
        assert not any(item.startswith(b"HARBOURMASTER_DATABASE_URL=") for item in environ)

        sent, versions = 0, []
        with httpx.Client(base_url=replica_url, timeout=30) as client, Client(url=url, token=root) as admin:
            for _ in range(10):
                response = client.post(f"/v1/projects/{PROJECT}/predict", json=record)
                assert response.status_code == 200, response.text
                versions.append(response.json()["version"])
                sent += 1
            admin.deploy(PROJECT, second, "dev")  # through the control plane's API
            deadline = time.monotonic() + 60
            while versions[-1] != second and time.monotonic() < deadline:
                response = client.post(f"/v1/projects/{PROJECT}/predict", json=record)
                assert response.status_code == 200, response.text  # no failed request during the swap
                versions.append(response.json()["version"])
                sent += 1
                time.sleep(0.05)
        assert versions[0] == first and versions[-1] == second, versions[-5:]

        replicas = json.loads(_cli(operator_env, "replicas", "--env", "dev", "--json"))
        assert [r["status"] for r in replicas] == ["alive"]
        assert replicas[0]["loaded"][PROJECT]["champion"]["version"] == second
        _stop(replica)
        assert replica.returncode in (0, -signal.SIGTERM), replica_log.read_text()

        logged = json.loads(_cli(operator_env, "predictions", PROJECT, "--env", "dev", "--limit", "1000", "--json"))
        assert len(logged) == sent
        assert {row["version"] for row in logged} == {first, second}

        # A batch scorer is a data-plane job too: the same credential, no database.
        rows = pd.DataFrame([record] * 4)
        rows.to_csv(tmp_path / "in.csv", index=False)
        args = ["score", PROJECT, "--env", "dev", "-i", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv")]
        run = json.loads(_cli(replica_env, *args, "--url", url, "--json"))
        assert run["status"] == "succeeded" and run["rows_out"] == 4 and run["version_number"] == second
        assert len(pd.read_csv(tmp_path / "out.csv")) == 4
    finally:
        if replica is not None:
            _stop(replica)
        _stop(control)
        platform.close()
    assert not (replica_home / "harbourmaster.db").exists()
    assert not (tmp_path / "operator-home" / "harbourmaster.db").exists()
