"""The window of production data a monitor looks at: the last N rows, a duration, or a date range.

Written as text in project files, on the command line and in the API:

- ``5000`` or ``5000rows``: the newest 5000 logged rows;
- ``30m``, ``6h``, ``1d``, ``7d``: rows logged in that much time up to now;
- ``2026-01-01..2026-01-02`` (dates or ISO datetimes, UTC unless a zone is given): rows logged
  from the first instant (inclusive) to the second (exclusive); a date alone is its midnight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from harbourmaster.errors import InvalidInputError

__all__ = ["MAX_WINDOW_ROWS", "Window", "parse_window"]

MAX_WINDOW_ROWS = 10_000_000
_ROWS = re.compile(r"^(\d+)\s*(rows?)?$")
_DURATION = re.compile(r"^(\d+)\s*(m|min|h|d)$")
_UNITS = {"m": timedelta(minutes=1), "min": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_HINT = "write a window as N rows (5000), a duration (30m, 6h, 1d) or a range (2026-01-01..2026-01-02)"


@dataclass(frozen=True)
class Window:
    """Rows newer than ``start`` and older than ``end`` (either may be open), at most ``last_rows`` of them."""

    text: str
    last_rows: int | None = None
    start: datetime | None = None
    end: datetime | None = None


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError(f"window: {text!r} is not a date or an ISO datetime", _HINT) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_window(text: str, now: datetime | None = None) -> Window:
    """The window ``text`` names (see the module docs); ``InvalidInputError`` with the accepted forms."""
    raw = text.strip().lower()
    now = now or datetime.now(UTC)
    if match := _ROWS.match(raw):
        rows = int(match.group(1))
        if not 1 <= rows <= MAX_WINDOW_ROWS:
            raise InvalidInputError(f"window: {rows} rows is out of range", f"use 1 to {MAX_WINDOW_ROWS:,} rows")
        return Window(text=f"{rows}rows", last_rows=rows)
    if match := _DURATION.match(raw):
        amount = int(match.group(1))
        if amount < 1 or amount > 3650 * 24 * 60:
            raise InvalidInputError(f"window: {text!r} is not a usable duration", _HINT)
        span = amount * _UNITS[match.group(2)]
        unit = "m" if match.group(2) == "min" else match.group(2)
        return Window(text=f"{amount}{unit}", start=now - span, end=None)
    if ".." in raw:
        first, _, second = text.strip().partition("..")
        start, end = _instant(first), _instant(second)
        if end <= start:
            raise InvalidInputError(f"window: {text!r} ends before it starts", "put the earlier instant first")
        return Window(text=f"{start.isoformat()}..{end.isoformat()}", start=start, end=end)
    raise InvalidInputError(f"window: {text!r} is not a window", _HINT)


def window_phrase(text: str) -> str:
    """A window's canonical ``text`` as words: "the last 600 rows", "the last 1d", "A to B"."""
    if text.endswith("rows"):
        return f"the last {text.removesuffix('rows')} rows"
    if ".." in text:
        return text.replace("..", " to ")
    return f"the last {text}"
