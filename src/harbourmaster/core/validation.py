"""Input validation compiled from a version's input schema (on the hot path: plain Python)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import chain
from operator import countOf, itemgetter
from typing import TYPE_CHECKING, Any

from harbourmaster.core.timestamps import parse_timestamp, timestamp_seconds

if TYPE_CHECKING:
    import numpy as np

_MISSING = object()
_NUMERIC = ("integer", "float")


class FieldError(dict):
    """One problem with one field of one record: ``{"record", "field", "error"}`` (and ``allowed``, the known
    categories, for an unseen category)."""


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Validator:
    """Checks records against an input schema; names every offending field and why."""

    __slots__ = (
        "_columns",
        "_fast",
        "_getter",
        "_kind",
        "_kinds",
        "_names",
        "_nameset",
        "_optional",
        "_ranges",
        "all_numeric",
        "ignore_unknown",
    )

    def __init__(self, input_schema: dict[str, Any], unknown_fields: str = "reject") -> None:
        columns = input_schema.get("columns") or []
        self._columns: list[tuple[str, str, bool, frozenset[Any] | None, list[Any] | None]] = [
            (
                str(c["name"]),
                str(c["dtype"]),
                bool(c.get("nullable", False)),
                frozenset(c["categories"]) if c.get("categories") is not None else None,
                c.get("categories"),
            )
            for c in columns
        ]
        self._names = [c[0] for c in self._columns]
        self._nameset = frozenset(self._names)
        # Columns a request may leave out (ids, columns the pipeline does not read, declared optional).
        self._optional = frozenset(str(c["name"]) for c in columns if not c.get("required", True))
        # Declared (enforced) ranges; inferred ranges are observations, judged by the humility rule instead.
        self._ranges: dict[str, tuple[float | None, float | None]] = {
            str(c["name"]): (c.get("minimum"), c.get("maximum")) for c in columns if c.get("range_enforced")
        }
        self.all_numeric = bool(self._columns) and all(c[1] in _NUMERIC for c in self._columns)
        self.ignore_unknown = unknown_fields == "ignore"
        # Compiled once: for a schema of plain numbers (no categories), the exact Python type
        # each field must have; a record passing this check is valid, anything else gets the full check.
        kinds = {"float": float, "integer": int}
        self._fast: list[tuple[str, type, bool]] | None = (
            [(name, kinds[dtype], nullable) for name, dtype, nullable, categories, _ in self._columns]
            if self._columns and all(c[1] in kinds and c[3] is None for c in self._columns) and not self._ranges
            else None
        )
        # The same check over a whole request at once (see ``plain_matrix``): the exact type of every
        # value in schema order, compared in one go, and one finiteness check over the float matrix.
        self._getter = itemgetter(*self._names) if self._fast is not None else None
        self._kinds = [kind for _, kind, _ in self._fast] if self._fast is not None else []
        self._kind = self._kinds[0] if len(set(self._kinds)) == 1 else None  # all float (or all int)

    @property
    def names(self) -> list[str]:
        return self._names

    def check(self, records: list[Any]) -> list[dict[str, Any]]:
        """Every problem in ``records`` (empty when all are valid)."""
        if self._fast is not None and self._plainly_valid(records):
            return []
        errors: list[dict[str, Any]] = []
        nameset = self._nameset
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                errors.append(
                    {"record": index, "field": None, "error": f"expected an object, got {_type_name(record)}"}
                )
                continue
            keys = record.keys()
            if keys != nameset:
                for name in self._names:
                    if name not in record and name not in self._optional:
                        errors.append({"record": index, "field": name, "error": "missing"})
                if not self.ignore_unknown:
                    for name in keys - nameset:
                        errors.append({"record": index, "field": name, "error": "unknown field"})
            for name, dtype, nullable, categories, listed in self._columns:
                value = record.get(name, _MISSING)
                if value is _MISSING:
                    continue
                problem = self._problem(value, dtype, nullable, categories, listed)
                if problem is None and name in self._ranges and value is not None:
                    problem = _outside(value, dtype, *self._ranges[name])
                if problem is not None:
                    error = {"record": index, "field": name, "error": problem}
                    if listed is not None and problem.startswith("unseen category"):
                        error["allowed"] = listed
                    errors.append(error)
        return errors

    def plain_matrix(self, records: list[Any]) -> np.ndarray | None:
        """The float64 matrix (schema order) of ``records`` when every record is plainly valid, else None.

        Plainly valid is what ``_plainly_valid`` accepts, minus nulls: exactly the schema's fields, each an
        ``int`` or a finite ``float`` as declared. Done for the whole request at once (C-level maps and one
        numpy check instead of a Python loop per field). None means "not sure": run ``check`` (which names
        every problem, or finds the records valid after all, e.g. a null in a nullable field).
        """
        import numpy as np

        getter, kinds = self._getter, self._kinds
        if getter is None or not records:
            return None
        width = len(kinds)
        # every schema field present (the getter below) and nothing else (the lengths): keys == the schema's
        try:
            if len(lengths := set(map(len, records))) != 1 or lengths.pop() != width:
                return None
            values = list(map(getter, records)) if width == 1 else list(chain.from_iterable(map(getter, records)))
        except (KeyError, TypeError, IndexError):  # a missing field, or a record that is not an object
            return None
        if self._kind is not None:  # one type for every field: count the values of exactly that type
            if countOf(map(type, values), self._kind) != len(values):
                return None
        elif list(map(type, values)) != kinds * len(records):
            return None
        try:
            matrix = np.array(values, dtype=np.float64)
        except (OverflowError, ValueError, TypeError):
            return None
        if not _all_finite(values, matrix):  # NaN or inf in a float field (ints are finite once converted)
            return None
        return matrix.reshape(len(records), width)

    def _plainly_valid(self, records: list[Any]) -> bool:
        """The hot path: every record has exactly the schema's fields, each a finite float or an int as declared."""
        nameset, fields = self._nameset, self._fast
        assert fields is not None
        for record in records:
            if type(record) is not dict or record.keys() != nameset:
                return False
            for name, kind, nullable in fields:
                value = record[name]
                if type(value) is not kind:
                    if value is None and nullable:
                        continue
                    return False
                if kind is float and value - value != 0.0:  # inf or NaN
                    return False
        return True

    @staticmethod
    def _problem(
        value: Any, dtype: str, nullable: bool, categories: frozenset[Any] | None, listed: list[Any] | None
    ) -> str | None:
        if value is None:
            return None if nullable else "null is not allowed"
        if dtype == "float":
            if type(value) is float or (isinstance(value, int | float) and not isinstance(value, bool)):
                return None if math.isfinite(value) else "must be a finite number"
            return f"expected a number, got {_type_name(value)}"
        if dtype == "integer":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"expected an integer, got {_type_name(value)}"
            if isinstance(value, float) and not value.is_integer():
                return f"expected an integer, got {value!r}"
            return None
        if dtype == "boolean":
            return None if isinstance(value, bool) else f"expected a boolean, got {_type_name(value)}"
        if dtype == "datetime":
            if parse_timestamp(value) is None:
                shown = repr(value) if isinstance(value, str) else _type_name(value)
                return (
                    f"expected an ISO 8601 date or timestamp (e.g. '2026-03-01' or '2026-03-01T09:30:00Z'), got {shown}"
                )
            return None
        if dtype == "string" and not isinstance(value, str):
            return f"expected a string, got {_type_name(value)}"
        if dtype == "category" and not isinstance(value, str | int | float | bool):
            return f"expected a category, got {_type_name(value)}"
        if categories is not None and value not in categories:
            shown = ", ".join(repr(v) for v in (listed or [])[:20])
            return f"unseen category {value!r} (known: {shown})"
        return None

    def clean(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records restricted to the schema's fields (after a successful check)."""
        if not self.ignore_unknown:
            return records
        nameset = self._nameset
        return [r if r.keys() == nameset else {k: r[k] for k in self._names if k in r} for r in records]


SUM_CHECK_VALUES = 512  # up to this many values, a Python sum checks finiteness faster than numpy's call overhead


def _all_finite(values: list[Any], matrix: np.ndarray) -> bool:
    """Whether every value is finite. A finite sum proves it (NaN and inf propagate); only a sum that is not
    (an overflow, or a value that is not finite) takes numpy's exact check, as large requests do."""
    import numpy as np

    if len(values) <= SUM_CHECK_VALUES:
        try:
            if math.isfinite(sum(values)):
                return True
        except OverflowError:  # an int sum too large for a float
            pass
    return bool(np.isfinite(matrix).all())


def _outside(value: Any, dtype: str, low: float | None, high: float | None) -> str | None:
    """Why a valid value breaks a declared range, or None."""
    if dtype == "datetime":
        parsed = parse_timestamp(value)
        number = timestamp_seconds(parsed) if parsed is not None else None
    else:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None:
        return None
    if (low is not None and number < low) or (high is not None and number > high):
        return f"outside the declared range {_shown(low, dtype)} .. {_shown(high, dtype)}"
    return None


def _shown(bound: float | None, dtype: str) -> str:
    if bound is None:
        return "(none)"
    if dtype == "datetime":
        return datetime.fromtimestamp(bound, UTC).isoformat()
    return f"{bound:g}"
