"""Shared helpers for data-plane tests: a control plane that can be stopped and started on one port,
a project with two versions, and a replica credential."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import uvicorn

from harbourmaster.api.app import create_app
from harbourmaster.demo.story import write_demo_project
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.prediction_log import PREDICTION_SCHEMA
from loopback import free_port

PROJECT = "breast-cancer"
SYSTEM = Actor.system("tests")
OWNER = Actor.local_owner()


class ControlPlaneServer:
    """``create_app(platform)`` under uvicorn on a fixed loopback port, stoppable and startable again."""

    def __init__(self, platform: Platform, port: int | None = None) -> None:
        self.platform = platform
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> ControlPlaneServer:
        config = uvicorn.Config(create_app(self.platform), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"control-plane-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the control plane on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the control plane did not stop"


def train_two(platform: Platform, folder: Path) -> tuple[int, int]:
    """Two versions of the demo project (the second with other parameters)."""
    project = folder / "project"
    write_demo_project(project)
    first = platform.training.train(OWNER, project).version.number
    second = platform.training.train(OWNER, project).version.number
    return first, second


def a_record(platform: Platform) -> dict[str, Any]:
    """A valid input record: the middle of every column's training range."""
    columns = platform.registry.get_version(OWNER, PROJECT, "latest").input_schema["columns"]
    return {c["name"]: round((c["minimum"] + c["maximum"]) / 2, 4) for c in columns}


def wait_for_version(server: ServerThread, number: int, timeout: float = 30.0) -> None:
    """Block until the replica's champion for PROJECT is ``number``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        route = server.replica.table.routes.get(PROJECT)
        if route is not None and route.champion.predictor.number == number:
            return
        time.sleep(0.05)
    raise AssertionError(f"the replica did not serve v{number} within {timeout}s: {server.replica.loaded()}")


def prediction_file(environment: str, project: str = PROJECT, rows: int = 2) -> bytes:
    """A Parquet file in the prediction-log schema, as a replica's capture writer makes it."""
    now = 1_767_225_600_000_000  # 2026-01-01, microseconds
    table = pa.Table.from_pylist(
        [
            {
                "request_id": f"r{i}",
                "row": 0,
                "ts": now,
                "environment": environment,
                "project": project,
                "version": 1,
                "path": "champion",
                "status": 200,
                "latency_ms": 1.0,
                "inputs": "{}",
                "output": "1",
                "replica": "test",
            }
            for i in range(rows)
        ],
        schema=PREDICTION_SCHEMA,
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
