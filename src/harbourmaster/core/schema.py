"""Input and output schemas of a version, inferred from training data, and their diffs.

A schema records what a version was trained on: each input column's type, whether
nulls were seen, the allowed values of low-cardinality columns and the numeric
range seen. Everything is JSON-safe plain Python (no numpy scalars, no NaN).

Text whose every value is an ISO 8601 date or timestamp is a ``datetime`` column: its
range (seconds since the epoch) is recorded, never a closed list of dates, so a
request dated after the training window is valid. A column's ``role`` says what the
pipeline does with it: ``feature`` (used), ``id`` (identifies a record, not used) or
``ignored`` (not used: dropped by the ``prepare`` step, or declared so); only
features are profiled and range-checked. A column that is not ``required`` may be
left out of a request (the pipeline sees a null). A declared range is enforced
(``range_enforced``); a range inferred from training data is an observation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from harbourmaster.core.timestamps import epoch_seconds, looks_like_dates
from harbourmaster.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ColumnSchema",
    "Dtype",
    "InputSchema",
    "OutputSchema",
    "SchemaChange",
    "diff_input_schemas",
    "diff_output_schemas",
    "infer_column_schema",
    "infer_input_schema",
    "infer_output_schema",
]

Dtype = Literal["integer", "float", "boolean", "string", "datetime", "category"]
Role = Literal["feature", "id", "ignored"]
Scalar = str | int | float | bool
DTYPES: tuple[str, ...] = ("integer", "float", "boolean", "string", "datetime", "category")
ROLES: tuple[str, ...] = ("feature", "id", "ignored")

OUTPUT_COLUMN = "<output>"


class ColumnSchema(BaseModel):
    """One input column: its type, nullability, allowed values, range, role and whether requests must send it.

    ``minimum``/``maximum`` of a ``datetime`` column are seconds since the epoch (UTC).
    """

    name: str
    dtype: Dtype
    nullable: bool
    categories: list[Scalar] | None = None
    minimum: float | None = None
    maximum: float | None = None
    role: Role = "feature"
    required: bool = True
    range_enforced: bool = False


class InputSchema(BaseModel):
    """The ordered input columns a version expects."""

    columns: list[ColumnSchema]

    def column(self, name: str) -> ColumnSchema | None:
        """Return the column called ``name``, or None if there is none."""
        for col in self.columns:
            if col.name == name:
                return col
        return None

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [col.name for col in self.columns]

    @property
    def features(self) -> list[str]:
        """Names of the columns the pipeline uses (role ``feature``), in order."""
        return [col.name for col in self.columns if col.role == "feature"]


class OutputSchema(BaseModel):
    """What a version predicts: task kind, prediction dtype, classes, probabilities."""

    task: Literal["classification", "regression", "other"]
    dtype: str
    classes: list[Scalar] | None = None
    has_probabilities: bool = False


class SchemaChange(BaseModel):
    """One difference between two schemas; ``breaking`` if existing callers may fail."""

    column: str
    change: Literal["added", "removed", "dtype", "nullable", "required", "categories", "range", "probabilities"]
    before: Any = None
    after: Any = None
    breaking: bool


# --------------------------------------------------------------------------- helpers


def to_python(value: Any) -> Any:
    """Convert a numpy/pandas scalar to a plain JSON-safe Python value (NaN -> None)."""
    import numpy as np
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, pd.Timestamp | np.datetime64):
        return pd.Timestamp(value).isoformat()
    return str(value)


def _sorted_values(values: list[Scalar]) -> list[Scalar]:
    """Sort mixed-type values deterministically (by type name, then value)."""
    try:
        return sorted(values)  # type: ignore[type-var]
    except TypeError:
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def dtype_of(values: pd.Series) -> Dtype:
    """Map a pandas series to the schema dtype vocabulary."""
    import pandas as pd

    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred == "boolean":
            return "boolean"
        if inferred in ("date", "datetime", "datetime64") or (inferred == "string" and looks_like_dates(values)):
            return "datetime"
    return "string"


def _distinct_values(values: pd.Series, max_categories: int) -> list[Scalar] | None:
    """Distinct non-null values as Python scalars, or None if there are too many."""
    import pandas as pd

    if isinstance(values.dtype, pd.CategoricalDtype):
        declared = [to_python(v) for v in values.cat.categories]
        if len(declared) > max_categories:
            return None
        return [v for v in declared if v is not None]
    uniques = values.dropna().unique()
    if len(uniques) > max_categories:
        return None
    converted = {to_python(v) for v in uniques}
    converted.discard(None)
    return _sorted_values(list(converted))


def _numeric_range(values: pd.Series) -> tuple[float | None, float | None]:
    """Finite minimum and maximum of a numeric series (None if no finite value)."""
    import numpy as np
    import pandas as pd

    array = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return None, None
    return float(finite.min()), float(finite.max())


def _datetime_range(values: pd.Series) -> tuple[float | None, float | None]:
    """Earliest and latest date as seconds since the epoch (None if there is none)."""
    seconds = epoch_seconds(values)
    if seconds.size == 0:
        return None, None
    return float(seconds.min()), float(seconds.max())


# ------------------------------------------------------------------------- inference


def infer_column_schema(
    name: str, values: pd.Series, *, dtype: Dtype | None = None, withheld: bool = False, max_categories: int = 100
) -> ColumnSchema:
    """One column's schema; ``dtype`` (a declared type) replaces the inferred one."""
    dtype = dtype or dtype_of(values)
    categories = None
    minimum = maximum = None
    if withheld:
        pass
    elif dtype in ("string", "category", "boolean"):
        categories = _distinct_values(values, max_categories)
    elif dtype in ("integer", "float"):
        minimum, maximum = _numeric_range(values)
    elif dtype == "datetime":
        minimum, maximum = _datetime_range(values)
    return ColumnSchema(
        name=name,
        dtype=dtype,
        nullable=bool(values.isna().any()),
        categories=categories,
        minimum=minimum,
        maximum=maximum,
    )


def infer_input_schema(frame: pd.DataFrame, max_categories: int = 100, sensitive: Iterable[str] = ()) -> InputSchema:
    """Infer the input schema of ``frame``.

    ``categories`` is recorded for string, category and boolean columns with at most
    ``max_categories`` distinct values (declared categories for pandas categoricals);
    ``minimum``/``maximum`` are the finite range seen in integer and float columns, and
    the dates seen (seconds since the epoch) in datetime columns, ISO 8601 text included.
    Columns named in ``sensitive`` record neither (their values stay out of the manifest).
    Raises ``InvalidInputError`` for duplicate column names.
    """
    withheld = {str(name) for name in sensitive}
    if frame.columns.duplicated().any():
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise InvalidInputError(
            f"cannot infer a schema with duplicate column names: {', '.join(dupes)}",
            "rename or drop the duplicate columns",
        )
    columns = [
        infer_column_schema(str(name), frame[name], withheld=str(name) in withheld, max_categories=max_categories)
        for name in frame.columns
    ]
    return InputSchema(columns=columns)


def _final_step(estimator: Any) -> Any:
    """The last step of a Pipeline (recursively), or the estimator itself."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        last = steps[-1]
        if isinstance(last, tuple) and len(last) >= 2:
            return _final_step(last[1])
    return estimator


def _safe_check(check: Any, estimator: Any) -> bool:
    try:
        return bool(check(estimator))
    except Exception:
        return False


def _classes_of(estimator: Any) -> list[Scalar] | None:
    import numpy as np

    for candidate in (estimator, _final_step(estimator)):
        classes = getattr(candidate, "classes_", None)
        if classes is None:
            continue
        array = np.asarray(classes, dtype=object)
        if array.ndim != 1:
            return None
        return [to_python(v) for v in array if to_python(v) is not None]
    return None


def _predictions_dtype(predictions: Any) -> str:
    import numpy as np
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        if predictions.shape[1] == 1:
            return dtype_of(predictions.iloc[:, 0])
        return "float" if all(pd.api.types.is_float_dtype(d) for d in predictions.dtypes) else "string"
    if isinstance(predictions, pd.Series):
        return dtype_of(predictions)
    array = np.asarray(predictions)
    return dtype_of(pd.Series(array.reshape(-1)))


def infer_output_schema(estimator: Any, predictions: Any) -> OutputSchema:
    """Infer the output schema of a fitted ``estimator`` from sample ``predictions``.

    Classification when the estimator (or a Pipeline's last step) has ``classes_``
    or is a scikit-learn classifier; regression for scikit-learn regressors;
    ``other`` otherwise.
    """
    from sklearn.base import is_classifier, is_regressor

    classes = _classes_of(estimator)
    final = _final_step(estimator)
    if classes is not None or _safe_check(is_classifier, estimator) or _safe_check(is_classifier, final):
        task: Literal["classification", "regression", "other"] = "classification"
    elif _safe_check(is_regressor, estimator) or _safe_check(is_regressor, final):
        task = "regression"
    else:
        task = "other"
    try:
        has_probabilities = callable(getattr(estimator, "predict_proba", None))
    except Exception:
        has_probabilities = False
    return OutputSchema(
        task=task,
        dtype=_predictions_dtype(predictions),
        classes=classes if task == "classification" else None,
        has_probabilities=has_probabilities,
    )


# ------------------------------------------------------------------------------ diffs

_WIDENING_DTYPES = {("integer", "float")}


def _diff_categories(column: str, before: list[Scalar] | None, after: list[Scalar] | None) -> SchemaChange | None:
    """Input categories: removing an allowed value (or adding a restriction) breaks."""
    if before == after or (before is not None and after is not None and set(before) == set(after)):
        return None
    if after is None:
        breaking = False  # restriction lifted: widening
    elif before is None:
        breaking = True  # a restriction appeared
    else:
        breaking = bool(set(before) - set(after))
    return SchemaChange(column=column, change="categories", before=before, after=after, breaking=breaking)


def diff_input_schemas(old: InputSchema, new: InputSchema) -> list[SchemaChange]:
    """List the changes from ``old`` to ``new`` input schema.

    Breaking: a removed column callers had to send (they may still send it: that
    is an unknown field now), an added column callers must send (required and not
    nullable), a dtype change (except integer -> float, which accepts every value it
    did before), nullable -> not nullable, optional -> required, and allowed
    categories removed. Widening changes are not breaking. Range changes are
    reported, breaking only when a declared (enforced) range narrows.
    """
    changes: list[SchemaChange] = []
    new_names = set(new.names)
    for col in old.columns:
        if col.name not in new_names:
            changes.append(
                SchemaChange(column=col.name, change="removed", before=col.dtype, after=None, breaking=col.required)
            )
    for after in new.columns:
        before = old.column(after.name)
        if before is None:
            changes.append(
                SchemaChange(
                    column=after.name,
                    change="added",
                    before=None,
                    after=after.dtype,
                    breaking=after.required and not after.nullable,
                )
            )
            continue
        name = after.name
        if before.required != after.required:
            changes.append(
                SchemaChange(
                    column=name,
                    change="required",
                    before=before.required,
                    after=after.required,
                    breaking=after.required and not after.nullable,
                )
            )
        if before.dtype != after.dtype:
            changes.append(
                SchemaChange(
                    column=name,
                    change="dtype",
                    before=before.dtype,
                    after=after.dtype,
                    breaking=(before.dtype, after.dtype) not in _WIDENING_DTYPES,
                )
            )
        if before.nullable != after.nullable:
            changes.append(
                SchemaChange(
                    column=name,
                    change="nullable",
                    before=before.nullable,
                    after=after.nullable,
                    breaking=before.nullable and not after.nullable,
                )
            )
        if before.dtype != after.dtype:
            continue  # categories and ranges are not comparable across dtypes
        category_change = _diff_categories(name, before.categories, after.categories)
        if category_change is not None:
            changes.append(category_change)
        if (before.minimum, before.maximum) != (after.minimum, after.maximum):
            changes.append(
                SchemaChange(
                    column=name,
                    change="range",
                    before=[before.minimum, before.maximum],
                    after=[after.minimum, after.maximum],
                    breaking=after.range_enforced and _narrower(before, after),
                )
            )
    return changes


def _narrower(before: ColumnSchema, after: ColumnSchema) -> bool:
    """True when ``after``'s range refuses a value ``before``'s accepted."""
    low_raised = after.minimum is not None and (before.minimum is None or after.minimum > before.minimum)
    high_lowered = after.maximum is not None and (before.maximum is None or after.maximum < before.maximum)
    return low_raised or high_lowered


def diff_output_schemas(old: OutputSchema, new: OutputSchema) -> list[SchemaChange]:
    """List the changes from ``old`` to ``new`` output schema (column ``"<output>"``).

    A task change is reported as a ``dtype`` change whose before/after are task names;
    a prediction dtype change as a ``dtype`` change of dtypes. Both are breaking. Any
    change to the class set is breaking (consumers see new labels or miss old ones,
    and probability columns follow the classes). Losing probabilities is breaking,
    gaining them is not.
    """
    # (change kind, before, after, breaking): losing probabilities breaks consumers, gaining them does not.
    compared = (
        ("dtype", old.task, new.task, True),
        ("dtype", old.dtype, new.dtype, True),
        ("categories", old.classes, new.classes, True),
        ("probabilities", old.has_probabilities, new.has_probabilities, old.has_probabilities),
    )
    return [
        SchemaChange(column=OUTPUT_COLUMN, change=change, before=before, after=after, breaking=breaking)
        for change, before, after, breaking in compared
        if before != after
    ]
