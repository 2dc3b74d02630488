"""Files and folders only their owner may read: the database, keys, logs and the home folder.

Modes are set at creation (the file never exists with wider permissions) and tightened on
files that already exist, whatever the process umask.
"""

from __future__ import annotations

import os
from pathlib import Path

from harbourmaster.errors import InvalidInputError

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing folder is tightened only if we created it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(
            f"{path} is a file, not a folder",
            "point HARBOURMASTER_HOME (or --home) at a folder, or at a path that does not exist yet",
        )
    missing = not path.exists()
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if missing:
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if it does not exist; tighten it to 0600 if it does.

    An existing file is tightened by path, never opened: closing any descriptor of a file drops every
    POSIX lock this process holds on it, and SQLite's locks on its database, -wal and -shm files are
    such locks. Without them another process takes this one's open database for unused and may
    checkpoint and delete the -wal file under it; later commits then land in a deleted file.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        os.chmod(path, FILE_MODE)
        return path
    try:
        os.fchmod(fd, FILE_MODE)  # the mode given to os.open is filtered by the umask
    finally:
        os.close(fd)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to a file readable by its owner only (created 0600, never wider)."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path
