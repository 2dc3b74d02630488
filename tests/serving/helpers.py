"""Shared helpers for serving tests: a trained demo project with a normal and a faulty version."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
