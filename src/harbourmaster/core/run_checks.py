"""A pipeline run's input data checked against a version's schema and profile: findings per column.

Every check runs over whole columns (pandas/numpy masks shared with the training-data checks of
``core.data_checks``), never a Python loop per row, and reports per column how many values fail:

- ``columns``: a column the version needs is missing, or one it does not know is present (when the
  deployment refuses unknown fields);
- ``types``: values not of the column's type (a word in a numeric column, a non-finite number);
- ``nulls``: nulls in a column that is not nullable;
- ``categories``: categories the version never saw (or outside the declared ones);
- ``ranges``: numbers and dates outside the training range (the version's profile): an observation,
  the rows are still scored;
- ``declared_ranges``: values outside a range declared in ``[schema]``;
- ``rows``: fewer rows than ``min_rows`` or more than ``max_rows``.

Each check has a severity set per project in ``[monitoring.runs]`` of ``harbourmaster.toml`` (and per
column): ``error`` makes the run invalid (nothing is produced), ``warning`` lets it succeed "valid with
warnings" (rows a model cannot take, e.g. a null it does not accept, are set aside and counted),
``off`` skips the check.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harbourmaster.core.data_checks import (
    DataProblem,
    category_outsiders,
    date_seconds,
    range_outsiders,
    type_mismatches,
)
from harbourmaster.core.profile import NumericProfile, ReferenceProfile
from harbourmaster.core.schema import ColumnSchema, InputSchema, to_python
from harbourmaster.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "CHECKS",
    "ColumnChecks",
    "Finding",
    "FrameValidation",
    "RunChecks",
    "ValidationReport",
    "findings_of_problems",
    "parse_run_checks",
    "row_count_findings",
    "summarise",
    "validate_frame",
]

Severity = Literal["error", "warning", "off"]
Verdict = Literal["valid", "warnings", "invalid"]
CHECKS = ("columns", "types", "nulls", "categories", "ranges", "declared_ranges", "rows")
ROW_CHECKS = frozenset({"columns", "types", "nulls", "categories", "declared_ranges"})  # rows a model cannot take
MAX_FINDINGS = 200  # per run: a frame of a thousand bad columns is summed up, not stored whole
_EXAMPLES = 3


class ColumnChecks(BaseModel):
    """``[monitoring.runs.columns.<name>]``: one column's own severities (unset: the project's)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    types: Severity | None = None
    nulls: Severity | None = None
    categories: Severity | None = None
    ranges: Severity | None = None
    declared_ranges: Severity | None = None


class RunChecks(BaseModel):
    """``[monitoring.runs]``: row-count bounds and the severity of each check (docs/project-file.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    min_rows: int = Field(default=1, ge=0, le=2**53, description="Fewer input rows: a 'rows' finding.")
    max_rows: int | None = Field(default=None, ge=1, le=2**53, description="More input rows: a 'rows' finding.")
    rows: Severity = "error"
    columns: Severity = "error"
    types: Severity = "error"
    nulls: Severity = "error"
    categories: Severity = "error"
    ranges: Severity = "warning"
    declared_ranges: Severity = "error"
    column: dict[str, ColumnChecks] = Field(default_factory=dict, description="Per-column severities.")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> RunChecks:
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError(f"max_rows {self.max_rows} is below min_rows {self.min_rows}")
        return self

    def severity(self, check: str, column: str | None = None) -> Severity:
        own = self.column.get(column) if column is not None else None
        value = getattr(own, check, None) if own is not None else None
        return value or getattr(self, check)


def parse_run_checks(value: Any, where: str | None = "[monitoring.runs]") -> RunChecks:
    """``value`` (a TOML table or a stored dict) as ``RunChecks``; ``InvalidInputError`` naming each bad key."""
    if value is None:
        return RunChecks()
    try:
        return RunChecks.model_validate(value)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors()]
        raise InvalidInputError(
            (f"{where}: " if where else "") + "; ".join(dict.fromkeys(problems)),
            "keys: min_rows and max_rows (whole numbers), rows, columns, types, nulls, categories, ranges and "
            'declared_ranges (each "error", "warning" or "off"), and [monitoring.runs.column.NAME] tables with '
            "the per-column ones (see docs/project-file.md)",
        ) from None


def _problem(error: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    given = error.get("input")
    if error["type"] == "extra_forbidden":
        allowed = list(ColumnChecks.model_fields) if loc[:1] == ["column"] else list(RunChecks.model_fields)
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        return f"{key}: unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "")
    if loc and loc[-1] in ("min_rows", "max_rows"):
        return f"{key} = {given!r} is not a whole number >= {0 if loc[-1] == 'min_rows' else 1}"
    if error["type"] == "literal_error":
        return f'{key} = {given!r} is not a severity: use "error", "warning" or "off"'
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    return f"{key}: {message}" if key else message


class Finding(BaseModel):
    """What one check found in one column (or about the rows)."""

    model_config = ConfigDict(allow_inf_nan=False)  # stored as JSON, which has no NaN

    check: str = Field(max_length=32)
    column: str | None = Field(default=None, max_length=1000)
    severity: Literal["error", "warning"]
    count: int = Field(ge=0, description="Offending values (or rows).")
    share: float | None = Field(default=None, ge=0, le=1, description="count / rows")
    message: str = Field(max_length=4000)
    examples: list[str | int | float | bool | None] = Field(
        default_factory=list, max_length=_EXAMPLES, description="A few offending values (none for sensitive ones)."
    )


class ValidationReport(BaseModel):
    """A run's input data against a version's schema and profile (or the training-data checks)."""

    model_config = ConfigDict(allow_inf_nan=False)

    status: Verdict
    rows: int = Field(ge=0)
    rows_set_aside: int = Field(default=0, ge=0, description="Rows with a warning a model cannot take: not scored.")
    against: str = Field(default="", max_length=200)
    findings: list[Finding] = Field(default_factory=list, max_length=MAX_FINDINGS + 1)


@dataclass(frozen=True)
class FrameValidation:
    """The report, which rows may be scored, and the frame with each column as its type wants it."""

    report: ValidationReport
    keep: np.ndarray  # bool per row
    frame: pd.DataFrame


def summarise(findings: list[Finding], rows: int, against: str, set_aside: int = 0) -> ValidationReport:
    """The verdict of ``findings``: invalid with an error, valid with warnings, else valid."""
    severities = {finding.severity for finding in findings}
    status: Verdict = "invalid" if "error" in severities else "warnings" if severities else "valid"
    kept = findings[:MAX_FINDINGS]
    if len(findings) > MAX_FINDINGS:
        rest = findings[MAX_FINDINGS:]
        kept.append(
            Finding(
                check="columns",
                severity="error" if any(f.severity == "error" for f in rest) else "warning",
                count=len(rest),
                message=f"and {len(rest)} more findings",
            )
        )
    return ValidationReport(status=status, rows=rows, rows_set_aside=set_aside, against=against, findings=kept)


def row_count_findings(rows: int, checks: RunChecks) -> list[Finding]:
    """A ``rows`` finding when ``rows`` is outside ``min_rows`` .. ``max_rows``."""
    severity = checks.rows
    if severity == "off":
        return []
    if rows < checks.min_rows:
        text = f"{rows} rows; at least {checks.min_rows} expected ([monitoring.runs] min_rows)"
    elif checks.max_rows is not None and rows > checks.max_rows:
        text = f"{rows} rows; at most {checks.max_rows} expected ([monitoring.runs] max_rows)"
    else:
        return []
    return [Finding(check="rows", severity=severity, count=rows, message=text)]


def findings_of_problems(problems: list[DataProblem], rows: int) -> list[Finding]:
    """The training-data checks' problems (each refuses training) as findings."""
    return [
        Finding(
            check=problem.check,
            column=problem.column,
            severity="error",
            count=problem.count if problem.count is not None else rows,
            share=_share(problem.count if problem.count is not None else rows, rows),
            message=str(problem),
        )
        for problem in problems
    ]


def _share(count: int, rows: int) -> float | None:
    return round(count / rows, 6) if rows else None


def _shown(values: pd.Series, mask: pd.Series, withheld: bool) -> tuple[list[Any], str]:
    """A few offending values (JSON-safe) and the row of the first (1 = the first data row)."""
    import numpy as np

    positions = np.flatnonzero(mask.to_numpy())
    first = f"first at row {positions[0] + 1}" if positions.size else ""
    if withheld:
        return [], first
    examples = [to_python(v) for v in values.iloc[positions[:_EXAMPLES]]]
    examples = [v[:64] if isinstance(v, str) else v for v in examples]
    return examples, first


def _bound(value: float | None, dtype: str) -> str:
    import pandas as pd

    if value is None:
        return "(none)"
    if dtype == "datetime":
        return pd.Timestamp(value, unit="s", tz="UTC").isoformat()
    return f"{value:g}"


def _training_range(column: ColumnSchema, profile: ReferenceProfile | None) -> tuple[float | None, float | None] | None:
    """The range the version was trained on: its profile's, else the schema's when inferred (not declared)."""
    feature = profile.features.get(column.name) if profile is not None else None
    if isinstance(feature, NumericProfile) and column.dtype in ("integer", "float"):
        if feature.sensitive or feature.minimum is None:
            return None
        return feature.minimum, feature.maximum
    if column.range_enforced or (column.minimum is None and column.maximum is None):
        return None
    return column.minimum, column.maximum


def validate_frame(
    frame: pd.DataFrame,
    schema: InputSchema,
    checks: RunChecks,
    *,
    profile: ReferenceProfile | None = None,
    unknown_columns: Literal["reject", "ignore"] = "reject",
    against: str = "the version",
) -> FrameValidation:
    """Check ``frame`` column by column against ``schema`` (and ``profile``'s training ranges)."""
    import numpy as np
    import pandas as pd

    rows = len(frame)
    findings: list[Finding] = row_count_findings(rows, checks)
    set_aside = np.zeros(rows, dtype=bool)
    prepared = frame.copy()
    withheld = {
        name for name, feature in (profile.features.items() if profile is not None else ()) if feature.sensitive
    }

    def add(check: str, column: str | None, mask: pd.Series | None, count: int, text: str, examples=()) -> None:
        severity = checks.severity(check, column)
        if severity == "off" or count == 0:
            return
        findings.append(
            Finding(
                check=check,
                column=column,
                severity=severity,
                count=count,
                share=_share(count, rows),
                message=text,
                examples=list(examples),
            )
        )
        if severity == "warning" and check in ROW_CHECKS and mask is not None:
            set_aside[:] |= mask.to_numpy(dtype=bool)

    known = set(schema.names)
    for name in [str(c) for c in frame.columns if str(c) not in known]:
        if unknown_columns == "reject":
            add(
                "columns",
                name,
                None,
                rows,
                f"column {name!r} is not in {against}'s schema (the deployment refuses unknown columns)",
            )
            if checks.severity("columns", name) == "warning":
                prepared = prepared.drop(columns=[name])
    for column in schema.columns:
        name = column.name
        if name not in frame.columns:
            if column.required:
                every = pd.Series(True, index=frame.index)
                add("columns", name, every, rows, f"column {name!r} is missing ({against} needs it)")
            continue
        values = frame[name].reset_index(drop=True)
        hidden = name in withheld
        present = values.notna()
        seconds = date_seconds(values) if column.dtype == "datetime" else None  # parsed once, used twice
        wrong = type_mismatches(values, column.dtype, seconds)
        if column.dtype in ("integer", "float"):
            numbers = pd.to_numeric(values.where(~wrong), errors="coerce")
            wrong |= present & ~wrong & ~np.isfinite(numbers.astype(float))
            prepared[name] = numbers.to_numpy()
        elif column.dtype == "boolean" and not pd.api.types.is_bool_dtype(values.dtype):
            prepared[name] = values.where(~present | wrong, values.astype(bool)).to_numpy()
        elif column.dtype == "string":
            prepared[name] = values.where(~present, values.astype(str)).to_numpy()  # 02134 read as a number
        count = int(wrong.sum())
        if count:
            examples, first = _shown(values, wrong, hidden)
            add(
                "types",
                name,
                wrong,
                count,
                f"column {name!r}: {count} value(s) not of type {column.dtype}"
                + (f", e.g. {', '.join(map(repr, examples))}" if examples else "")
                + f" ({first})",
                examples,
            )
        valid = present & ~wrong
        if not column.nullable:
            nulls = ~present
            count = int(nulls.sum())
            if count:
                _, first = _shown(values, nulls, True)
                add("nulls", name, nulls, count, f"column {name!r}: {count} null(s) but it is not nullable ({first})")
        if column.categories is not None:
            unseen = valid & category_outsiders(values, column.categories)
            count = int(unseen.sum())
            if count:
                examples, first = _shown(values, unseen, hidden)
                listed = ", ".join(map(repr, column.categories[:10])) + (" ..." if len(column.categories) > 10 else "")
                add(
                    "categories",
                    name,
                    unseen,
                    count,
                    f"column {name!r}: {count} value(s) of categories {against} never saw"
                    + (f", e.g. {', '.join(map(repr, examples))}" if examples else "")
                    + f" ({first}); known: {listed}",
                    examples,
                )
        if column.dtype not in ("integer", "float", "datetime") or column.role != "feature":
            continue
        if column.range_enforced:
            outside = valid & range_outsiders(values, column.dtype, column.minimum, column.maximum, seconds)
            count = int(outside.sum())
            if count:
                examples, first = _shown(values, outside, hidden)
                add(
                    "declared_ranges",
                    name,
                    outside,
                    count,
                    f"column {name!r}: {count} value(s) outside the declared range "
                    f"{_bound(column.minimum, column.dtype)} .. {_bound(column.maximum, column.dtype)} ({first})",
                    examples,
                )
        trained = _training_range(column, profile)
        if trained is not None:
            outside = valid & range_outsiders(values, column.dtype, *trained, seconds)
            count = int(outside.sum())
            if count:
                examples, first = _shown(values, outside, hidden)
                add(
                    "ranges",
                    name,
                    outside,
                    count,
                    f"column {name!r}: {count} value(s) outside the training range "
                    f"{_bound(trained[0], column.dtype)} .. {_bound(trained[1], column.dtype)} ({first})",
                    examples,
                )
    report = summarise(findings, rows, against, int(set_aside.sum()))
    return FrameValidation(report=report, keep=~set_aside, frame=prepared)
