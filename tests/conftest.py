"""Shared fixtures: a platform on SQLite and on a real PostgreSQL, each test on a clean store."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from harbourmaster.config import Settings
from harbourmaster.services.platform import Platform

POSTGRES_URL = os.environ.get("HARBOURMASTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _postgres_problem() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except OperationalError as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {str(exc.orig).strip()}"
    return None


_POSTGRES_PROBLEM: str | bool | None = False


def require_postgres() -> None:
    """Skip (on a laptop) or fail (in CI) when PostgreSQL is missing."""
    global _POSTGRES_PROBLEM
    if _POSTGRES_PROBLEM is False:
        _POSTGRES_PROBLEM = _postgres_problem()
    if _POSTGRES_PROBLEM:
        if IN_CI:
            pytest.fail(f"CI=true but {_POSTGRES_PROBLEM}")
        pytest.skip(_POSTGRES_PROBLEM)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema of its own, dropped afterwards."""
    require_postgres()
    schema = f"hm_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def make_settings(home: Path, database_url: str | None = None, **overrides: object) -> Settings:
    env = {"HARBOURMASTER_HOME": str(home)}
    if database_url:
        env["HARBOURMASTER_DATABASE_URL"] = database_url
    settings = Settings.from_env(env)
    if overrides:
        from dataclasses import replace

        settings = replace(settings, **overrides)
    return settings


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings on a fresh store, for each metadata backend."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    return make_settings(tmp_path / "home", url)


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    instance = Platform(settings)
    yield instance
    instance.close()


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HARBOURMASTER_* variables pointing at a fresh home (for CLI and SDK tests)."""
    for name in list(os.environ):
        if name.startswith("HARBOURMASTER_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("HARBOURMASTER_HOME", str(home))
    return home


@pytest.fixture
def demo_project(tmp_path: Path) -> Path:
    """The demo's project folder (custom transformer, prepare step, CSV data)."""
    from harbourmaster.demo.story import write_demo_project

    folder = tmp_path / "project"
    write_demo_project(folder)
    return folder
