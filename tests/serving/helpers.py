"""Shared helpers for serving tests: a trained demo project with a normal and a faulty version."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from harbourmaster.demo.story import write_demo_project
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.server import ServerThread

PROJECT = "breast-cancer"
FLAG = 12.345  # a "mean texture" the faulty version's prepare step refuses

FAULTY_PREPARE = f'''

_original_prepare = prepare


def prepare(records):
    """Like the original, but raises on a flagged input (a bug that shipped)."""
    if (records["mean texture"] == {FLAG!r}).any():
        raise ValueError("flagged input")
    return _original_prepare(records)
'''


def train_versions(platform: Platform, folder: Path) -> dict[str, int]:
    """v1 normal, v2 faulty (raises on FLAG), v3 normal."""
    actor = Actor.local_owner()
    project = folder / "project"
    write_demo_project(project)
    first = platform.training.train(actor, project).version.number
    original = (project / "features.py").read_text()
    (project / "features.py").write_text(original + FAULTY_PREPARE)
    faulty = platform.training.train(actor, project).version.number
    (project / "features.py").write_text(original)
    third = platform.training.train(actor, project).version.number
    return {"good": first, "faulty": faulty, "other": third}


def record(platform: Platform, **changes: Any) -> dict[str, Any]:
    """A valid record: the reference row of the latest version."""
    detail = platform.registry.get_version(Actor.local_owner(), PROJECT, "latest")
    columns = detail.input_schema["columns"]
    row = {c["name"]: round((c["minimum"] + c["maximum"]) / 2, 4) for c in columns}
    row.update(changes)
    return row


def wait_for_revision(server: ServerThread, revision: int, timeout: float = 20.0) -> None:
    """Block until the replica serves ``revision`` of the project (or the failure is recorded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        route = server.replica.table.routes.get(PROJECT)
        if route is not None and route.revision >= revision:
            return
        failed = server.replica.failures.get(PROJECT)
        if failed and failed["revision"] >= revision:
            return
        time.sleep(0.05)
    raise AssertionError(f"replica did not reach revision {revision}")


STARTED: list[subprocess.Popen[bytes]] = []  # serve processes of the running test (reaped by tests/serving/conftest.py)


def reap_started() -> None:
    """SIGKILL the process group of every serve process a test started and left running (a failed test)."""
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


def serve_process(home: Path, port: int, workers: int = 1, environment: str = "dev") -> subprocess.Popen[bytes]:
    """``harbourmaster serve`` in its own process group (so a signal reaches every worker), waited until every
    worker is ready."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(home)
    command = [sys.executable, "-m", "harbourmaster", "serve", "--env", environment, "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    STARTED.append(process)
    seen: set[str] = set()  # replica ids of ready workers (each new connection goes to either worker)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"serve exited with {process.returncode}: {output}")
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=2).json()
            if status["ready"]:
                seen.add(status["replica"])
            if len(seen) >= workers:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"serve did not become ready ({len(seen)} of {workers} workers)")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> str:
    """Send ``sig`` to the server's process group; its output once every process has exited."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    deadline = time.monotonic() + 20  # workers of a killed group may outlive the parent for a moment
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    return process.stdout.read().decode() if process.stdout else ""
