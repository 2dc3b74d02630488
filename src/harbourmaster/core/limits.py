"""Bounds on what any face accepts: text lengths and integer ranges (pure; used by the API and services)."""

from __future__ import annotations

from harbourmaster.errors import InvalidInputError

MAX_INT = 2**63 - 1  # the database's 64-bit INTEGER / BIGINT
MAX_NAME = 128  # names: projects, users, environments, tokens, modes
MAX_KEY = 256  # keys and short identifiers
MAX_TEXT = 10_000  # free text: descriptions, comments, reasons, tag values


def check_text(value: str | None, what: str, limit: int = MAX_TEXT) -> str | None:
    """``value`` unchanged if it fits; InvalidInputError saying the limit otherwise (NUL bytes are refused too)."""
    if value is None:
        return None
    if len(value) > limit:
        raise InvalidInputError(
            f"{what} has {len(value):,} characters; at most {limit:,} are accepted",
            f"shorten the {what} (keep long documents in the project's repository and link to them)",
        )
    if "\x00" in value:
        raise InvalidInputError(f"{what} contains a NUL byte (\\u0000)", f"remove NUL characters from the {what}")
    return value
