"""Shared fixtures: a platform on SQLite and on a real PostgreSQL, each test on a clean store."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from harbourmaster.config import Settings
from harbourmaster.services.platform import Platform
from harbourmaster.store.db import Database
from harbourmaster.store.private import private_dir
from scheduling import GroupedFileScheduling, costliest_first

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    costliest_first(items)  # see tests/scheduling.py


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> GroupedFileScheduling | None:
    return GroupedFileScheduling(config, log) if config.getvalue("dist") == "loadfile" else None


def require_postgres() -> None:
    """Skip (on a laptop) or fail (in CI) when PostgreSQL is missing."""
    global _POSTGRES_PROBLEM
    if _POSTGRES_PROBLEM is False:
        _POSTGRES_PROBLEM = _postgres_problem()
    if _POSTGRES_PROBLEM:
        if IN_CI:
            pytest.fail(f"CI=true but {_POSTGRES_PROBLEM}")
        pytest.skip(_POSTGRES_PROBLEM)


def _schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@contextmanager
def _fresh_schema(script: str | None = None) -> Iterator[str]:
    """A URL whose search_path is a new schema (made by ``script``, whose schema is named SCHEMA_TOKEN, or
    empty), dropped afterwards."""
    require_postgres()
    schema = f"hm_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            if script is None:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            else:
                connection.exec_driver_sql(script.replace(SCHEMA_TOKEN, schema))
        yield _schema_url(schema)
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema of its own, dropped afterwards."""
    with _fresh_schema() as url:
        yield url


SCHEMA_TOKEN = "hm_template_schema_token"


@pytest.fixture(scope="session")
def postgres_template() -> str | None:
    """The SQL that makes a schema at the newest migration, as ``pg_dump`` writes it after migrating one
    (once per test process; tests/store cover the migrations); None without ``pg_dump``."""
    if shutil.which("pg_dump") is None:
        return None
    with _fresh_schema() as url:
        Database(url).dispose()
        schema = url.rsplit("%3D", 1)[1]
        libpq = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
        dump = subprocess.run(
            ["pg_dump", "--dbname", libpq, "--schema", schema, "--inserts", "--no-owner"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    lines = (line for line in dump.splitlines() if not line.startswith("\\"))  # psql's \restrict lines
    return "\n".join(lines).replace(schema, SCHEMA_TOKEN)


@pytest.fixture
def migrated_postgres_url(postgres_template: str | None) -> Iterator[str]:
    """Like ``postgres_url``, with the schema already at the newest migration."""
    with _fresh_schema(postgres_template) as url:
        yield url


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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite store at the newest migration, made once per test process (tests/store cover the
    migrations themselves); a test's fresh SQLite store starts as a copy instead of migrating again."""
    folder = tmp_path_factory.mktemp("sqlite-template")
    database = Database(f"sqlite:///{folder / 'migrated.db'}")
    database.dispose()
    template = folder / "template.db"
    with sqlite3.connect(folder / "migrated.db") as connection:
        connection.execute("VACUUM INTO ?", (str(template),))  # one self-contained file, no WAL beside it
    return template


def fresh_sqlite_home(home: Path, template: Path) -> Settings:
    """Settings on ``home``, whose SQLite store starts as a copy of ``template``."""
    settings = make_settings(home)
    private_dir(home)
    shutil.copyfile(template, settings.database_url.removeprefix("sqlite:///"))
    return settings


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings on a fresh store, for each metadata backend."""
    if backend == "postgresql":
        return make_settings(tmp_path / "home", request.getfixturevalue("migrated_postgres_url"))
    return fresh_sqlite_home(tmp_path / "home", request.getfixturevalue("sqlite_template"))


@pytest.fixture
def unmigrated_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings on an empty database, for each metadata backend (for tests of the migrations themselves)."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    return make_settings(tmp_path / "home", url)


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    instance = Platform(settings)
    yield instance
    instance.close()


@pytest.fixture
def sqlite_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    return fresh_sqlite_home(tmp_path / "home", sqlite_template)


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
