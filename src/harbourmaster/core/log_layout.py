"""How one version's inputs and outputs are laid out as typed columns of the prediction log.

A version's schema is known when its requests are logged, so each input field gets its own
column (``in_<field>``), the prediction one (``out_prediction``) and each class probability
one (``out_proba_<class>``), typed from the schema:

========================  =====================================================
schema dtype              column kind
========================  =====================================================
integer                   ``int64``
float                     ``float64``
boolean                   ``bool``
string, datetime          ``string`` (a datetime keeps its ISO 8601 text)
category                  the type all its declared categories share (``string``,
                          ``int64``, ``float64`` or ``bool``), else ``json``
========================  =====================================================

A ``json`` column holds each value's JSON text (a category of mixed types). Pure logic: the
Arrow types are given by ``store.prediction_log``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "INPUT_PREFIX",
    "PREDICTION_COLUMN",
    "PROBABILITY_PREFIX",
    "QUERY_TYPES",
    "UNROUTED",
    "Kind",
    "LogLayout",
    "LogSettings",
    "input_column",
    "probability_column",
]

# The project partition (and metrics label) of requests naming a project a replica does not serve: never a
# caller's name, and no deployment.
UNROUTED = "_unrouted"

# The SQL type a query over the log reads each schema dtype's input column as (DuckDB names).
QUERY_TYPES = {
    "integer": "DOUBLE",
    "float": "DOUBLE",
    "datetime": "TIMESTAMP",
    "boolean": "BOOLEAN",
    "string": "VARCHAR",
    "category": "VARCHAR",
}

Kind = Literal["int64", "float64", "bool", "string", "json"]
INPUT_PREFIX = "in_"
PREDICTION_COLUMN = "out_prediction"
PROBABILITY_PREFIX = "out_proba_"
LAYOUT_FORMAT = 2  # format 1: inputs and outputs as JSON text (logs written before typed columns)


def input_column(name: str) -> str:
    """The column of input field ``name``."""
    return INPUT_PREFIX + name


def probability_column(key: str) -> str:
    """The column of the probability of class ``key`` (the class as text, as answers key it)."""
    return PROBABILITY_PREFIX + key


def _shared_kind(values: list[Any]) -> Kind:
    """The one column kind every value fits exactly, else ``json``."""
    if not values:
        return "json"
    types = {type(value) for value in values}
    if types == {bool}:
        return "bool"
    if types == {int}:
        return "int64"
    if types == {str}:
        return "string"
    if types <= {int, float}:
        return "float64"
    return "json"


_DTYPE_KINDS: dict[str, Kind] = {
    "integer": "int64",
    "float": "float64",
    "boolean": "bool",
    "string": "string",
    "datetime": "string",
}


@dataclass(frozen=True)
class LogLayout:
    """The typed columns of one version's rows: ``(field, kind)`` inputs, the prediction's kind, class keys."""

    version: int | None
    inputs: tuple[tuple[str, Kind], ...]
    prediction: Kind | None
    classes: tuple[str, ...] = ()

    @classmethod
    def from_schemas(
        cls,
        version: int | None,
        input_schema: dict[str, Any],
        output_schema: dict[str, Any] | None,
        classes: list[Any] | None = None,
    ) -> LogLayout:
        """The layout of a version from its manifest's input and output schemas (plain dicts)."""
        inputs: list[tuple[str, Kind]] = []
        for column in input_schema.get("columns") or []:
            dtype = str(column.get("dtype"))
            if dtype == "category":
                categories = column.get("categories")
                kind: Kind = _shared_kind(list(categories)) if categories else "json"
            else:
                kind = _DTYPE_KINDS.get(dtype, "json")
            inputs.append((str(column["name"]), kind))
        output = output_schema or {}
        task = output.get("task")
        known = classes if classes is not None else output.get("classes")
        prediction: Kind | None
        if task == "classification":
            prediction = _shared_kind(list(known)) if known else "json"
        elif task == "regression":
            prediction = "float64"
        elif output:
            prediction = _DTYPE_KINDS.get(str(output.get("dtype")), "json")
            prediction = "float64" if prediction == "int64" else prediction  # an "other" model may answer 1.5
        else:
            prediction = None
        keys = tuple(str(c) for c in known) if known and output.get("has_probabilities", True) else ()
        return cls(version, tuple(inputs), prediction, keys)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description, kept in each Parquet file's metadata."""
        return {
            "format": LAYOUT_FORMAT,
            "version": self.version,
            "inputs": dict(self.inputs),
            "prediction": self.prediction,
            "classes": list(self.classes),
        }


class LogSettings(BaseModel):
    """``[monitoring.prediction_log]`` of a project file (and ``prediction_log_retention_days`` of an
    environment, which a project's own value overrides)."""

    model_config = ConfigDict(extra="forbid")

    retention_days: int | None = Field(default=None, ge=1, le=36_500)  # None: kept for ever
