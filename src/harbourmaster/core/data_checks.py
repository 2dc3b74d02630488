"""Training data checked before any project code runs: problems named by column, not by a KeyError.

The reference is what the project declared (``[schema]``) and, for columns it did not
declare, the schema of the previous version. Checked: a column that must be there and is
not, values that are not of the column's type (a string in a numeric column), values
outside declared categories or range, nulls where none are allowed, an all-null target,
and too few rows to train and evaluate on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from harbourmaster.core.declared_schema import ColumnDeclaration, suggest_column
from harbourmaster.core.schema import InputSchema, dtype_of
from harbourmaster.core.timestamps import parse_timestamp, timestamp_seconds

__all__ = ["DataProblem", "check_row_counts", "check_training_data", "describe"]

_SHOWN = 3


class DataProblem(str):
    """One problem with the training data, naming the column (a plain string)."""


def _examples(values: pd.Series) -> str:
    """The first few offending values and their row numbers (1 = the first data row)."""
    shown = [f"{v!r} (row {position + 1})" for position, v in list(values.items())[:_SHOWN]]
    more = f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else ""
    return ", ".join(shown) + more


def _positional(values: pd.Series) -> pd.Series:
    return values.reset_index(drop=True)


def _not_of_type(values: pd.Series, dtype: str) -> pd.Series:
    """The non-null values of ``values`` (positionally indexed) that are not of ``dtype``."""
    present = _positional(values).dropna()
    if dtype in ("integer", "float"):
        if pd.api.types.is_bool_dtype(present.dtype):
            return present
        numbers = pd.to_numeric(present, errors="coerce")
        bad = present[numbers.isna()]
        if dtype == "integer":
            whole = numbers.dropna()
            bad = pd.concat([bad, present[whole.index[(whole % 1) != 0]]]).sort_index()
        return bad
    if dtype == "boolean":
        if pd.api.types.is_bool_dtype(present.dtype):
            return present.iloc[0:0]
        return present[~present.map(lambda v: isinstance(v, bool) or v in (0, 1)).astype(bool)]
    if dtype == "datetime":
        if pd.api.types.is_datetime64_any_dtype(present.dtype):
            return present.iloc[0:0]
        return present[present.map(lambda v: parse_timestamp(v) is None).astype(bool)]
    return present.iloc[0:0]  # string and category hold anything


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
                DataProblem(f"column {name!r} must hold {_type_word(dtype)} ({reference}) but holds {_examples(bad)}")
            )
            return problems
    if declared is None:
        return problems
    if declared.nullable is False and values.isna().any():
        rows = _positional(values)
        problems.append(
            DataProblem(
                f"column {name!r} is declared nullable = false but has {int(values.isna().sum())} null(s), "
                f"e.g. row {int(rows[rows.isna()].index[0]) + 1}"
            )
        )
    if declared.categories is not None:
        allowed = set(declared.categories)
        present = _positional(values).dropna()
        bad = present[~present.map(lambda v: v in allowed).astype(bool)]
        if len(bad):
            problems.append(
                DataProblem(f"column {name!r} holds values outside its declared categories: {_examples(bad)}")
            )
    if declared.min is not None or declared.max is not None:
        ranged = declared.type or dtype_of(values)  # a range declared without a type: the data's own type
        if ranged in ("integer", "float", "datetime"):
            problems.extend(_range_problems(name, values, ranged, declared))
    return problems


def _seconds(value: Any) -> float:
    parsed = parse_timestamp(value)
    return timestamp_seconds(parsed) if parsed is not None else float("nan")


def _range_problems(name: str, values: pd.Series, dtype: str, declared: ColumnDeclaration) -> list[DataProblem]:
    low, high = declared.bounds(dtype)
    present = _positional(values).dropna()
    numbers = present.map(_seconds).astype(float) if dtype == "datetime" else pd.to_numeric(present, errors="coerce")
    outside = pd.Series(False, index=present.index)
    if low is not None:
        outside |= numbers < low
    if high is not None:
        outside |= numbers > high
    bad = present[outside]
    if not len(bad):
        return []
    wanted = " and ".join(
        part
        for part in (f">= {declared.min}" if low is not None else "", f"<= {declared.max}" if high is not None else "")
        if part
    )
    return [DataProblem(f"column {name!r} holds values outside its declared range ({wanted}): {_examples(bad)}")]


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
                f"column {name!r} is declared in [schema] but is not in the data{suggest_column(name, columns)}"
            )
        )
    if previous is not None:
        for column in previous.columns:
            if column.name in present or column.name in declarations or column.role != "feature" or not column.required:
                continue
            problems.append(
                DataProblem(
                    f"column {column.name!r} is missing: {previous_label} was trained with it"
                    f"{suggest_column(column.name, columns)}"
                )
            )
    if target in present:
        values = frame[target]
        if values.isna().all():
            problems.append(DataProblem(f"target column {target!r} has no value: all {len(values)} rows are null"))
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
        f"at least {minimum} of each are needed ([evaluation] min_rows)"
    )


def describe(problems: list[DataProblem], source: str) -> dict[str, Any]:
    """Message and hint for a ``DataProblemError`` listing ``problems`` found in the data from ``source``."""
    count = len(problems)
    return {
        "message": f"{count} problem(s) in the training data from {source}: " + "; ".join(problems),
        "hint": "fix the data, or what [schema] in harbourmaster.toml declares about the column "
        "(see 'Training data checks' in docs/project-file.md)",
    }
