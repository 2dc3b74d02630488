"""The platform's files are readable by their owner only: home 0700, the SQLite database and its
-wal/-shm 0600, from creation (issue 7 item 7)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_settings

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.private import write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_and_database_files_are_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # a usual umask would give 0644 / 0755
    try:
        platform = Platform(make_settings(tmp_path / "home"))
        platform.environments.configure(Actor.system("tests"), "qa", {}, None)  # a write: WAL and SHM exist
        database = tmp_path / "home" / "harbourmaster.db"
        assert _mode(tmp_path / "home") == 0o700
        for path in (database, database.with_name("harbourmaster.db-wal"), database.with_name("harbourmaster.db-shm")):
            assert path.exists() and _mode(path) == 0o600, (path, oct(_mode(path)))
        platform.close()
        key = write_private(tmp_path / "home" / "keys" / "audit.key", b"secret")
        assert _mode(key) == 0o600 and _mode(key.parent) == 0o700 and key.read_bytes() == b"secret"
    finally:
        os.umask(previous)


def test_a_database_left_readable_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    database = home / "harbourmaster.db"
    database.touch(mode=0o644)
    os.chmod(database, 0o644)
    Platform(make_settings(home)).close()
    assert _mode(database) == 0o600


_WRITE_AND_CLOSE = """
import sys
from tests.conftest import make_settings
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
platform = Platform(make_settings(sys.argv[1]))
platform.environments.configure(Actor.system("tests"), sys.argv[2], {}, None)
platform.close()
"""


def test_tightening_the_files_keeps_the_sqlite_locks_of_open_connections(tmp_path: Path) -> None:
    """Opening a second platform over a store this process has open must not drop this process's SQLite locks
    (closing any descriptor of a file drops them); without them another process closing the database deletes
    its -wal file, and this process's later commits land in the deleted file (lost for every other process)."""
    home = tmp_path / "home"
    first = Platform(make_settings(home))
    first.environments.configure(Actor.system("tests"), "qa", {}, None)  # a pooled connection, holding its locks
    second = Platform(make_settings(home))  # tightens the database files again, while `first` has them open
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    other = [sys.executable, "-c", _WRITE_AND_CLOSE, str(home)]
    subprocess.run([*other, "perf"], check=True, env=environment, timeout=120)  # writes, then closes
    first.environments.configure(Actor.system("tests"), "staging", {}, None)
    subprocess.run([*other, "load"], check=True, env=environment, timeout=120)
    with sqlite3.connect(home / "harbourmaster.db") as connection:
        names = {name for (name,) in connection.execute("SELECT name FROM environments")}
    assert {"qa", "perf", "staging", "load"} <= names, names
    for platform in (first, second):
        platform.close()
