"""Column declarations: what a project says about its columns when inference would guess wrong.

Declared in ``[schema.<column>]`` tables of ``harbourmaster.toml`` or passed as ``schema=`` to
``Client.register``. A declaration sets any of a column's type, role (``feature``, ``id``,
``ignored``, ``target``), allowed range and categories, nullability and whether requests
may leave it out (``optional``). Declared ranges and categories are constraints: requests
outside them are refused, and so is training data (see ``core.data_checks``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from harbourmaster.core.schema import (
    DTYPES,
    ColumnSchema,
    InputSchema,
    infer_column_schema,
)
from harbourmaster.core.timestamps import parse_timestamp, timestamp_seconds
from harbourmaster.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DECLARABLE_ROLES",
    "ColumnDeclaration",
    "DeclarationError",
    "apply_declarations",
    "declared_target",
    "parse_declarations",
    "suggest_column",
]

DECLARABLE_ROLES = ("feature", "id", "ignored", "target")
_RANGED = ("integer", "float", "datetime")
_LISTED = ("string", "category", "integer", "boolean")
Bound = bool | int | float | str | date | datetime


def _shown(value: Bound) -> str:
    """A declared value as it would be written in the project file (a TOML date as 2024-01-01, not its repr)."""
    return value.isoformat() if isinstance(value, date) else repr(value)


class DeclarationError(ValueError):
    """A declaration that cannot hold, with the fix."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _bound_value(value: Bound, dtype: str | None, key: str) -> float:
    """A declared bound as a number (seconds since the epoch for a date)."""
    if isinstance(value, bool):
        raise DeclarationError(f"{key} = {value!r} is not a number or a date", f"write {key} as a number or a date")
    if isinstance(value, int | float):
        if dtype == "datetime":
            raise DeclarationError(
                f"{key} = {value!r} is a number but the column is a datetime",
                f'write {key} as a date, e.g. {key} = "2024-01-01"',
            )
        if not math.isfinite(value):
            raise DeclarationError(f"{key} = {value!r} is not finite", f"write {key} as a finite number")
        return float(value)
    if dtype not in (None, "datetime"):
        raise DeclarationError(
            f"{key} = {_shown(value)} is not a number but the column is {dtype}",
            f"write {key} as a number, e.g. {key} = 0",
        )
    parsed = parse_timestamp(value)
    if parsed is None:
        raise DeclarationError(
            f"{key} = {value!r} is neither a number nor an ISO 8601 date",
            f'write {key} as a number or a date such as "2024-01-01"',
        )
    return timestamp_seconds(parsed)


class ColumnDeclaration(BaseModel):
    """One column's declared facts; every key is optional, what is left out is inferred."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["integer", "float", "boolean", "string", "datetime", "category"] | None = None
    role: Literal["feature", "id", "ignored", "target"] | None = None
    min: Bound | None = None
    max: Bound | None = None
    categories: list[str | int | float | bool] | None = None
    nullable: bool | None = None
    optional: bool | None = None

    @field_validator("categories")
    @classmethod
    def _listed(cls, value: list[Any] | None) -> list[Any] | None:
        if value is None:
            return None
        if not value:
            raise DeclarationError(
                "the list is empty", "list the allowed values, or leave categories out to infer them"
            )
        repeated = sorted({repr(v) for v in value if value.count(v) > 1})
        if repeated:
            raise DeclarationError(f"categories repeats {', '.join(repeated)}", "list each allowed value once")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ColumnDeclaration:
        ranged = self.min is not None or self.max is not None
        if self.role in ("id", "ignored") and (ranged or self.categories is not None):
            raise DeclarationError(
                f"a column with role {self.role!r} is not used by the pipeline, so it has no range or categories",
                "remove min, max and categories, or make it a feature",
            )
        if self.role == "target" and self.optional is not None:
            raise DeclarationError("the target cannot be optional", "remove optional from the target's declaration")
        if ranged and self.type is not None and self.type not in _RANGED:
            raise DeclarationError(
                f"a {self.type} column has no range", "remove min and max, or declare type integer, float or datetime"
            )
        if self.categories is not None and self.type is not None and self.type not in _LISTED:
            raise DeclarationError(
                f"a {self.type} column has no categories",
                "remove categories, or declare type category, string, integer or boolean",
            )
        if ranged and self.categories is not None:
            raise DeclarationError("both a range and categories are declared", "keep either min/max or categories")
        low = _bound_value(self.min, self.type, "min") if self.min is not None else None
        high = _bound_value(self.max, self.type, "max") if self.max is not None else None
        if low is not None and high is not None and low > high:
            raise DeclarationError(
                f"min {_shown(self.min)} is greater than max {_shown(self.max)}",
                "swap them, or fix the one that is wrong",
            )
        return self

    def bounds(self, dtype: str) -> tuple[float | None, float | None]:
        """The declared range as numbers (seconds since the epoch for dates) for a column of ``dtype``."""
        if dtype not in _RANGED:
            raise DeclarationError(
                f"a range is declared but the column is {dtype}",
                'remove min and max, or declare type = "float", "integer" or "datetime"',
            )
        low = _bound_value(self.min, dtype, "min") if self.min is not None else None
        high = _bound_value(self.max, dtype, "max") if self.max is not None else None
        return low, high

    @property
    def used(self) -> bool:
        """False for an ``id`` or ``ignored`` column."""
        return self.role not in ("id", "ignored")


def parse_declarations(raw: Mapping[str, Any] | None) -> dict[str, ColumnDeclaration]:
    """Validate ``schema=`` given to ``register`` (column -> declaration); raises ``InvalidInputError``."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInputError(
            f"schema must map column names to declarations, got {type(raw).__name__}",
            'pass e.g. schema={"order_id": {"role": "id"}}',
        )
    parsed: dict[str, ColumnDeclaration] = {}
    for name, declaration in raw.items():
        if isinstance(declaration, ColumnDeclaration):
            parsed[str(name)] = declaration
            continue
        try:
            parsed[str(name)] = ColumnDeclaration.model_validate(declaration)
        except ValidationError as exc:
            problems, hints = [], []
            for error in exc.errors():
                key = ".".join(str(p) for p in error["loc"])
                cause = (error.get("ctx") or {}).get("error")
                message = str(cause) if isinstance(cause, DeclarationError) else str(error["msg"])
                problems.append(f"schema[{name!r}]{'.' + key if key else ''}: {message}")
                hints.append(
                    cause.hint
                    if isinstance(cause, DeclarationError)
                    else f"allowed keys: {', '.join(ColumnDeclaration.model_fields)}; types: {', '.join(DTYPES)}; "
                    f"roles: {', '.join(DECLARABLE_ROLES)}"
                )
            raise InvalidInputError("; ".join(problems), "; ".join(dict.fromkeys(hints))) from None
    return parsed


def declared_target(declarations: Mapping[str, ColumnDeclaration]) -> str | None:
    """The column declared with role ``target``, if one is; raises when several are."""
    targets = [name for name, declared in declarations.items() if declared.role == "target"]
    if len(targets) > 1:
        raise InvalidInputError(
            f"several columns are declared role = 'target': {', '.join(targets)}",
            "declare one target column",
        )
    return targets[0] if targets else None


def suggest_column(name: str, columns: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a close column name, else ''."""
    close = difflib.get_close_matches(name, [str(c) for c in columns], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def apply_declarations(
    schema: InputSchema,
    features: pd.DataFrame,
    declarations: Mapping[str, ColumnDeclaration],
    *,
    unused: Iterable[str] = (),
    sensitive: Iterable[str] = (),
) -> InputSchema:
    """The inferred ``schema`` of ``features`` with the declarations laid over it.

    ``unused`` are columns the fitted pipeline was found not to read: role ``ignored`` and not
    required, unless declared otherwise. A declared type re-infers the column's categories or range
    as that type (a ``string`` column keeps no category list: free text). Raises ``InvalidInputError``
    for a declared column the data does not have (other than an ``ignored`` one).
    """
    withheld = {str(name) for name in sensitive}
    not_read = {str(name) for name in unused}
    present = set(schema.names)
    for name, declared in declarations.items():
        if name not in present and declared.role not in ("ignored", "target"):
            raise InvalidInputError(
                f"schema declares column {name!r}, which is not in the training data{suggest_column(name, present)}",
                f"fix the column name, or remove the declaration (columns: {', '.join(sorted(present)[:20])})",
            )
    columns: list[ColumnSchema] = []
    for column in schema.columns:
        declared = declarations.get(column.name)
        if column.name in not_read and (declared is None or declared.role is None):
            column = column.model_copy(
                update={"role": "ignored", "required": False, "categories": None, "minimum": None, "maximum": None}
            )
        if declared is None:
            columns.append(column)
            continue
        columns.append(_declared_column(column, features[column.name], declared, column.name in withheld))
    return InputSchema(columns=columns)


def _declared_column(
    column: ColumnSchema, values: pd.Series, declared: ColumnDeclaration, withheld: bool
) -> ColumnSchema:
    if declared.type is not None and declared.type != column.dtype:
        column = infer_column_schema(column.name, values, dtype=declared.type, withheld=withheld)
    if declared.type == "string":  # free text: no closed list of values (declare categories for one)
        column = column.model_copy(update={"categories": None})
    update: dict[str, Any] = {}
    if declared.role in ("feature", "id", "ignored"):
        update["role"] = declared.role
    if not declared.used:
        update.update(required=False, categories=None, minimum=None, maximum=None)
    if declared.optional is not None:
        update["required"] = not declared.optional
    if declared.nullable is not None:
        update["nullable"] = declared.nullable
    if declared.categories is not None:
        update["categories"] = list(declared.categories)
    if declared.min is not None or declared.max is not None:
        try:
            low, high = declared.bounds(column.dtype)
        except DeclarationError as exc:
            raise InvalidInputError(f"schema of column {column.name!r}: {exc}", exc.hint) from None
        update.update(minimum=low, maximum=high, range_enforced=True)
    return column.model_copy(update=update)
