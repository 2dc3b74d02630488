"""Reviewing a version executes nothing; trust is an admin's command that does what refusals say.

A real control plane (uvicorn on loopback) over SQLite and PostgreSQL, the SDK and the CLI
in real subprocesses talking to it with tokens.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sqlalchemy import select

from harbourmaster.api.app import create_app
from harbourmaster.bundle import Bundle, TrustPolicy
from harbourmaster.bundle.code import code_modules, project_imports, snapshot_project_code
from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.services.actors import Actor
from harbourmaster.services.packaging import package_version
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow
from loopback import serve_in_thread

PROJECT = "review"
FRAME = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
TARGET = pd.Series([0, 0, 0, 1, 1, 1], name="y")


@dataclass
class Live:
    url: str
    platform: Platform
    admin: str
    scientist: str

    def upload(self, bundle: Bundle, token: str, **form: str) -> httpx.Response:
        """What the SDK sends: the manifest and one file part per bundle file."""
        data = {"manifest": bundle.manifest.model_dump_json(), **form}
        files = [(path, (path, content, "application/octet-stream")) for path, content in bundle.files.items()]
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.post(
            f"{self.url}/api/v1/projects/{PROJECT}/versions", data=data, files=files, headers=headers, timeout=60
        )

    def cli(self, *args: str, token: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARBOURMASTER_")}
        env |= {"HARBOURMASTER_HOME": str(cwd / "cli-home"), "HARBOURMASTER_TOKEN": token}
        return subprocess.run(
            [sys.executable, "-m", "harbourmaster", *args, "--url", self.url],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
            check=False,
        )


@contextmanager
def serve(platform: Platform) -> Iterator[Live]:
    system = Actor.system("tests")
    platform.identity.create_user(system, "root", ["admin"])
    platform.identity.create_user(system, "dana", ["data-scientist"])
    admin = platform.identity.create_token(system, "root", "tests").secret
    scientist = platform.identity.create_token(system, "dana", "tests").secret
    with serve_in_thread(create_app(platform)) as url:
        yield Live(url=url, platform=platform, admin=admin, scientist=scientist)


@pytest.fixture
def live(platform: Platform) -> Iterator[Live]:
    """A control plane over each metadata backend."""
    with serve(platform) as server:
        yield server


@pytest.fixture
def live_sqlite(sqlite_settings: Settings) -> Iterator[Live]:
    """One control plane for the CLI tests (the CLI is a face: the backend does not matter to it)."""
    platform = Platform(sqlite_settings)
    try:
        with serve(platform) as server:
            yield server
    finally:
        platform.close()


def marker_project(tmp_path: Path, control_plane: Settings) -> tuple[Bundle, Path, Path]:
    """A bundle whose features.py, when imported (top-level code), appends to a marker file a line saying
    which process imported it and which of the control plane's secrets that process's environment held."""
    markers = tmp_path / "features-imports.jsonl"
    secrets = {
        "database URL": control_plane.database_url,
        "home": str(control_plane.home),
        "signing key": str(control_plane.audit_key_path),
    }
    project = tmp_path / "project"
    project.mkdir()
    (project / "features.py").write_text(
        textwrap.dedent(
            f"""
            import json
            import os
            import pathlib

            with pathlib.Path({str(markers)!r}).open("a") as marker:  # runs on import
                marker.write(json.dumps({{
                    "pid": os.getpid(),
                    "platform_variables": sorted(k for k in os.environ if k.startswith(("HARBOURMASTER_", "PG"))),
                    "saw": sorted(
                        name for name, secret in {secrets!r}.items() if any(secret in v for v in os.environ.values())
                    ),
                }}) + "\\n")

            from sklearn.base import BaseEstimator, TransformerMixin


            class Double(BaseEstimator, TransformerMixin):
                def fit(self, features, target=None):
                    return self

                def transform(self, features):
                    return features * 2
            """
        )
    )
    code_files = snapshot_project_code(project)
    with project_imports(project, code_modules(code_files)):
        import features  # type: ignore[import-not-found]  # the author's machine: their code runs here

        fitted = Pipeline([("double", features.Double()), ("model", LogisticRegression())]).fit(FRAME, TARGET)
        bundle = package_version(
            fitted, features=FRAME, target=TARGET, metrics={}, lineage={}, created_by="dana", code_files=code_files
        )
    assert [i["pid"] for i in imports_of(markers)] == [os.getpid()]  # the marker works
    markers.unlink()
    return bundle, project, markers


def imports_of(markers: Path) -> list[dict[str, Any]]:
    """Every import of the project's features.py so far, in order, as its marker recorded it."""
    return [json.loads(line) for line in markers.read_text().splitlines()] if markers.exists() else []


@pytest.fixture
def control_plane_environment(monkeypatch: pytest.MonkeyPatch, platform: Platform) -> Settings:
    """The control plane (this process: the servers run in a thread) configured through its environment,
    as a deployment is: a process it starts must not inherit these."""
    settings = platform.settings
    monkeypatch.setenv("HARBOURMASTER_HOME", str(settings.home))
    monkeypatch.setenv("HARBOURMASTER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HARBOURMASTER_AUDIT_KEY_FILE", str(settings.audit_key_path))
    return settings


def assert_registration_kept_the_code_out_of_the_control_plane(imports: list[dict[str, Any]]) -> None:
    """Registration may warm the version in a child process; never in the control plane's, never with its secrets."""
    for found in imports:
        assert found["pid"] != os.getpid(), "registration ran the project's code in the control plane's process"
        assert found["platform_variables"] == [], f"the warm-up process inherited platform settings: {found}"
        assert found["saw"] == [], f"the warm-up process could see the control plane's {found['saw']}"


def test_registration_and_inspection_import_none_of_the_projects_code(live, control_plane_environment, tmp_path):
    bundle, project, markers = marker_project(tmp_path, control_plane_environment)
    assert live.upload(bundle, live.scientist).status_code == 201  # registration on the control plane
    registered = imports_of(markers)
    assert_registration_kept_the_code_out_of_the_control_plane(registered)

    with Client(url=live.url, token=live.scientist, settings=_home(tmp_path / "sdk")) as remote:
        found = remote.inspect(PROJECT)
        assert found.digest == bundle.digest and found.code_modules == ["features"]
        assert [(f.path, f.size) for f in found.code_files] == [
            ("code/features.py", len(bundle.files["code/features.py"]))
        ]
        assert ("features.Double", "project-code") in {(t.name, t.status) for t in found.referenced_types}
        assert found.input_schema["columns"][0]["name"] == "a"
        source = remote.inspect(PROJECT, 1, file="code/features.py").file_text
        assert source == (project / "features.py").read_text()
    assert imports_of(markers) == registered, "inspection ran the project's code"

    # Only where a bundle loads (a replica, a notebook) does the author's code run.
    with Client(url=live.url, token=live.scientist, settings=_home(tmp_path / "loader")) as remote:
        remote.load(PROJECT)
    assert [i["pid"] for i in imports_of(markers)[len(registered) :]] == [os.getpid()]


def test_the_upload_form_cannot_set_trusted_types_over_http(live, tmp_path):
    bundle = package_version(
        Pipeline([("model", LogisticRegression())]).fit(FRAME, TARGET),
        features=FRAME,
        target=TARGET,
        metrics={},
        lineage={},
        created_by="dana",
    )
    settings = json.dumps({"trusted_types": ["posix.system"], "environments": {}})
    refused = live.upload(bundle, live.scientist, project_settings=settings)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_input"
    assert "harbourmaster trust" in refused.json()["error"]["hint"]
    with live.platform.db.reader() as session:
        entry = session.scalars(select(AuditEventRow).where(AuditEventRow.outcome == "refused")).one()
        assert entry.actor == "dana" and "trusted_types" in entry.details["error"]
    assert live.upload(bundle, live.scientist, project_settings=json.dumps({"environments": {}})).status_code == 201
    assert live.platform.registry.project_trust(Actor.system("tests"), PROJECT).trusted_types == []


def test_the_inspect_command_over_url_runs_no_project_code(live_sqlite, monkeypatch, tmp_path):
    live = live_sqlite
    monkeypatch.setenv("HARBOURMASTER_DATABASE_URL", live.platform.settings.database_url)  # the server's, as deployed
    bundle, _, markers = marker_project(tmp_path, live.platform.settings)
    assert live.upload(bundle, live.scientist).status_code == 201
    registered = imports_of(markers)
    assert_registration_kept_the_code_out_of_the_control_plane(registered)
    shown = live.cli("inspect", PROJECT, "1", token=live.scientist, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "code/features.py" in shown.stdout and "runs its author's code" in shown.stdout
    printed = live.cli("inspect", PROJECT, "--file", "code/features.py", token=live.scientist, cwd=tmp_path)
    assert "runs on import" in printed.stdout
    assert imports_of(markers) == registered, "the inspect command ran the project's code"


def test_the_refusal_hint_names_a_trust_command_that_works(live_sqlite, tmp_path):
    live = live_sqlite
    negating = Pipeline([("neg", FunctionTransformer(operator.neg)), ("model", LogisticRegression())])
    negating.fit(FRAME, TARGET)
    author_policy = TrustPolicy.default()
    bundle = package_version(
        negating,
        features=FRAME,
        target=TARGET,
        metrics={},
        lineage={},
        created_by="dana",
        policy=TrustPolicy(author_policy.trusted_type_prefixes, trusted_types=("_operator.neg",)),
    )
    refused = live.upload(bundle, live.scientist)
    assert refused.status_code == 422
    hint = refused.json()["error"]["hint"]
    command = hint.split("with: ", 1)[1].split(" (", 1)[0]
    assert command == f"harbourmaster trust {PROJECT} --add-type _operator.neg"

    denied = live.cli(*command.split()[1:], token=live.scientist, cwd=tmp_path)
    assert denied.returncode == 1 and "error:" in denied.stderr
    done = live.cli(*command.split()[1:], "--json", token=live.admin, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["trusted_types"] == ["_operator.neg"]

    assert live.upload(bundle, live.scientist).status_code == 201
    with Client(url=live.url, token=live.scientist, settings=_home(tmp_path / "sdk")) as remote:
        np.testing.assert_array_equal(remote.load(PROJECT).predict(FRAME), negating.predict(FRAME))
        statuses = {t.name: t.status for t in remote.inspect(PROJECT).referenced_types}
        assert statuses["_operator.neg"] == "project"


def _home(home: Path) -> Settings:
    return Settings.from_env({"HARBOURMASTER_HOME": str(home)})
