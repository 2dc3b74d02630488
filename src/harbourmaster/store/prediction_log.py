"""The prediction log and ground-truth feedback: Parquet files in the artifact store, queried with DuckDB.

Layout (one file per flushed batch, never rewritten)::

    predictions/env=<env>/project=<project>/date=<YYYY-MM-DD>/<uuid>.parquet
    feedback/env=<env>/project=<project>/date=<YYYY-MM-DD>/<uuid>.parquet

A prediction row is one record of one request (``request_id`` + ``row``), so
feedback joins on ``(request_id, row)``. A refused request (4xx, or a 5xx of the
replica) is one row with ``path = 'refused'``, its status and reason code, and no
inputs or outputs. Inputs and outputs are JSON text, which
DuckDB reads with ``json_extract`` and pandas with ``json.loads``.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harbourmaster.store.artifacts import ArtifactStore

# The project partition of requests naming a project a replica does not serve (never a caller's name).
UNROUTED = "_unrouted"

PREDICTION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("environment", pa.string()),
        ("project", pa.string()),
        ("version", pa.int32()),
        ("path", pa.string()),
        ("reason", pa.string()),
        ("status", pa.int16()),
        ("latency_ms", pa.float64()),
        ("inputs", pa.string()),
        ("output", pa.string()),
        ("probabilities", pa.string()),
        ("shadow_version", pa.int32()),
        ("shadow_output", pa.string()),
        ("replica", pa.string()),
    ]
)

FEEDBACK_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("environment", pa.string()),
        ("project", pa.string()),
        ("value", pa.string()),
        ("actor", pa.string()),
    ]
)


def partition(kind: str, environment: str, project: str, day: date | None = None) -> str:
    """The key prefix of one partition (or of a project, when ``day`` is None)."""
    prefix = f"{kind}/env={environment}/project={project}/"
    return prefix if day is None else f"{prefix}date={day.isoformat()}/"


def _write(store: ArtifactStore, kind: str, schema: pa.Schema, rows: list[dict[str, Any]]) -> list[str]:
    groups: dict[tuple[str, str, date], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["environment"], row["project"], row["ts"].astimezone(UTC).date())].append(row)
    keys: list[str] = []
    for (environment, project, day), members in groups.items():
        table = pa.Table.from_pylist(members, schema=schema)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        key = f"{partition(kind, environment, project, day)}{uuid.uuid4().hex}.parquet"
        store.put_bytes(key, sink.getvalue().to_pybytes())
        keys.append(key)
    return keys


def write_predictions(store: ArtifactStore, rows: list[dict[str, Any]]) -> list[str]:
    """Append prediction rows (dicts with PREDICTION_SCHEMA's keys); one file per partition."""
    return _write(store, "predictions", PREDICTION_SCHEMA, rows) if rows else []


def write_feedback(store: ArtifactStore, rows: list[dict[str, Any]]) -> list[str]:
    """Append ground-truth rows (dicts with FEEDBACK_SCHEMA's keys)."""
    return _write(store, "feedback", FEEDBACK_SCHEMA, rows) if rows else []


class PredictionLog:
    """Reads the prediction log and feedback of an artifact store with DuckDB."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def files(self, kind: str, environment: str | None = None, project: str | None = None) -> list[str]:
        """Parquet keys of one kind, narrowed to an environment and project."""
        prefix = f"{kind}/"
        if environment is not None:
            prefix += f"env={environment}/"
            if project is not None:
                prefix += f"project={project}/"
        keys = [key for key in self.store.list(prefix) if key.endswith(".parquet")]
        if environment is None and project is not None:
            keys = [key for key in keys if f"/project={project}/" in key]
        return keys

    def _connect(self) -> duckdb.DuckDBPyConnection:
        connection = duckdb.connect()
        if not self.store.url.startswith(("file://", "/")) and "://" in self.store.url:
            connection.register_filesystem(self.store.filesystem)
        return connection

    def _source(self, keys: Iterable[str], schema: pa.Schema) -> str:
        locations = [
            self.store.path(key)
            if "://" not in self.store.url or self.store.url.startswith("file://")
            else self.store.uri(key)
            for key in keys
        ]
        if not locations:
            columns = ", ".join(f'NULL::{_duck_type(field.type)} AS "{field.name}"' for field in schema)
            return f"(SELECT {columns} WHERE false)"
        quoted = ", ".join("'" + location.replace("'", "''") + "'" for location in locations)
        # Not hive-partitioned: env=/project=/date= in the keys would come back as extra columns
        # duplicating environment, project and ts (each file's rows already hold them, checked on upload).
        return f"read_parquet([{quoted}], union_by_name=true, hive_partitioning=false)"

    def query(
        self, sql: str, environment: str | None = None, project: str | None = None, params: list[Any] | None = None
    ) -> pd.DataFrame:
        """Run ``sql`` over the views ``predictions`` and ``feedback`` (narrowed as given)."""
        connection = self._connect()
        try:
            predictions = self._source(self.files("predictions", environment, project), PREDICTION_SCHEMA)
            feedback = self._source(self.files("feedback", environment, project), FEEDBACK_SCHEMA)
            connection.execute(f"CREATE VIEW predictions AS SELECT * FROM {predictions}")
            connection.execute(f"CREATE VIEW feedback AS SELECT * FROM {feedback}")
            return connection.execute(sql, params or []).df()
        finally:
            connection.close()

    def count(self, environment: str | None = None, project: str | None = None, *, refused: bool = False) -> int:
        """Number of logged prediction rows (with ``refused``, also the rows of refused requests)."""
        where = "" if refused else " WHERE path IS DISTINCT FROM 'refused'"
        return int(self.query(f"SELECT count(*) AS n FROM predictions{where}", environment, project)["n"].iloc[0])

    def recent(self, environment: str, project: str, limit: int = 20) -> pd.DataFrame:
        """The latest prediction rows, newest first."""
        return self.query("SELECT * FROM predictions ORDER BY ts DESC, row LIMIT ?", environment, project, [int(limit)])

    def window(
        self,
        environment: str,
        project: str,
        *,
        version: int,
        columns: dict[str, str],
        output: str | None = None,
        last_rows: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """The inputs (and outputs) one version answered in a window, typed, parsed in bulk by DuckDB.

        ``columns`` maps each input field to its type (``DOUBLE``, ``VARCHAR``, ``BOOLEAN`` or
        ``TIMESTAMP``, which comes back as seconds since the epoch); a field absent from a row, or of
        another type, is NULL. ``output`` (a type too) adds the model's output as ``__prediction__``.
        Rows are those logged in ``[start, end)``, the newest ``last_rows`` of them when given; the
        frame also has ``ts``. Refused requests (no inputs) are left out.
        """
        keys = self._window_files(environment, project, start, end)
        structure = {name: ("VARCHAR" if kind == "TIMESTAMP" else kind) for name, kind in columns.items()}
        spec = _sql_text(json.dumps(structure))
        selected = [
            _typed_field(f"s[{_sql_text(name)}]", kind) + f" AS {_identifier(name)}" for name, kind in columns.items()
        ]
        if output is not None:
            selected.append(_typed_output(output) + ' AS "__prediction__"')
        where = ["version = ?", "inputs IS NOT NULL", "path IS DISTINCT FROM 'refused'"]
        params: list[Any] = [int(version)]
        if start is not None:
            where.append("ts >= ?")
            params.append(start)
        if end is not None:
            where.append("ts < ?")
            params.append(end)
        limit = ""
        if last_rows is not None:
            limit = " ORDER BY ts DESC LIMIT ?"
            params.append(int(last_rows))
        inner = f"SELECT ts, inputs, output FROM predictions WHERE {' AND '.join(where)}{limit}"
        sql = (
            f"SELECT ts, {', '.join(selected) or 'NULL AS _none'} "
            f"FROM (SELECT ts, output, json_transform(inputs, {spec}) AS s FROM ({inner}))"
        )
        connection = self._connect()
        try:
            source = self._source(keys, PREDICTION_SCHEMA)
            connection.execute(f"CREATE VIEW predictions AS SELECT * FROM {source}")
            return connection.execute(sql, params).df()
        finally:
            connection.close()

    def labelled_window(
        self,
        environment: str,
        project: str,
        *,
        version: int,
        numeric: bool,
        positive: str | None = None,
        last_rows: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """The answers one version gave in a window (selected as ``window`` does), each with its ground
        truth when some arrived (the latest feedback of its request id and row; NULL otherwise).

        Columns: ``ts``, ``prediction`` and ``truth`` (DOUBLE when ``numeric``, else the JSON value as
        text) and, with ``positive`` (a class key), ``probability``: the logged probability of that class.
        """
        where = ["version = ?", "output IS NOT NULL", "path IS DISTINCT FROM 'refused'"]
        params: list[Any] = [int(version)]
        if start is not None:
            where.append("ts >= ?")
            params.append(start)
        if end is not None:
            where.append("ts < ?")
            params.append(end)
        limit = ""
        if last_rows is not None:
            limit = " ORDER BY ts DESC LIMIT ?"
            params.append(int(last_rows))

        def value(column: str) -> str:
            text = f"json_extract_string({column}, '$')"
            return f"TRY_CAST({text} AS DOUBLE)" if numeric else text

        probability = "NULL::DOUBLE"
        if positive is not None:
            path = _sql_text('$."' + positive.replace('"', '\\"') + '"')
            probability = f"TRY_CAST(json_extract_string(p.probabilities, {path}) AS DOUBLE)"
        sql = f"""
            WITH p AS (
                SELECT request_id, row, ts, output, probabilities FROM predictions WHERE {" AND ".join(where)}{limit}
            ), f AS (
                SELECT request_id, row, value,
                       row_number() OVER (PARTITION BY request_id, row ORDER BY ts DESC) AS k
                FROM feedback
            )
            SELECT p.ts, {value("p.output")} AS prediction, {value("f.value")} AS truth, {probability} AS probability
            FROM p LEFT JOIN f ON f.request_id = p.request_id AND f.row = p.row AND f.k = 1
            ORDER BY p.ts
        """
        connection = self._connect()
        try:
            predictions = self._source(self._window_files(environment, project, start, end), PREDICTION_SCHEMA)
            feedback = self._source(self.files("feedback", environment, project), FEEDBACK_SCHEMA)
            connection.execute(f"CREATE VIEW predictions AS SELECT * FROM {predictions}")
            connection.execute(f"CREATE VIEW feedback AS SELECT * FROM {feedback}")
            return connection.execute(sql, params).df()
        finally:
            connection.close()

    def _window_files(self, environment: str, project: str, start: datetime | None, end: datetime | None) -> list[str]:
        """The files of a project's log whose day partition can hold rows of ``[start, end)``."""
        keys = self.files("predictions", environment, project)
        first = start.astimezone(UTC).date().isoformat() if start is not None else None
        last = end.astimezone(UTC).date().isoformat() if end is not None else None
        kept = []
        for key in keys:
            day = key.partition("/date=")[2][:10]
            if (first and day and day < first) or (last and day and day > last):
                continue
            kept.append(key)
        return kept

    def with_feedback(self, environment: str, project: str) -> pd.DataFrame:
        """Predictions joined to their ground truth (latest feedback per request row)."""
        return self.query(
            """
            SELECT p.*, f.value AS truth, f.ts AS truth_ts
            FROM predictions p
            JOIN (
                SELECT *, row_number() OVER (PARTITION BY request_id, row ORDER BY ts DESC) AS k FROM feedback
            ) f ON f.request_id = p.request_id AND f.row = p.row AND f.k = 1
            ORDER BY p.ts
            """,
            environment,
            project,
        )


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _identifier(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _typed_field(expression: str, kind: str) -> str:
    if kind == "TIMESTAMP":
        return f"epoch(TRY_CAST({expression} AS TIMESTAMPTZ))"
    return expression


def _typed_output(kind: str) -> str:
    text = "json_extract_string(output, '$')"
    if kind == "VARCHAR":
        return text
    if kind == "TIMESTAMP":
        return f"epoch(TRY_CAST({text} AS TIMESTAMPTZ))"
    return f"TRY_CAST({text} AS {kind})"


def _duck_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    if pa.types.is_int16(arrow_type):
        return "SMALLINT"
    if pa.types.is_integer(arrow_type):
        return "INTEGER"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    return "VARCHAR"


def utcnow() -> datetime:
    return datetime.now(UTC)
