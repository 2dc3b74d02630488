"""The control-plane HTTP API, served for real by uvicorn on loopback, for each metadata backend.

Nothing is mocked: the SDK talks HTTP to a live server whose platform writes to
SQLite or PostgreSQL and a local artifact folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from harbourmaster.api.app import create_app
from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.errors import (
    AuthenticationError,
    ConnectionFailedError,
    NotFoundError,
)
from harbourmaster.services.actors import Actor
from harbourmaster.services.packaging import package_version
from harbourmaster.services.platform import Platform
from loopback import free_port, serve_in_thread

PROJECT = "breast-cancer"
TARGET = "malignant"


def home_settings(home: Path) -> Settings:
    return Settings.from_env({"HARBOURMASTER_HOME": str(home)})


@dataclass
class Live:
    url: str
    token: str
    platform: Platform

    def http(self, token: str | None = "default") -> httpx.Client:
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def live(platform: Platform) -> Iterator[Live]:
    """A real uvicorn server over the test's platform, with an admin and its token."""
    actor = Actor.system("tests")
    platform.identity.create_user(actor, "root", ["admin"])
    token = platform.identity.create_token(actor, "root", "tests").secret
    with serve_in_thread(create_app(platform)) as url:
        yield Live(url=url, token=token, platform=platform)


@pytest.fixture
def remote(live: Live, tmp_path: Path) -> Iterator[Client]:
    """The SDK against the live server (its download cache in a home of its own)."""
    with Client(url=live.url, token=live.token, settings=home_settings(tmp_path / "client-home")) as client:
        yield client


def api_routes(live: Live) -> list[tuple[str, str]]:
    """(method, concrete path) for every /api/v1 operation the server publishes in its OpenAPI document."""
    samples = {"project": PROJECT, "version": "1", "key": "candidate", "digest": "0" * 64, "path": "model.skops"}
    paths = httpx.get(f"{live.url}/openapi.json", timeout=30).json()["paths"]
    routes = []
    for path, operations in paths.items():
        if not path.startswith("/api/v1"):
            continue
        concrete = re.sub(r"{(\w+)}", lambda m: samples.get(m.group(1), "dev"), path)
        routes.extend((method.upper(), concrete) for method in sorted(operations))
    return routes


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


# ------------------------------------------------------------------------- auth


def test_health_is_open_and_every_api_route_needs_a_valid_token(live):
    with live.http(token=None) as anonymous, live.http(token="hm_" + "x" * 40) as wrong:
        health = anonymous.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["checks"] == {"database": "ok", "artifacts": "ok"}

        routes = api_routes(live)
        assert len(routes) >= 10
        assert ("POST", f"/api/v1/projects/{PROJECT}/versions") in routes
        for method, path in routes:
            error = assert_error(anonymous.request(method, path), 401, "unauthenticated")
            assert "Bearer" in error["hint"]
            assert_error(wrong.request(method, path), 401, "unauthenticated")
        # A malformed Authorization header is no token either.
        assert_error(anonymous.get("/api/v1/projects", headers={"Authorization": live.token}), 401, "unauthenticated")

    with pytest.raises(AuthenticationError) as raised:
        Client(url=live.url, token="hm_" + "y" * 40).projects()
    assert raised.value.http_status == 401
    assert raised.value.hint


# ------------------------------------------------------------- the SDK over HTTP


def test_sdk_round_trip_over_http(live, remote, demo_project):
    # Train: the pipeline runs client-side, the bundle is uploaded, the run recorded server-side.
    started = time.monotonic()
    trained = remote.train(demo_project)
    wall = time.monotonic() - started
    assert trained.version.project == PROJECT
    # The run lasted what the fit took on the client (measured, so more than nothing), within the call's wall time.
    assert 0 < (trained.run.duration_seconds or 0) <= wall
    assert trained.version.number == 1
    assert trained.run.status == "succeeded"
    assert trained.run.version_number == 1
    assert trained.run.rows_in == 569
    actor = Actor.system("tests")
    stored = live.platform.registry.get_version(actor, PROJECT, 1)
    assert stored.digest == trained.version.digest
    assert stored.created_by == "root"  # the server records the token's user, not what the client claims
    assert [run.version_number for run in live.platform.training.list_runs(actor, PROJECT)] == [1]

    # Register a pipeline fitted "in a notebook".
    frame = pd.read_csv(demo_project / "data" / "train.csv")
    train_rows, test_rows = train_test_split(frame, test_size=0.25, random_state=3, stratify=frame[TARGET])
    notebook = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000))])
    notebook.fit(train_rows.drop(columns=[TARGET]), train_rows[TARGET])
    registered = remote.register(
        PROJECT,
        notebook,
        train_rows,
        target=TARGET,
        metrics=["accuracy", "roc_auc"],
        eval_data=test_rows,
        description="from a notebook",
    )
    assert registered.number == 2
    assert set(registered.metrics) == {"accuracy", "roc_auc"}
    assert registered.metrics["accuracy"] > 0.9
    assert registered.lineage["parent_version"] == 1
    assert registered.description == "from a notebook"

    # Read everything back through the same records as embedded mode.
    [project] = remote.projects()
    assert (project.name, project.version_count, project.latest_version) == (PROJECT, 2, 2)
    assert project.description.startswith("Malignant or benign")
    assert remote.project(PROJECT) == project
    assert [v.number for v in remote.versions(PROJECT)] == [1, 2]
    latest = remote.version(PROJECT, "latest")
    assert latest == live.platform.registry.get_version(actor, PROJECT, 2)
    assert len(latest.input_schema["columns"]) == 30
    assert latest.output_schema["classes"] == [0, 1]
    diff = remote.diff(PROJECT, 1, 2)
    assert (diff.old, diff.new) == (1, 2)
    assert diff.input_changes and {c.change for c in diff.input_changes} == {"range"}  # v2 saw a subset of rows
    assert not diff.breaking
    assert {m.name for m in diff.metric_changes} >= {"accuracy", "roc_auc"}
    assert remote.tag(PROJECT, 2, "candidate", "best").tags == {"candidate": "best"}
    assert remote.version(PROJECT, 2).tags == {"candidate": "best"}
    assert remote.untag(PROJECT, 2, "candidate").tags == {}
    runs = remote.runs(PROJECT)
    assert [(r.kind, r.status, r.version_number) for r in runs] == [("train", "succeeded", 1)]
    assert remote.runs(limit=1)[0].id == runs[0].id

    # Load over HTTP: verified download, same predictions as a load by the control plane itself (the store is
    # shared, so embedded mode may not open it).
    sample = frame.drop(columns=[TARGET]).sample(25, random_state=1)
    for number in (1, 2):
        over_http = remote.load(PROJECT, number)
        local = live.platform.registry.load_version(Actor.system("tests"), PROJECT, number)
        assert over_http.digest == local.digest
        np.testing.assert_array_equal(over_http.predict(sample), local.predict(sample))
        np.testing.assert_array_equal(over_http.predict_proba(sample), local.predict_proba(sample))
    np.testing.assert_array_equal(remote.load(PROJECT, 2).predict(sample), notebook.predict(sample))


# ------------------------------------------------------------- errors on the wire


def test_errors_over_http(live, remote, demo_project):
    with pytest.raises(NotFoundError) as raised:
        remote.versions("nope")
    assert raised.value.http_status == 404
    assert "nope" in raised.value.message
    assert raised.value.hint
    with pytest.raises(NotFoundError):
        remote.version("nope", 1)

    with live.http() as http:
        assert_error(http.get("/api/v1/projects/nope"), 404, "not_found")
        malformed = http.post(
            "/api/v1/projects", content=b'{"name": "churn",', headers={"content-type": "application/json"}
        )
        assert assert_error(malformed, 400, "invalid_json")["hint"]
        invalid_name = assert_error(http.post("/api/v1/projects", json={"name": "Not A Name!"}), 422, "invalid_input")
        assert "not a valid project name" in invalid_name["message"]
        missing_field = assert_error(http.post("/api/v1/projects", json={"description": "x"}), 422, "invalid_input")
        assert "name" in missing_field["message"]
        assert_error(http.get("/api/v1/no-such-route"), 404, "http_404")
        assert_error(http.get("/nowhere"), 404, "http_404")
        assert_error(http.get(f"/api/v1/projects/{PROJECT}/versions/abc"), 404, "not_found")  # no project yet
        assert_error(http.get("/api/v1/bundles/not-a-digest/manifest"), 422, "invalid_input")

        # A bundle whose bytes do not match its manifest is refused, and nothing is registered.
        frame = pd.read_csv(demo_project / "data" / "train.csv")
        features = frame.drop(columns=[TARGET])
        fitted = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000))])
        fitted.fit(features, frame[TARGET])
        bundle = package_version(
            fitted,
            features=features,
            target=frame[TARGET],
            metrics={"accuracy": 0.9},
            lineage={},
            created_by="tests",
        )
        files = [
            (path, (path, content + b"tampered" if path == bundle.manifest.model_file else content))
            for path, content in bundle.files.items()
        ]
        tampered = http.post(
            "/api/v1/projects/tampered/versions",
            data={"manifest": bundle.manifest.model_dump_json()},
            files=files,
        )
        error = assert_error(tampered, 409, "bundle_integrity")
        assert bundle.manifest.model_file in error["message"]
        assert_error(http.get("/api/v1/projects/tampered"), 404, "not_found")
        assert [p.name for p in live.platform.registry.list_projects(Actor.system("tests"))] == []
        assert not live.platform.artifacts.exists(f"bundles/{bundle.digest}.json")

        bad_manifest = http.post("/api/v1/projects/tampered/versions", data={"manifest": "{}"}, files=files)
        assert_error(bad_manifest, 422, "invalid_input")

        spec = http.get("/openapi.json")
        assert spec.status_code == 200
        paths = spec.json()["paths"]
        for path in (
            "/health",
            "/api/v1/projects",
            "/api/v1/projects/{project}/versions",
            "/api/v1/projects/{project}/versions/{version}",
            "/api/v1/projects/{project}/diff",
            "/api/v1/projects/{project}/versions/{version}/tags/{key}",
            "/api/v1/bundles/{digest}/manifest",
            "/api/v1/runs",
        ):
            assert path in paths, f"{path} missing from the OpenAPI document"


def test_unreachable_server_raises_connection_failed(tmp_path):
    port = free_port()  # bound then released: nothing listens there
    client = Client(url=f"http://127.0.0.1:{port}", token="hm_" + "z" * 40, settings=home_settings(tmp_path))
    with client, pytest.raises(ConnectionFailedError) as raised:
        client.projects()
    assert f"127.0.0.1:{port}" in raised.value.message
    assert "harbourmaster server" in raised.value.hint


# ------------------------------------------------------ `harbourmaster server`


@pytest.mark.slow
def test_server_command_as_a_subprocess(tmp_path):
    port = free_port()
    admin_token = "hm_bootstrap_" + "a" * 32
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update(HARBOURMASTER_HOME=str(tmp_path / "home"), HARBOURMASTER_ADMIN_TOKEN=admin_token)
    process = subprocess.Popen(
        [sys.executable, "-m", "harbourmaster", "server", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"the server exited early:\n{process.stdout.read()}"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health within 20s"
            time.sleep(0.2)

        assert_error(httpx.get(f"{url}/api/v1/projects"), 401, "unauthenticated")
        assert_error(
            httpx.get(f"{url}/api/v1/projects", headers={"Authorization": "Bearer nope"}), 401, "unauthenticated"
        )
        allowed = httpx.get(f"{url}/api/v1/projects", headers={"Authorization": f"Bearer {admin_token}"})
        assert allowed.status_code == 200
        assert allowed.json() == []

        # The CLI in remote mode against it: with the token, and without one.
        cli = [sys.executable, "-m", "harbourmaster", "projects", "--json", "--url", url]
        with_token = subprocess.run(
            cli, env={**env, "HARBOURMASTER_TOKEN": admin_token}, capture_output=True, text=True, timeout=60
        )
        assert with_token.returncode == 0, with_token.stderr
        assert with_token.stdout.strip() == "[]"
        without = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
        assert without.returncode == 1
        assert "error:" in without.stderr and "hint:" in without.stderr
        assert "Traceback" not in without.stdout + without.stderr
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert "Traceback" not in output, output
