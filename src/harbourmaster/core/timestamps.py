"""Dates and timestamps as the platform recognises them: ISO 8601 text (``2026-03-01``, ``2026-03-01T09:30:00Z``).

One definition shared by schema inference (a text column whose every value is such a date is a ``datetime``
column: a range, not a closed list of categories) and request validation (a value of a ``datetime`` column
must be such a date). Plain Python and pandas, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ISO_DATE_PATTERN", "epoch_seconds", "looks_like_dates", "parse_timestamp", "timestamp_seconds"]

ISO_DATE_PATTERN = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
_ISO_DATE = re.compile(ISO_DATE_PATTERN)


def parse_timestamp(value: Any) -> datetime | None:
    """``value`` as a datetime when it is an ISO 8601 date or timestamp (text, date or datetime), else None."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value.strip()):
        return None
    text = value.strip()
    if len(text) > 26 and "." in text:  # Python parses at most microseconds: trim nanoseconds
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[: min(digits, 6)]}{tail[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # well formed but not a date (2026-13-45)
        return None


def timestamp_seconds(value: datetime) -> float:
    """Seconds since the epoch; a naive datetime is read as UTC (as training data is profiled)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def epoch_seconds(values: pd.Series) -> np.ndarray:
    """Finite seconds since the epoch of the dates in ``values`` (datetime64 or ISO text; others dropped)."""
    import numpy as np
    import pandas as pd

    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values.map(lambda v: parse_timestamp(v) is not None).astype(bool)
        values = pd.to_datetime(values.where(parsed), format="ISO8601", utc=True, errors="coerce")
    if getattr(values.dtype, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    values = values.dropna()
    numbers = (values - pd.Timestamp(0)).dt.total_seconds().to_numpy(dtype="float64")
    return numbers[np.isfinite(numbers)]


def looks_like_dates(values: pd.Series) -> bool:
    """True when ``values`` is text whose every non-null value is an ISO 8601 date or timestamp."""
    present = values.dropna()
    if present.empty or any(parse_timestamp(v) is None for v in present.iloc[:20]):
        return False  # the first values decide most columns cheaply
    if not all(isinstance(v, str) for v in present):
        return False
    if not present.str.strip().str.fullmatch(ISO_DATE_PATTERN).all():
        return False
    return all(parse_timestamp(v) is not None for v in present.unique())
