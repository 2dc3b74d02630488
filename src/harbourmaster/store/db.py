"""The metadata database: engine, sessions, and migrations applied on start."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from harbourmaster.errors import InvalidInputError
from harbourmaster.store.private import private_dir, private_file

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_migrate_lock = threading.Lock()


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite so BEGIN IMMEDIATE works.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers serialise at the start of a transaction instead of failing on upgrade;
        # readers take a deferred snapshot, which in WAL mode never waits for a writer.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_database_engine(url: str, *, for_writing: bool = True) -> Engine:
    """An engine for a SQLAlchemy URL; SQLite gets WAL mode and a busy timeout.

    SQLite writers start with BEGIN IMMEDIATE (they queue instead of failing when
    they upgrade to a write); readers begin normally and, in WAL mode, never wait.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInputError(
            f"database URL {url!r} cannot be parsed",
            "use a SQLAlchemy URL such as sqlite:///path.db or postgresql+psycopg://host/db",
        ) from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            _private_sqlite_files(Path(database))
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine, immediate=for_writing)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _private_sqlite_files(database: Path) -> None:
    """The database file is created 0600 before SQLite opens it (SQLite gives its -wal and -shm
    files the database file's mode); files left wider by an older version are tightened."""
    private_dir(database.parent)
    private_file(database)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = database.with_name(database.name + suffix)
        if companion.exists():
            private_file(companion)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest migration's revision (read from the migration scripts once per process)."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent, safe to call on every start).

    A database already at the newest revision is left alone without running Alembic's environment,
    which costs more than the rest of opening a store.
    """
    config = _alembic_config()
    with _migrate_lock, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # One migrator at a time across processes (replicas starting together).
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
        if MigrationContext.configure(connection).get_current_revision() == head_revision():
            return
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class _Nesting(threading.local):
    def __init__(self) -> None:
        self.depth = 0
        self.after: list[Callable[[], None]] = []


class Database:
    """An engine plus a session factory; ``transaction()`` is the unit of work."""

    def __init__(self, url: str, *, apply_migrations: bool = True) -> None:
        self.url = url
        self._nesting = _Nesting()
        self.engine = create_database_engine(url)
        if apply_migrations:
            try:
                migrate(self.engine)
            except OperationalError as exc:
                raise InvalidInputError(
                    f"cannot reach the metadata database at {self.engine.url.render_as_string()}: {exc.orig}",
                    "check HARBOURMASTER_DATABASE_URL and that the database server is running",
                ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # On SQLite, reads use their own engine so that they never queue behind a writer.
        self.read_engine = (
            create_database_engine(url, for_writing=False) if self.engine.dialect.name == "sqlite" else self.engine
        )
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits together, or not at all."""
        nesting = self._nesting
        nesting.depth += 1
        try:
            with self._sessions() as session, session.begin():
                yield session
        finally:
            nesting.depth -= 1
            if nesting.depth == 0 and nesting.after:
                pending, nesting.after = nesting.after, []
                for callback in pending:
                    callback()

    @property
    def in_transaction(self) -> bool:
        """Whether this thread has a write transaction open (a second one would wait for it on SQLite)."""
        return self._nesting.depth > 0

    def after_transaction(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this thread's write transaction has ended (committed or not), or now.

        For work that needs a transaction of its own, such as auditing a refusal: opened inside another
        write transaction it would wait for that one (SQLite's write lock, PostgreSQL's audit lock).
        """
        if self._nesting.depth:
            self._nesting.after.append(callback)
        else:
            callback()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A session for reading only (it never takes SQLite's write lock)."""
        with self._read_sessions() as session:
            yield session

    def check(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
