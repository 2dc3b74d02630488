"""Training data checked before any project code runs: problems named by column, not by a KeyError.

The reference is what the project declared (``[schema]``) and, for columns it did not
declare, the schema of the previous version. Checked: a column that must be there and is
not, values that are not of the column's type (a string in a numeric column), values
outside declared categories or range, nulls where none are allowed, an all-null target,
and too few rows to train and evaluate on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from harbourmaster.core.declared_schema import ColumnDeclaration, suggest_column
from harbourmaster.core.schema import InputSchema, dtype_of
from harbourmaster.core.timestamps import ISO_DATE_PATTERN, parse_timestamp, timestamp_seconds

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DataProblem",
    "category_outsiders",
    "check_row_counts",
    "check_training_data",
    "date_seconds",
    "describe",
    "range_outsiders",
    "type_mismatches",
]

_SHOWN = 3
_BOOLEANS = [True, False]  # equal to 1 and 0 (and 1.0, 0.0) too, as a membership test sees them


class DataProblem(str):
    """One problem with the training data, naming the column (a plain string).

    ``column``, ``check`` (``columns``, ``types``, ``nulls``, ``categories``, ``declared_ranges``,
    ``rows``) and ``count`` (offending values) are what a run records of it.
    """

    column: str | None
    check: str
    count: int | None

    def __new__(cls, text: str, column: str | None = None, check: str = "columns", count: int | None = None):
        problem = super().__new__(cls, text)
        problem.column, problem.check, problem.count = column, check, count
        return problem


def _examples(values: pd.Series) -> str:
    """The first few offending values and their row numbers (1 = the first data row)."""
    shown = [f"{v!r} (row {position + 1})" for position, v in list(values.items())[:_SHOWN]]
    more = f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else ""
    return ", ".join(shown) + more


def _positional(values: pd.Series) -> pd.Series:
    return values.reset_index(drop=True)


def type_mismatches(values: pd.Series, dtype: str, seconds: pd.Series | None = None) -> pd.Series:
    """Mask (aligned with ``values``) of the non-null values that are not of ``dtype``, over the whole column.

    Numbers may be written as text (a CSV column with one stray word is read as text); whole numbers
    for ``integer``; true/false or 1/0 for ``boolean``; ISO 8601 dates for ``datetime`` (``seconds``:
    the column's ``date_seconds``, when already computed). Strings and categories hold anything.
    """
    import pandas as pd

    present = values.notna()
    if dtype in ("integer", "float"):
        if pd.api.types.is_bool_dtype(values.dtype):
            return present
        numbers = pd.to_numeric(values, errors="coerce")
        bad = present & numbers.isna()
        if dtype == "integer":
            bad |= numbers.notna() & ((numbers % 1) != 0)
        return bad
    if dtype == "boolean":
        if pd.api.types.is_bool_dtype(values.dtype):
            return present & False
        return present & ~values.isin(_BOOLEANS)
    if dtype == "datetime":
        return present & (date_seconds(values) if seconds is None else seconds).isna()
    return present & False


def _since_epoch(stamps: pd.Series) -> pd.Series:
    import pandas as pd

    if getattr(stamps.dtype, "tz", None) is None:
        stamps = stamps.dt.tz_localize("UTC")
    # In microseconds: years pandas parses at a coarser unit (0001-01-01) do not overflow nanoseconds.
    return (stamps.dt.as_unit("us") - pd.Timestamp(0, tz="UTC").as_unit("us")).dt.total_seconds()


def date_seconds(values: pd.Series) -> pd.Series:
    """Seconds since the epoch of each value that is a date (a datetime, or ISO 8601 text naming a real day;
    naive ones read as UTC), NaN for every other value. One parse of the whole column."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _since_epoch(values).astype(float)
    if not (pd.api.types.is_string_dtype(values.dtype) or pd.api.types.is_object_dtype(values.dtype)):
        return pd.Series(np.nan, index=values.index)
    objects = None
    text = values
    if pd.api.types.is_object_dtype(values.dtype):  # text mixed with other things: only the text is text
        kinds = values.map(type)
        text = values.where(kinds.isin((str,)))
        objects = kinds.isin((datetime, date, pd.Timestamp))
    seconds = pd.Series(np.nan, index=values.index)
    if text.notna().any():
        stripped = text.str.strip()
        written = stripped.str.fullmatch(ISO_DATE_PATTERN).fillna(False).astype(bool)
        parsed = pd.to_datetime(stripped.where(written), format="ISO8601", utc=True, errors="coerce")
        seconds = _since_epoch(parsed).astype(float)
        unsure = written & seconds.isna()  # well formed but beyond pandas' years, or no real day: Python decides
        if unsure.any():
            exact = {v: _one_second(v) for v in stripped[unsure].unique()}
            seconds = seconds.where(~unsure, stripped.map(exact))
    if objects is not None and objects.any():
        stamps = pd.to_datetime(values.where(objects), utc=True, errors="coerce")
        seconds = seconds.where(~objects, _since_epoch(stamps))
    return seconds.astype(float)


def _one_second(value: Any) -> float:
    parsed = parse_timestamp(value)
    return timestamp_seconds(parsed) if parsed is not None else float("nan")


def range_outsiders(
    values: pd.Series, dtype: str, low: float | None, high: float | None, seconds: pd.Series | None = None
) -> pd.Series:
    """Mask of the values outside ``low .. high`` (seconds since the epoch for dates: ``seconds``, the
    column's ``date_seconds`` when already computed); nulls and values of another type are not outside."""
    import pandas as pd

    if dtype == "datetime":
        numbers = date_seconds(values) if seconds is None else seconds
    else:
        numbers = pd.to_numeric(values, errors="coerce")
    outside = values.isna() & False
    if low is not None:
        outside |= numbers < low
    if high is not None:
        outside |= numbers > high
    return outside.fillna(False).astype(bool)


def category_outsiders(values: pd.Series, categories: list[Any]) -> pd.Series:
    """Mask of the non-null values that are none of ``categories``."""
    return values.notna() & ~values.isin(categories)


def _not_of_type(values: pd.Series, dtype: str) -> pd.Series:
    """The non-null values of ``values`` (positionally indexed) that are not of ``dtype``."""
    present = _positional(values)
    return present[type_mismatches(present, dtype)]


def _type_word(dtype: str) -> str:
    return {"integer": "whole numbers", "float": "numbers", "boolean": "true/false", "datetime": "ISO 8601 dates"}.get(
        dtype, dtype
    )


def _column_problems(
    name: str, values: pd.Series, dtype: str | None, reference: str, declared: ColumnDeclaration | None
) -> list[DataProblem]:
    problems: list[DataProblem] = []
    if dtype is not None:
        bad = _not_of_type(values, dtype)
        if len(bad):
            problems.append(
                DataProblem(
                    f"column {name!r} must hold {_type_word(dtype)} ({reference}) but holds {_examples(bad)}",
                    name,
                    "types",
                    len(bad),
                )
            )
            return problems
    if declared is None:
        return problems
    if declared.nullable is False and values.isna().any():
        rows = _positional(values)
        nulls = int(values.isna().sum())
        problems.append(
            DataProblem(
                f"column {name!r} is declared nullable = false but has {nulls} null(s), "
                f"e.g. row {int(rows[rows.isna()].index[0]) + 1}",
                name,
                "nulls",
                nulls,
            )
        )
    if declared.categories is not None:
        present = _positional(values)
        bad = present[category_outsiders(present, declared.categories)]
        if len(bad):
            problems.append(
                DataProblem(
                    f"column {name!r} holds values outside its declared categories: {_examples(bad)}",
                    name,
                    "categories",
                    len(bad),
                )
            )
    if declared.min is not None or declared.max is not None:
        ranged = declared.type or dtype_of(values)  # a range declared without a type: the data's own type
        if ranged in ("integer", "float", "datetime"):
            problems.extend(_range_problems(name, values, ranged, declared))
    return problems


def _range_problems(name: str, values: pd.Series, dtype: str, declared: ColumnDeclaration) -> list[DataProblem]:
    low, high = declared.bounds(dtype)
    present = _positional(values)
    bad = present[range_outsiders(present, dtype, low, high)]
    if not len(bad):
        return []
    wanted = " and ".join(
        part
        for part in (f">= {declared.min}" if low is not None else "", f"<= {declared.max}" if high is not None else "")
        if part
    )
    return [
        DataProblem(
            f"column {name!r} holds values outside its declared range ({wanted}): {_examples(bad)}",
            name,
            "declared_ranges",
            len(bad),
        )
    ]


def check_training_data(
    frame: pd.DataFrame,
    target: str,
    declarations: Mapping[str, ColumnDeclaration],
    previous: InputSchema | None = None,
    previous_label: str = "the previous version",
) -> list[DataProblem]:
    """Every problem of ``frame`` against the declarations and, for undeclared columns, ``previous``."""
    problems: list[DataProblem] = []
    columns = [str(c) for c in frame.columns]
    present = set(columns)
    for name, declared in declarations.items():
        if declared.role == "ignored" or name in present:
            continue
        problems.append(
            DataProblem(
                f"column {name!r} is declared in [schema] but is not in the data{suggest_column(name, columns)}",
                name,
            )
        )
    if previous is not None:
        for column in previous.columns:
            if column.name in present or column.name in declarations or column.role != "feature" or not column.required:
                continue
            problems.append(
                DataProblem(
                    f"column {column.name!r} is missing: {previous_label} was trained with it"
                    f"{suggest_column(column.name, columns)}",
                    column.name,
                )
            )
    if target in present:
        values = frame[target]
        if values.isna().all():
            problems.append(
                DataProblem(
                    f"target column {target!r} has no value: all {len(values)} rows are null",
                    target,
                    "nulls",
                    len(values),
                )
            )
        else:
            declared = declarations.get(target)
            dtype = declared.type if declared is not None else None
            problems.extend(_column_problems(target, values, dtype, "as declared", declared))
    for name in columns:
        if name == target:
            continue
        declared = declarations.get(name)
        if declared is not None and not declared.used:
            continue
        earlier = previous.column(name) if previous is not None else None
        if declared is not None and declared.type is not None:
            dtype: str | None = declared.type
            reference = "as declared in [schema]"
        elif earlier is not None and earlier.role == "feature" and earlier.dtype in ("integer", "float", "datetime"):
            dtype = "float" if earlier.dtype == "integer" else earlier.dtype
            reference = f"as in {previous_label}"
        else:
            dtype, reference = None, ""
        problems.extend(_column_problems(name, frame[name], dtype, reference, declared))
    return problems


def check_row_counts(training_rows: int, evaluation_rows: int, minimum: int) -> DataProblem | None:
    """Why either side of the split is too small (fewer than ``minimum`` rows), or None."""
    if training_rows >= minimum and evaluation_rows >= minimum:
        return None
    return DataProblem(
        f"{training_rows} to train on and {evaluation_rows} held out to evaluate on; "
        f"at least {minimum} of each are needed ([evaluation] min_rows)",
        None,
        "rows",
        min(training_rows, evaluation_rows),
    )


def describe(problems: list[DataProblem], source: str) -> dict[str, Any]:
    """Message and hint for a ``DataProblemError`` listing ``problems`` found in the data from ``source``."""
    count = len(problems)
    return {
        "message": f"{count} problem(s) in the training data from {source}: " + "; ".join(problems),
        "hint": "fix the data, or what [schema] in harbourmaster.toml declares about the column "
        "(see 'Training data checks' in docs/project-file.md)",
    }
