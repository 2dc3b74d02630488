"""Make a version serve in an environment for real: a replica on loopback loads it and answers with it.

The order gate counts a version as having served in an environment only when a replica there answered
with it (its heartbeat says so); tests that promote onwards use this instead of a bare deploy.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.server import ServerThread

SYSTEM = Actor.system("tests")


def any_record(platform: Platform, project: str, number: int) -> dict[str, Any]:
    """A valid record for a version: the middle of each numeric range, the first category."""
    detail = platform.registry.get_version(SYSTEM, project, number)
    record: dict[str, Any] = {}
    for column in detail.input_schema["columns"]:
        if column.get("categories"):
            record[column["name"]] = column["categories"][0]
        elif column.get("minimum") is not None and column.get("maximum") is not None:
            record[column["name"]] = round((column["minimum"] + column["maximum"]) / 2, 4)
        else:
            record[column["name"]] = 0
    return record


def serve_champion(platform: Platform, project: str, environment: str, timeout: float = 60.0) -> int:
    """A replica of ``environment`` answers one request with the champion, then stops (its last heartbeat
    reports the answer); returns the version that answered."""
    number = platform.deployments.get(SYSTEM, project, environment).champion.number
    with ServerThread(platform, environment) as server:
        deadline = time.monotonic() + timeout
        while project not in server.replica.table.routes:
            assert time.monotonic() < deadline, f"the replica of {environment} did not load {project}"
            time.sleep(0.05)
        answer = httpx.post(
            f"{server.url}/v1/projects/{project}/predict", json=any_record(platform, project, number), timeout=30
        )
        assert answer.status_code == 200 and answer.json()["path"] == "champion", answer.text
        assert answer.json()["version"] == number
    return number
