"""How ``harbourmaster predictions`` shows the prediction log: a few key columns by default, any on request."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from harbourmaster.errors import InvalidInputError

# What a person scans for first; everything else is behind --columns or --json.
DEFAULT_COLUMNS = ("ts", "request", "version", "path", "status", "output", "latency_ms", "reason", "inputs")
INPUTS_SHOWN = 3  # fields of a record shown before the rest is summarised as a count


def is_missing(value: Any) -> bool:
    """None, NaN or an empty text: nothing to show."""
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def cell(value: Any) -> str:
    """One value as table text: missing values are empty (never ``None`` or ``nan``)."""
    if is_missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summarise_inputs(inputs: Any) -> str:
    """A record's inputs in a few words: the first fields and how many more (``--columns inputs`` has all)."""
    if is_missing(inputs):
        return ""
    try:
        record = json.loads(inputs) if isinstance(inputs, str) else inputs
    except json.JSONDecodeError:
        return str(inputs)[:40]
    if not isinstance(record, dict):
        return str(record)[:40]
    shown = ", ".join(f"{name}={cell(value)}" for name, value in list(record.items())[:INPUTS_SHOWN])
    more = len(record) - INPUTS_SHOWN
    return f"{shown}, +{more} more" if more > 0 else shown


def _request(row: dict[str, Any]) -> str:
    request = cell(row.get("request_id"))  # whole: it is what feedback is sent for
    record = row.get("row")
    return f"{request}#{record}" if isinstance(record, int) and record > 0 else request


def _default_cell(row: dict[str, Any], column: str) -> str:
    if column == "request":
        return _request(row)
    if column == "ts":
        return cell(row.get("ts")).replace("T", " ")[:19]
    if column == "version":
        return f"v{row['version']}" if not is_missing(row.get("version")) else ""
    if column == "latency_ms":
        return f"{row['latency_ms']:.1f}" if isinstance(row.get("latency_ms"), int | float) else ""
    if column == "inputs":
        return summarise_inputs(row.get("inputs"))
    return cell(row.get(column))


def choose_columns(available: Sequence[str], requested: str | None) -> list[str]:
    """The columns asked for with ``--columns a,b`` (checked against ``available``), else the default few."""
    if requested is None:
        return [c for c in DEFAULT_COLUMNS if c == "request" or c in available]
    wanted = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in available]
    if not wanted or unknown:
        raise InvalidInputError(
            f"no column named {', '.join(map(repr, unknown))}" if unknown else "--columns names no column",
            f"choose from: {', '.join(available)}",
        )
    return wanted


def table_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, requested: bool) -> list[list[str]]:
    """Cells for ``output.table``: the default view formats and summarises, requested columns are shown whole."""
    if requested:
        return [[cell(row.get(column)) for column in columns] for row in rows]
    return [[_default_cell(row, column) for column in columns] for row in rows]
