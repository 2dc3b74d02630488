"""Tokens the CLI saves for a person (``init --save-tokens``): one file per user, readable by its owner only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harbourmaster.errors import InvalidInputError
from harbourmaster.store.private import write_private


def token_path(folder: Path, user: str) -> Path:
    return folder / f"{user}.token"


def check_token_folder(folder: Path, users: Sequence[str]) -> None:
    """Refuse, before anything changes, a folder that is a file or already holds one of these tokens."""
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"{folder} is a file, not a folder", "give --save-tokens a folder (created if missing)")
    taken = [str(token_path(folder, user)) for user in users if token_path(folder, user).exists()]
    if taken:
        raise InvalidInputError(
            f"{', '.join(taken)} already exist(s); a token file is never overwritten",
            "move it away or give --save-tokens another folder",
        )


def save_token(folder: Path, user: str, secret: str) -> Path:
    """Write ``user``'s token to ``folder/USER.token`` (0600, the folder 0700 if new)."""
    return write_private(token_path(folder, user), (secret + "\n").encode())
