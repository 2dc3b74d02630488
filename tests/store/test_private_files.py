"""The platform's files are readable by their owner only: home 0700, the SQLite database and its
-wal/-shm 0600, from creation (issue 7 item 7)."""

from __future__ import annotations

import os
import stat
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
