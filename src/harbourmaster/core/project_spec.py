"""The project file (``harbourmaster.toml``) as validated data.

This module is pure: it takes the already-parsed TOML document (a dict) and
returns a ``ProjectSpec`` or raises ``ProjectFileError`` naming the file, every
offending key and how to fix it. Unknown keys are errors, so typos are caught.

Reference of every key::

    [project]
    name = "churn"              # required. Lowercase letters, digits, '-' and '_',
                                # starting with a letter or digit, at most 63 chars.
    description = ""            # optional free text.

    [data]                      # required. Training data: a file OR a SQL query.
    source = "data/train.csv"   # a .csv or .parquet (.pq) file, relative to the
                                # project folder. Exactly one of source / query.
    url = "postgresql://..."    # SQLAlchemy database URL; required with query,
                                # not allowed with source.
    query = "SELECT ..."        # SQL query returning the training rows.
    target = "churned"          # required. Name of the column to predict.
    sensitive = ["email"]       # optional. Columns profiled without their values.

    [pipeline]                  # required.
    train = "train:train_model" # required. "module:function" that returns the fitted
                                # scoring pipeline; the module is imported from the
                                # project folder.
    prepare = "prep:clean"      # optional. "module:function" applied to the raw
                                # frame before training (and bundled for scoring).
    [pipeline.params]           # optional free-form table, passed as keyword
    C = 1.0                     # arguments to the train function.

    [evaluation]                # optional.
    metrics = ["accuracy"]      # optional; default by task (classification:
                                # accuracy, f1, roc_auc; regression: r2, rmse, mae).
                                # Friendly names or any sklearn scorer name.
    holdout = 0.2               # fraction held out for evaluation, 0 < holdout < 0.9.
    seed = 0                    # random seed of the split (integer >= 0).
    stratify = true             # stratify the split by target (classification).
    min_rows = 30               # refuse to train when fewer rows than this are left
                                # to train on or held out to evaluate on (integer >= 1).

    [schema.order_date]         # optional, one table per column whose inferred facts
    type = "datetime"           # are wrong or incomplete. type: integer, float, boolean,
    role = "feature"            # string, datetime, category. role: feature, id,
    min = "2020-01-01"          # ignored, target. min / max: allowed range (numbers, or
    max = 2030-12-31            # dates for a datetime). categories = [...]: allowed
    nullable = false            # values. nullable: nulls allowed? optional = true:
    optional = false            # requests may leave the column out.

    [serialization]             # optional.
    format = "skops"            # "skops" (default, safe loading), "onnx" or "pickle".
    trust_pickle = false        # must be true to use format = "pickle": pickle
                                # can run arbitrary code when loaded.
    trusted_types = []          # extra fully qualified type names (e.g.
                                # "mypkg.transformers.Clipper") the project asks the
                                # platform to trust when loading a skops bundle.

    [monitoring.drift]          # optional: data drift (docs/monitoring.md).
    drift_share = 0.5           # share of drifted features that drifts the dataset.
    sample_rows = 5000          # training rows kept in the bundle for exact tests (0: none).
    window = "1d"               # default window: N rows, 30m / 6h / 1d, or A..B.
    min_rows = 100              # a window with fewer rows is not judged by the drift monitor.
    method = "psi"              # optional: one method for every feature.
    threshold = 0.2             # optional: one threshold for every feature.
    [monitoring.drift.features.age]   # optional, per feature (and [monitoring.drift.prediction]).
    method = "ks"               # ks, chisquare, z, wasserstein, jensenshannon or psi.
    threshold = 0.01

    [monitoring.prediction_log] # optional.
    retention_days = 90         # days the project's prediction log and feedback are kept
                                # (overrides the environment's prediction_log_retention_days).
    [monitoring.quality]        # optional: model quality once ground truth arrives.
    window = "1d"               # default window: N rows, 30m / 6h / 1d, or A..B.
    tolerance = 0.05            # a metric dropping more than 5% below its held-out
                                # figure (relative) fires the model_quality alert.
    min_labelled_rows = 100     # fewer labelled rows in the window: no verdict.
    metrics = ["accuracy"]      # optional: the metrics judged (default: all).
    [monitoring.runs]           # optional: checks of every run's input data (docs/monitoring.md).
    min_rows = 1                # fewer rows in: a "rows" finding (whole number >= 0).
    max_rows = 1000000          # more rows in: a "rows" finding (optional).
    rows = "error"              # severity of each check: "error" (the run is invalid),
    columns = "error"           # "warning" (valid with warnings) or "off". columns:
    types = "error"             # missing/unknown columns; ranges: outside the training
    nulls = "error"             # range (default "warning"); declared_ranges: outside
    categories = "error"        # a range declared in [schema].
    ranges = "warning"
    declared_ranges = "error"
    [monitoring.runs.column.age]  # optional, per column: types, nulls, categories,
    ranges = "off"              # ranges, declared_ranges.

An ``[environments.<name>]`` table is refused: an environment's SLA, gates and
sign-offs are the platform's (``harbourmaster environments configure``), a
deployment's fallback is set with ``harbourmaster fallback``; a project file
cannot change them.
"""

from __future__ import annotations

import difflib
import keyword
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harbourmaster.core.declared_schema import DECLARABLE_ROLES, ColumnDeclaration
from harbourmaster.core.drift import DriftSettings
from harbourmaster.core.drift_window import parse_window
from harbourmaster.core.log_layout import LogSettings
from harbourmaster.core.metrics import validate_metric_names
from harbourmaster.core.provenance import DEFAULT_MIN_EVALUATION_ROWS
from harbourmaster.core.quality import QualitySettings
from harbourmaster.core.run_checks import RunChecks, parse_run_checks
from harbourmaster.core.schema import DTYPES
from harbourmaster.errors import InvalidInputError, ProjectFileError, parse_settings

__all__ = [
    "NAME_PATTERN",
    "PROJECT_NAME_PATTERN",
    "DataSection",
    "EvaluationSection",
    "MonitoringSection",
    "PipelineSection",
    "ProjectSection",
    "ProjectSpec",
    "SerializationSection",
    "parse_entrypoint",
    "parse_project_spec",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_NAME_RE = re.compile(NAME_PATTERN)
PROJECT_NAME_PATTERN: re.Pattern[str] = _NAME_RE
"""Compiled pattern of valid project (and environment) names."""
_DATA_SUFFIXES = (".csv", ".parquet", ".pq")
_ENTRYPOINT_HINT = 'write it as "module:function", e.g. "train:train_model"'
ModelT = TypeVar("ModelT", bound=BaseModel)
_NAME_HINT = "use lowercase letters, digits, '-' and '_', starting with a letter or digit (at most 63 characters)"


class _SpecError(ValueError):
    """A validation failure that carries its own fix hint."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _is_dotted_identifier(value: str) -> bool:
    parts = value.split(".")
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in parts)


def _check_entrypoint(value: str) -> tuple[str, str]:
    module, sep, function = value.partition(":")
    module, function = module.strip(), function.strip()
    if not sep or not module or not function:
        raise _SpecError(f"{value!r} is not of the form module:function", _ENTRYPOINT_HINT)
    if not _is_dotted_identifier(module):
        raise _SpecError(f"{value!r}: module {module!r} is not a dotted Python name", _ENTRYPOINT_HINT)
    if not function.isidentifier() or keyword.iskeyword(function):
        raise _SpecError(f"{value!r}: function {function!r} is not a Python identifier", _ENTRYPOINT_HINT)
    return module, function


def parse_entrypoint(value: str, key: str) -> tuple[str, str]:
    """Split ``"module:function"`` into ``(module, function)``.

    ``key`` names where the value came from (e.g. ``"[pipeline] train"``) for the
    error message. Raises ``ProjectFileError`` if the value is malformed.
    """
    if not isinstance(value, str):
        raise ProjectFileError(f"{key}: expected a string, got {value!r}", _ENTRYPOINT_HINT)
    try:
        return _check_entrypoint(value)
    except _SpecError as exc:
        raise ProjectFileError(f"{key}: {exc}", exc.hint) from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProjectSection(_Section):
    """``[project]``: identity of the project."""

    name: str
    description: str = ""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise _SpecError(f"{value!r} is not a valid project name", _NAME_HINT)
        return value


class DataSection(_Section):
    """``[data]``: where the training data comes from and which column is the target."""

    source: str | None = None
    url: str | None = None
    query: str | None = None
    target: str = Field(min_length=1)
    sensitive: list[str] = Field(default_factory=list)

    @field_validator("source")
    @classmethod
    def _valid_source(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().endswith(_DATA_SUFFIXES):
            raise _SpecError(
                f"{value!r} is neither a .csv nor a .parquet file",
                "point source at a .csv or .parquet file relative to the project folder",
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        if self.source is not None and self.query is not None:
            raise _SpecError(
                "both source and query are set",
                "keep either source (a file) or url + query (a database), not both",
            )
        if self.source is None and self.query is None:
            raise _SpecError(
                "no training data: neither source nor query is set",
                'add source = "<file.csv>" or url = "<database URL>" and query = "SELECT ..."',
            )
        if self.query is not None and not self.url:
            raise _SpecError(
                "query needs a database url",
                'add url = "<SQLAlchemy URL>" (e.g. "postgresql://host/db") next to query',
            )
        if self.source is not None and self.url is not None:
            raise _SpecError(
                "url is only used with query",
                'remove url, or replace source with query = "SELECT ..."',
            )
        return self

    @property
    def kind(self) -> Literal["file", "sql"]:
        """``"file"`` for ``source``, ``"sql"`` for ``url`` + ``query``."""
        return "file" if self.source is not None else "sql"


class PipelineSection(_Section):
    """``[pipeline]``: the project's training (and optional preparation) entrypoints."""

    train: str
    prepare: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("train", "prepare")
    @classmethod
    def _valid_entrypoint(cls, value: str | None) -> str | None:
        if value is not None:
            _check_entrypoint(value)
        return value

    def train_entrypoint(self) -> tuple[str, str]:
        """``(module, function)`` of the train entrypoint."""
        return _check_entrypoint(self.train)

    def prepare_entrypoint(self) -> tuple[str, str] | None:
        """``(module, function)`` of the prepare entrypoint, if any."""
        return _check_entrypoint(self.prepare) if self.prepare else None


class EvaluationSection(_Section):
    """``[evaluation]``: metrics and the held-out split."""

    metrics: list[str] | None = None
    holdout: float = 0.2
    seed: int = Field(default=0, ge=0)
    stratify: bool = True
    min_rows: int = Field(default=DEFAULT_MIN_EVALUATION_ROWS, ge=1)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return validate_metric_names(value)
        except InvalidInputError as exc:
            raise _SpecError(exc.message, exc.hint or "") from None

    @field_validator("holdout")
    @classmethod
    def _holdout_range(cls, value: float) -> float:
        if not 0.0 < value < 0.9:
            raise _SpecError(
                f"{value} is out of range",
                "set holdout to a fraction greater than 0 and less than 0.9, e.g. 0.2",
            )
        return value


class SerializationSection(_Section):
    """``[serialization]``: how the fitted pipeline is stored and what may be trusted."""

    format: Literal["skops", "onnx", "pickle"] = "skops"
    trust_pickle: bool = False
    trusted_types: list[str] = Field(default_factory=list)

    @field_validator("trusted_types")
    @classmethod
    def _qualified_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if "." not in name or not _is_dotted_identifier(name):
                raise _SpecError(
                    f"{name!r} is not a fully qualified type name",
                    'write types as "package.module.ClassName"',
                )
        return value

    @model_validator(mode="after")
    def _pickle_needs_trust(self) -> SerializationSection:
        if self.format == "pickle" and not self.trust_pickle:
            raise _SpecError(
                'format = "pickle" needs trust_pickle = true',
                'prefer format = "skops"; if you must use pickle, add trust_pickle = true '
                "(loading a pickle can run arbitrary code)",
            )
        return self


class MonitoringSection(_Section):
    """``[monitoring]``: how the project's deployments are watched (``drift``: ``DriftSettings``,
    ``quality``: ``QualitySettings``, ``prediction_log``: ``LogSettings``) and how its runs' input data
    is checked (``runs``: ``RunChecks``)."""

    drift: dict[str, Any] = Field(default_factory=dict)
    runs: dict[str, Any] = Field(default_factory=dict)
    prediction_log: dict[str, Any] = Field(default_factory=dict)

    quality: dict[str, Any] = Field(default_factory=dict)

    @field_validator("prediction_log")
    @classmethod
    def _valid_log(cls, value: dict[str, Any]) -> dict[str, Any]:
        _section(LogSettings, value, "prediction_log", "retention_days = N (days, 1 to 36500)")
        return value

    @field_validator("quality")
    @classmethod
    def _valid_quality(cls, value: dict[str, Any]) -> dict[str, Any]:
        _section(QualitySettings, value, "quality", "keys window, tolerance, min_labelled_rows, metrics")
        return value

    @field_validator("drift")
    @classmethod
    def _valid_drift(cls, value: dict[str, Any]) -> dict[str, Any]:
        drift_settings(value)
        return value

    @field_validator("runs")
    @classmethod
    def _valid_runs(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            parse_run_checks(value, None)
        except InvalidInputError as exc:
            raise _SpecError(exc.message, exc.hint or "") from None
        return value

    def drift_settings(self) -> DriftSettings:
        return drift_settings(self.drift)

    def run_checks(self) -> RunChecks:
        return parse_run_checks(self.runs)


def drift_settings(value: dict[str, Any]) -> DriftSettings:
    """``[monitoring.drift]`` as ``DriftSettings``; a ``_SpecError`` naming each bad key otherwise."""
    return _section(
        DriftSettings, value, "drift", "keys drift_share, sample_rows, window, method, threshold, features, prediction"
    )


def _section(model: type[ModelT], value: dict[str, Any], name: str, keys: str) -> ModelT:
    """``[monitoring.<name>]`` as ``model``; a ``_SpecError`` (which pydantic reports at the section) otherwise."""
    try:
        return parse_settings(model, value, name, f"see docs/monitoring.md: {keys}")
    except InvalidInputError as exc:
        raise _SpecError(exc.message, exc.hint or "") from None


class RetrainSection(_Section):
    """``[retrain]``: retraining on production data (``harbourmaster retrain``) and its challenger evaluation."""

    min_rows: int = Field(default=50, ge=1)  # labelled production rows needed to retrain at all
    holdout: float = Field(default=0.2, gt=0.0, lt=0.9)  # newest share of them held out as the evaluation set
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)  # significance of the paired test: a tie is not a win


class AutomationSection(_Section):
    """``[lifecycle.automation]``: what happens, unasked, when a drift or quality alert fires in production
    (``docs/lifecycle.md``, Automation). Opt-in: nothing happens unless ``enabled``."""

    enabled: bool = False
    alerts: list[str] = Field(default_factory=lambda: ["drift.dataset", "model_quality.drop"], min_length=1)
    environment: str = "prod"  # the watched environment: its alerts open cases, its data retrains
    window: str | None = None  # the production rows retrained on: "7d", "48h" or "500rows" (default: all)
    mix_training: float = Field(default=0.0, ge=0.0, le=1.0)  # share of the original training source added
    test_environment: str = "test"  # where the retrained version is load-tested
    loadtest_rate: float | None = Field(default=None, gt=0)  # req/s (default: production's peak x headroom)
    loadtest_duration: float = Field(default=10.0, gt=0, le=600)
    cooldown_hours: float = Field(default=6.0, ge=0)  # after a case opens, no other for the same deployment
    serve_wait_seconds: float = Field(default=300.0, ge=0, le=86400)  # for a replica to take a promoted version

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_window(value)
            except InvalidInputError as exc:
                raise _SpecError(
                    f"[lifecycle.automation] window = {value!r} is not a window",
                    'use a duration ("7d", "48h") or a row count ("500rows"); leave it out for every row',
                ) from exc
        return value

    @field_validator("environment", "test_environment")
    @classmethod
    def _valid_environment(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise _SpecError(f"{value!r} is not a valid environment name", _NAME_HINT)
        return value


class LifecycleSection(_Section):
    """``[lifecycle]``: the model's life after deployment; ``[lifecycle.automation]`` is its one table."""

    automation: AutomationSection = Field(default_factory=AutomationSection)


class ProjectSpec(_Section):
    """The whole project file."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, serialize_by_alias=True)

    project: ProjectSection
    data: DataSection
    pipeline: PipelineSection
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    serialization: SerializationSection = Field(default_factory=SerializationSection)
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)
    retrain: RetrainSection = Field(default_factory=RetrainSection)
    lifecycle: LifecycleSection = Field(default_factory=LifecycleSection)
    environments: dict[str, dict[str, Any]] = Field(default_factory=dict)
    schema_: dict[str, ColumnDeclaration] = Field(default_factory=dict, alias="schema")

    @model_validator(mode="after")
    def _target_agrees(self) -> ProjectSpec:
        for name, declared in self.schema_.items():
            if declared.role == "target" and name != self.data.target:
                raise _SpecError(
                    f"[schema.{name}] role = 'target' but [data] target is {self.data.target!r}",
                    f"declare role = 'target' on {self.data.target!r} only, or change [data] target",
                )
            if name == self.data.target and declared.role not in (None, "target"):
                raise _SpecError(
                    f"[schema.{name}] role = {declared.role!r} but {name!r} is the [data] target",
                    "remove the role, or set it to 'target'",
                )
        return self

    @property
    def declarations(self) -> dict[str, ColumnDeclaration]:
        """The ``[schema]`` section: column -> declaration."""
        return dict(self.schema_)

    @field_validator("environments")
    @classmethod
    def _no_environment_settings(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # Refused rather than kept and ignored: nothing would apply it, and what an environment
        # demands (SLA, gates, sign-offs) is not the project author's to set.
        for name in value:
            if not _NAME_RE.match(name):
                raise _SpecError(f"{name!r} is not a valid environment name", _NAME_HINT)
        if value:
            name = next(iter(value))
            raise _SpecError(
                f"a project file cannot set an environment's settings ([environments.{name}]): its SLA, "
                "gates and sign-offs are the platform's, and a deployment's fallback is set when deploying",
                f"remove the [environments.*] tables; an admin sets them with `harbourmaster environments "
                f"configure {name} --file {name}.json` (see `harbourmaster environments`), and "
                f"`harbourmaster fallback PROJECT --env {name}` sets a fallback",
            )
        return value


# ----------------------------------------------------------------- error conversion

_SECTIONS: dict[str, type[BaseModel]] = {
    "project": ProjectSection,
    "data": DataSection,
    "pipeline": PipelineSection,
    "evaluation": EvaluationSection,
    "serialization": SerializationSection,
    "monitoring": MonitoringSection,
    "retrain": RetrainSection,
    "lifecycle": LifecycleSection,
}
_MISSING_HINTS: dict[tuple[str, ...], str] = {
    ("project", "name"): 'add name = "<project-name>" under [project]',
    ("data", "target"): 'add target = "<column>" under [data]',
    ("pipeline", "train"): 'add train = "<module>:<function>" under [pipeline]',
}


def _location(loc: tuple[str | int, ...]) -> str:
    """Render a pydantic location as ``[section] key`` (or ``[environments.prod]``)."""
    if not loc:
        return "(top level)"
    head, rest = str(loc[0]), loc[1:]
    if head in ("environments", "schema") and rest:
        head, rest = f"{head}.{rest[0]}", rest[1:]
    if head not in _SECTIONS and not head.startswith(("environments", "schema")):
        return head  # an unknown top-level key
    text = f"[{head}]"
    key = ""
    for part in rest:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return f"{text} {key}" if key else text


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    model: type[BaseModel] = ProjectSpec
    if len(loc) == 2 and str(loc[0]) in _SECTIONS:
        model = _SECTIONS[str(loc[0])]
    if len(loc) == 3 and loc[0] == "schema":
        model = ColumnDeclaration
    return list(model.model_fields)


def _describe(error: Any) -> tuple[str, str]:
    """(problem, hint) for one pydantic error."""
    loc = tuple(error["loc"])
    where = _location(loc)
    kind = error["type"]
    if kind == "missing":
        if len(loc) == 1:
            return f"{where}: section required", f"add a [{loc[0]}] table"
        hint = _MISSING_HINTS.get(tuple(str(p) for p in loc), f"add {loc[-1]} = ... under [{loc[0]}]")
        return f"{where}: field required", hint
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        scope = (
            f"under [{loc[0]}]"
            if len(loc) == 2
            else (f"under [schema.{loc[1]}]" if len(loc) == 3 and loc[0] == "schema" else "at the top level")
        )
        return (
            f"{where}: unknown key",
            f"{guess}remove or rename {loc[-1]!r}; allowed keys {scope}: {', '.join(allowed)}",
        )
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ValueError) and isinstance(getattr(cause, "hint", None), str):
        return (f"{where}: {cause}" if loc else str(cause)), cause.hint  # type: ignore[attr-defined]
    if kind == "literal_error" and len(loc) == 3 and loc[0] == "schema":
        choices = {"type": DTYPES, "role": DECLARABLE_ROLES}.get(str(loc[-1]), ())
        return f"{where}: unknown {loc[-1]} {error.get('input')!r}", f"use one of: {', '.join(choices)}"
    message = str(error.get("msg", "invalid value"))
    message = message[:1].lower() + message[1:]
    if kind == "literal_error" and loc[-1] == "format":
        return f"{where}: {message}", 'use format = "skops", "onnx" or "pickle"'
    if kind == "string_too_short":
        return f"{where}: must not be empty", f"give {loc[-1]} a value under [{loc[0]}]"
    if kind in ("model_type", "model_attributes_type") and len(loc) == 2 and loc[0] == "schema":
        return f"{where}: expected a table of facts about column {loc[1]!r}", (
            f'write it as a table: [schema.{loc[1]}] with keys such as type = "float" or role = "id"'
        )
    if kind in ("model_type", "dict_type") and len(loc) == 1:
        return f"{where}: {message}", f"write {loc[0]} as a table: [{loc[0]}]"
    received = error.get("input")
    return (
        f"{where}: {message} (got {received!r})",
        f"fix the value of {where} (see the project file reference)",
    )


def parse_project_spec(data: dict[str, Any], source: str) -> ProjectSpec:
    """Validate a parsed project file; ``source`` names the file in error messages.

    Raises ``ProjectFileError`` listing every problem as ``"<source>: [section] key:
    problem"`` with a hint saying how to fix each.
    """
    if not isinstance(data, dict):
        raise ProjectFileError(
            f"{source}: expected a TOML document (a table), got {type(data).__name__}",
            "start the file with a [project] table",
        )
    try:
        return ProjectSpec.model_validate(data)
    except ValidationError as exc:
        problems: list[str] = []
        hints: list[str] = []
        for error in exc.errors():
            problem, hint = _describe(error)
            if problem not in problems:
                problems.append(problem)
            if hint and hint not in hints:
                hints.append(hint)
        raise ProjectFileError(f"{source}: " + "; ".join(problems), "; ".join(hints)) from None
