"""The prediction log and ground-truth feedback: Parquet files in the artifact store, queried with DuckDB.

Layout (day partitions; files are written once, merged by compaction, removed by retention)::

    predictions/env=<env>/project=<project>/date=<YYYY-MM-DD>/<name>.v<version>.parquet
    feedback/env=<env>/project=<project>/date=<YYYY-MM-DD>/<uuid>.parquet

A prediction row is one record of one request (``request_id`` + ``row``), so
feedback joins on ``(request_id, row)``. A refused request (4xx, or a 5xx of the
replica) is one row with ``path = 'refused'``, its status and reason code, and no
inputs or outputs.

Typed files (format 2, ``.v<N>.parquet``: the rows of version N; ``.v0`` holds rows no
version answered) have the columns of ``PREDICTION_SCHEMA`` and one typed column per input
field, the prediction and each class probability (``core/log_layout.py``); the file's
schema metadata (``harbourmaster.log``) records the version and its layout. Their JSON
columns ``inputs``/``output``/``probabilities`` are NULL, except on a row whose values did
not fit the typed columns (an unknown field, or a version whose layout the writer did not
know). Files written before typed columns (format 1, no ``.v`` in the name) hold inputs and
outputs as JSON text only; both kinds are read together.

Compaction (``compact``) merges the small files of one hour, version and partition into
one; it writes a journal first (``_compaction-<digest>.json``: the files replaced and the
file replacing them), then the new file, then removes the old ones and the journal.
Readers skip the files a journal replaces once its new file exists, so no row is read
twice or lost at any point, and a run killed midway is finished (or undone) by the next.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from harbourmaster.core.log_layout import (
    INPUT_PREFIX,
    PREDICTION_COLUMN,
    PROBABILITY_PREFIX,
    Kind,
    LogLayout,
    input_column,
    probability_column,
)
from harbourmaster.store.artifacts import ArtifactStore

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger("harbourmaster.prediction_log")


# The Arrow schemas are built on first use, so importing this module does not load pyarrow (the CLI
# imports it through the services). ``PREDICTION_SCHEMA`` and ``FEEDBACK_SCHEMA`` remain module attributes.
@cache
def prediction_schema() -> pa.Schema:
    """The base columns of every prediction file (``PREDICTION_SCHEMA``)."""
    import pyarrow as pa

    return pa.schema(
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


@cache
def feedback_schema() -> pa.Schema:
    """The columns of every feedback file (``FEEDBACK_SCHEMA``)."""
    import pyarrow as pa

    return pa.schema(
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


LAYOUT_METADATA = b"harbourmaster.log"
_KEY_VERSION = re.compile(r"\.v(\d{1,9})\.parquet$")
_JOURNAL = "_compaction-"
_COMPACTED = re.compile(r"/c(\d{2})-[0-9a-f]{16}(\.v\d{1,9})?\.parquet$")


def arrow_type(kind: Kind) -> pa.DataType:
    """The Arrow type of a column kind (a ``json`` column is text)."""
    return _arrow_types()[kind]


@cache
def _arrow_types() -> dict[str, pa.DataType]:
    import pyarrow as pa

    return {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "json": pa.string(),
    }


def __getattr__(name: str) -> Any:
    if name == "PREDICTION_SCHEMA":
        return prediction_schema()
    if name == "FEEDBACK_SCHEMA":
        return feedback_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def layout_fields(layout: LogLayout) -> list[pa.Field]:
    """The typed columns of a layout, after ``PREDICTION_SCHEMA``'s: inputs, prediction, probabilities."""
    import pyarrow as pa

    fields = [pa.field(input_column(name), arrow_type(kind)) for name, kind in layout.inputs]
    if layout.prediction is not None:
        fields.append(pa.field(PREDICTION_COLUMN, arrow_type(layout.prediction)))
    fields += [pa.field(probability_column(key), pa.float64()) for key in layout.classes]
    return fields


def layout_metadata(layout: LogLayout | None, version: int | None) -> dict[bytes, bytes]:
    """The schema metadata of a typed file: its version and layout (``{}`` as layout when none was known)."""
    described = layout.describe() if layout is not None else {"format": 2, "inputs": {}}
    described["version"] = version
    return {LAYOUT_METADATA: json.dumps(described).encode()}


def key_version(key: str) -> int | None:
    """The version a typed file's name carries (0: rows no version answered); None for a format-1 file."""
    match = _KEY_VERSION.search(key)
    return int(match.group(1)) if match else None


def prediction_key(environment: str, project: str, day: date, name: str, version: int | None) -> str:
    """The key of a typed file of one version's rows in one day partition."""
    return f"{partition('predictions', environment, project, day)}{name}.v{version or 0}.parquet"


def table_bytes(table: pa.Table) -> bytes:
    """A table as zstd-compressed Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _write(store: ArtifactStore, kind: str, schema: pa.Schema, rows: list[dict[str, Any]]) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

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
    return _write(store, "predictions", prediction_schema(), rows) if rows else []


def write_feedback(store: ArtifactStore, rows: list[dict[str, Any]]) -> list[str]:
    """Append ground-truth rows (dicts with FEEDBACK_SCHEMA's keys)."""
    return _write(store, "feedback", feedback_schema(), rows) if rows else []


class PredictionLog:
    """Reads the prediction log and feedback of an artifact store with DuckDB."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def files(self, kind: str, environment: str | None = None, project: str | None = None) -> list[str]:
        """Parquet keys of one kind, narrowed to an environment and project (files a finished compaction
        replaced are left out, even before they are removed)."""
        prefix = f"{kind}/"
        if environment is not None:
            prefix += f"env={environment}/"
            if project is not None:
                prefix += f"project={project}/"
        listed = self.store.list(prefix)
        if environment is None and project is not None:
            listed = [key for key in listed if f"/project={project}/" in key]
        keys = [key for key in listed if key.endswith(".parquet")]
        journals = [key for key in listed if key.rsplit("/", 1)[-1].startswith(_JOURNAL) and key.endswith(".json")]
        return _visible(self.store, keys, journals) if journals else keys

    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        connection = duckdb.connect()
        if not self.store.url.startswith(("file://", "/")) and "://" in self.store.url:
            connection.register_filesystem(self.store.filesystem)
        return connection

    def _location(self, key: str) -> str:
        if "://" not in self.store.url or self.store.url.startswith("file://"):
            return self.store.path(key)
        return self.store.uri(key)

    def _source(self, keys: Iterable[str], schema: pa.Schema) -> str:
        locations = [self._location(key) for key in keys]
        if not locations:
            return _empty(schema)
        quoted = ", ".join(_sql_text(location) for location in locations)
        # Not hive-partitioned: env=/project=/date= in the keys would come back as extra columns
        # duplicating environment, project and ts (each file's rows already hold them, checked on upload).
        return f"read_parquet([{quoted}], union_by_name=true, hive_partitioning=false)"

    def _layout(self, key: str) -> dict[str, Any]:
        """The layout a typed file's metadata records ({} when it has none)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with self.store.filesystem.open(self.store.path(key), "rb") as handle:
                metadata = pq.read_schema(handle).metadata or {}
            return dict(json.loads(metadata.get(LAYOUT_METADATA, b"{}")))
        except (OSError, ValueError, pa.ArrowException):
            return {}

    def _predictions_view(self, connection: duckdb.DuckDBPyConnection, keys: list[str]) -> str:
        """One SELECT over format-1 and typed files alike: the JSON columns are rebuilt from the typed ones
        (so ``inputs``, ``output`` and ``probabilities`` read the same whatever the file), the typed columns
        are there too (``in_<field>``, ``out_prediction``, ``out_proba_<class>``)."""
        groups: dict[int | None, list[str]] = defaultdict(list)
        for key in keys:
            groups[key_version(key)].append(key)
        parts = []
        for version, members in sorted(groups.items(), key=lambda item: -1 if item[0] is None else item[0]):
            source = self._source(members, prediction_schema())
            if version is None:
                parts.append(f"SELECT * FROM {source}")
                continue
            columns = [row[0] for row in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
            kinds = dict(self._layout(members[-1]).get("inputs") or {})
            parts.append(f"SELECT * REPLACE ({_json_columns(columns, kinds)}) FROM {source}")
        if not parts:
            return f"SELECT * FROM {_empty(prediction_schema())}"
        return " UNION ALL BY NAME ".join(f"({part})" for part in parts)

    def query(
        self, sql: str, environment: str | None = None, project: str | None = None, params: list[Any] | None = None
    ) -> pd.DataFrame:
        """Run ``sql`` over the views ``predictions`` and ``feedback`` (narrowed as given)."""
        connection = self._connect()
        try:
            predictions = self._predictions_view(connection, self.files("predictions", environment, project))
            feedback = self._source(self.files("feedback", environment, project), feedback_schema())
            connection.execute(f"CREATE VIEW predictions AS {predictions}")
            connection.execute(f"CREATE VIEW feedback AS SELECT * FROM {feedback}")
            return connection.execute(sql, params or []).df()
        finally:
            connection.close()

    def count(self, environment: str | None = None, project: str | None = None, *, refused: bool = False) -> int:
        """Number of logged prediction rows (with ``refused``, also the rows of refused requests)."""
        where = "" if refused else " WHERE path IS DISTINCT FROM 'refused'"
        return int(self.query(f"SELECT count(*) AS n FROM predictions{where}", environment, project)["n"].iloc[0])

    def recent(self, environment: str, project: str, limit: int = 20) -> pd.DataFrame:
        """The latest prediction rows, newest first (the columns of ``PREDICTION_SCHEMA``)."""
        names = ", ".join(_identifier(name) for name in prediction_schema().names)
        return self.query(
            f"SELECT {names} FROM predictions ORDER BY ts DESC, row LIMIT ?", environment, project, [int(limit)]
        )

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
        """The inputs (and outputs) one version answered in a window, typed.

        ``columns`` maps each input field to its type (``DOUBLE``, ``VARCHAR``, ``BOOLEAN`` or
        ``TIMESTAMP``, which comes back as seconds since the epoch); a field absent from a row, or of
        another type, is NULL. ``output`` (a type too) adds the model's output as ``__prediction__``.
        Rows are those logged in ``[start, end)``, the newest ``last_rows`` of them when given; the
        frame also has ``ts``. Refused requests (no inputs) are left out.

        Typed files are read by column (only the fields asked for, cast in bulk); JSON text is parsed
        (by DuckDB, in bulk) only for rows written before typed columns or that did not fit them.
        """
        keys = self._window_files(environment, project, start, end)
        typed = [key for key in keys if key_version(key) == version]
        legacy = [key for key in keys if key_version(key) is None]
        where = ["version = ?", "path IS DISTINCT FROM 'refused'"]
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
        connection = self._connect()
        try:
            parts: list[str] = []
            values: list[Any] = []
            if typed:
                source = self._source(typed, prediction_schema())
                present = {row[0] for row in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
                kinds = dict(self._layout(typed[-1]).get("inputs") or {})
                selected = [
                    _typed_input(name, kind, present, kinds.get(name)) + f" AS {_identifier(name)}"
                    for name, kind in columns.items()
                ]
                if output is not None:
                    selected.append(_typed_prediction(output, present) + ' AS "__prediction__"')
                parts.append(
                    f"SELECT ts, {', '.join(selected) or 'NULL AS _none'} FROM {source} "
                    f"WHERE inputs IS NULL AND {' AND '.join(where)}{limit}"
                )
                values += params + ([int(last_rows)] if last_rows is not None else [])
            json_keys = typed + legacy
            if json_keys:
                source = self._source(json_keys, prediction_schema())
                typed_output = bool(typed) and PREDICTION_COLUMN in present
                parts.append(_json_window(source, columns, output, where, limit, typed_output))
                values += params + ([int(last_rows)] if last_rows is not None else [])
            if not parts:
                parts.append(_json_window(_empty(prediction_schema()), columns, output, where, limit))
                values += params + ([int(last_rows)] if last_rows is not None else [])
            sql = " UNION ALL ".join(f"({part})" for part in parts)
            if last_rows is not None and len(parts) > 1:
                sql = f"SELECT * FROM ({sql}) ORDER BY ts DESC LIMIT {int(last_rows)}"
            return connection.execute(sql, values).df()
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
            # typed files' output and probabilities are rebuilt as the JSON text the query reads
            predictions = self._predictions_view(connection, self._window_files(environment, project, start, end))
            feedback = self._source(self.files("feedback", environment, project), feedback_schema())
            connection.execute(f"CREATE VIEW predictions AS {predictions}")
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

    def outcomes(self, environment: str, project: str, start: datetime) -> list[tuple[str, str | None, int, int]]:
        """Requests logged since ``start`` counted by (path, reason, status), most first: how a deployment's
        requests were answered (fallbacks and refusals with their reason). A request counts once, by its
        first row; only the base columns of the day partitions that can hold such rows are read."""
        keys = self._window_files(environment, project, start, None)
        if not keys:
            return []
        connection = self._connect()
        try:
            source = self._source(keys, prediction_schema())
            rows = connection.execute(
                f"SELECT path, reason, status, count(*) AS n FROM {source}"
                " WHERE ts > ? AND row = 0 GROUP BY path, reason, status ORDER BY n DESC, path, reason, status",
                [start],
            ).fetchall()
        finally:
            connection.close()
        return [(str(path), reason, int(status), int(n)) for path, reason, status, n in rows]

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


def _empty(schema: pa.Schema) -> str:
    columns = ", ".join(f"NULL::{_duck_type(field.type)} AS {_identifier(field.name)}" for field in schema)
    return f"(SELECT {columns} WHERE false)"


def _visible(store: ArtifactStore, keys: list[str], journals: list[str]) -> list[str]:
    """``keys`` less the files each finished compaction (its new file exists) replaced."""
    present = set(keys)
    hidden: set[str] = set()
    for journal in journals:
        try:
            entry = json.loads(store.get_bytes(journal))
        except Exception:  # removed meanwhile (the compaction finished), or torn: nothing replaced yet
            continue
        if entry.get("output") in present:
            hidden.update(entry.get("inputs") or [])
    return [key for key in keys if key not in hidden]


def _json_columns(columns: list[str], kinds: dict[str, str]) -> str:
    """The REPLACE list rebuilding a typed file's JSON columns from its typed ones."""
    pairs = []
    for column in columns:
        if column.startswith(INPUT_PREFIX):
            name = column[len(INPUT_PREFIX) :]
            value = _identifier(column) + ("::JSON" if kinds.get(name) == "json" else "")
            pairs.append(f"{_sql_text(name)}, {value}")
    rebuilt = f"json_object({', '.join(pairs)})::VARCHAR"
    inputs = f"CASE WHEN inputs IS NOT NULL OR path = 'refused' THEN inputs ELSE {rebuilt} END" if pairs else "inputs"
    output = (
        f"COALESCE(output, to_json({_identifier(PREDICTION_COLUMN)})::VARCHAR)"
        if PREDICTION_COLUMN in columns
        else "output"
    )
    probabilities = [c for c in columns if c.startswith(PROBABILITY_PREFIX)]
    if probabilities:
        first = _identifier(probabilities[0])
        members = ", ".join(f"{_sql_text(c[len(PROBABILITY_PREFIX) :])}, {_identifier(c)}" for c in probabilities)
        proba = f"COALESCE(probabilities, CASE WHEN {first} IS NULL THEN NULL ELSE json_object({members})::VARCHAR END)"
    else:
        proba = "probabilities"
    return f"{inputs} AS inputs, {output} AS output, {proba} AS probabilities"


def _as(expression: str, kind: str) -> str:
    """``expression`` (a typed column) as a window type (``DOUBLE``, ``VARCHAR``, ``BOOLEAN``, ``TIMESTAMP``)."""
    if kind == "TIMESTAMP":
        return f"epoch(TRY_CAST({expression} AS TIMESTAMPTZ))"
    return f"TRY_CAST({expression} AS {kind})"


def _typed_input(name: str, kind: str, present: set[str], stored: str | None) -> str:
    column = input_column(name)
    if column not in present:
        return f"NULL::{'DOUBLE' if kind == 'TIMESTAMP' else kind}"
    expression = _identifier(column)
    if stored == "json":  # a category of mixed types: its JSON text, unquoted
        expression = f"json_extract_string({expression}, '$')"
    return _as(expression, kind)


def _typed_prediction(kind: str, present: set[str]) -> str:
    typed = _as(_identifier(PREDICTION_COLUMN), kind) if PREDICTION_COLUMN in present else f"NULL::{_duck_kind(kind)}"
    return f"CASE WHEN output IS NULL THEN {typed} ELSE {_typed_output(kind)} END"


def _duck_kind(kind: str) -> str:
    return "DOUBLE" if kind == "TIMESTAMP" else kind


def _json_window(
    source: str, columns: dict[str, str], output: str | None, where: list[str], limit: str, typed_output: bool = False
) -> str:
    """The window's SELECT over JSON text (format-1 rows, and typed rows that did not fit their columns)."""
    structure = {name: ("VARCHAR" if kind == "TIMESTAMP" else kind) for name, kind in columns.items()}
    spec = _sql_text(json.dumps(structure))
    selected = [
        _typed_field(f"s[{_sql_text(name)}]", kind) + f" AS {_identifier(name)}" for name, kind in columns.items()
    ]
    prediction = _identifier(PREDICTION_COLUMN)
    if output is not None:  # a typed file's row with inputs as JSON may still have its output typed
        typed = f"COALESCE({_typed_output(output)}, {_as(prediction, output)})" if typed_output else None
        selected.append((typed or _typed_output(output)) + ' AS "__prediction__"')
    taken = f"ts, inputs, output{', ' + prediction if typed_output else ''}"
    inner = f"SELECT {taken} FROM {source} WHERE inputs IS NOT NULL AND {' AND '.join(where)}{limit}"
    return (
        f"SELECT ts, {', '.join(selected) or 'NULL AS _none'} "
        f"FROM (SELECT * EXCLUDE (inputs), json_transform(inputs, {spec}) AS s FROM ({inner}))"
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
    import pyarrow as pa

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


# -- compaction and retention (control plane) ---------------------------------------------------

_DEDUP_KEY = ("request_id", "row", "ts", "replica", "path", "status")


@dataclass
class CompactionReport:
    """What one compaction pass did."""

    groups: int = 0  # (partition, version, hour) groups merged
    files_in: int = 0
    files_out: int = 0
    rows: int = 0  # rows written
    duplicates: int = 0  # identical rows of one request met twice (a spool segment uploaded again)
    recovered: int = 0  # journals of an interrupted pass finished or undone
    outputs: list[str] = field(default_factory=list)


@dataclass
class RetentionReport:
    """What one retention pass removed."""

    files: int = 0
    rows: int = 0
    days: list[str] = field(default_factory=list)


def _journals(keys: Iterable[str]) -> list[str]:
    return [key for key in keys if key.rsplit("/", 1)[-1].startswith(_JOURNAL) and key.endswith(".json")]


def recover(store: ArtifactStore, journals: Iterable[str]) -> int:
    """Finish (the new file exists: remove what it replaced) or undo (it does not) interrupted compactions."""
    done = 0
    for journal in journals:
        try:
            entry = json.loads(store.get_bytes(journal))
        except Exception:
            entry = {}
        output = entry.get("output")
        if output and store.exists(output):
            for key in entry.get("inputs") or []:
                if key != output:
                    store.delete(key)
        store.delete(journal)
        done += 1
    return done


_FIRST_TS: dict[tuple[str, str], datetime | None] = {}  # files are never rewritten: their first ts is final


def _first_ts(store: ArtifactStore, key: str) -> datetime | None:
    """The earliest ``ts`` of a file (cached: each pass would read the footers of the open hour's files again)."""
    cached = (store.url, key)
    if cached not in _FIRST_TS:
        if len(_FIRST_TS) > 500_000:
            _FIRST_TS.clear()
        _FIRST_TS[cached] = _read_first_ts(store, key)
    return _FIRST_TS[cached]


def _read_first_ts(store: ArtifactStore, key: str) -> datetime | None:
    """The earliest ``ts`` of a file, from its footer statistics (its rows when it has none)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with store.filesystem.open(store.path(key), "rb") as handle:
        parquet = pq.ParquetFile(handle)
        meta = parquet.metadata
        index = parquet.schema_arrow.get_field_index("ts")
        lows = []
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(index).statistics
            if stats is None or not stats.has_min_max:
                lows = []
                break
            lows.append(stats.min)
        if not lows:
            column = parquet.read(columns=["ts"]).column("ts")
            low = pc.min(column).as_py()
            return low if low is None or low.tzinfo else low.replace(tzinfo=UTC)
    low = min(lows)
    return low if low.tzinfo else low.replace(tzinfo=UTC)


def _rows(store: ArtifactStore, key: str) -> int:
    import pyarrow.parquet as pq

    with store.filesystem.open(store.path(key), "rb") as handle:
        return int(pq.read_metadata(handle).num_rows)


def compact(
    store: ArtifactStore,
    *,
    environment: str | None = None,
    project: str | None = None,
    now: datetime | None = None,
    grace: timedelta = timedelta(minutes=10),
    min_files: int = 2,
) -> CompactionReport:
    """Merge the small prediction files of each closed hour into one file per partition and version.

    An hour is closed ``grace`` after it ends (late uploads of that hour are merged by a later pass,
    with the hour's compacted file). Rows are kept exactly: each output holds every row of its inputs,
    sorted by time, less rows identical in (request, row, time, replica, path, status) to one already
    kept (a spool segment uploaded again after a crash). Safe to kill at any point and to run again.
    """
    now = now or datetime.now(UTC)
    report = CompactionReport()
    prefix = "predictions/" + (f"env={environment}/" if environment else "")
    prefix += f"project={project}/" if environment and project else ""
    listed = store.list(prefix)
    if project and not environment:
        listed = [key for key in listed if f"/project={project}/" in key]
    report.recovered = recover(store, _journals(listed))
    keys = [key for key in store.list(prefix) if key.endswith(".parquet")]
    if project and not environment:
        keys = [key for key in keys if f"/project={project}/" in key]
    groups: dict[tuple[str, int | None, int], list[str]] = defaultdict(list)
    for key in keys:
        folder = key.rpartition("/")[0]
        day = folder.partition("/date=")[2]
        if not day:
            continue
        compacted = _COMPACTED.search(key)
        if compacted:
            hour = int(compacted.group(1))
        else:
            first = _first_ts(store, key)
            if first is None:
                continue
            hour = first.astimezone(UTC).hour if first.astimezone(UTC).date().isoformat() == day else 0
        closes = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=hour + 1) + grace
        if closes <= now:
            groups[(folder, key_version(key), hour)].append(key)
    for (folder, version, hour), members in sorted(groups.items(), key=lambda item: (item[0][0], item[0][2])):
        fresh = [key for key in members if not _COMPACTED.search(key)]
        if not fresh or len(members) < min_files:
            continue
        _compact_group(store, folder, version, hour, sorted(members), report)
    return report


def _compact_group(
    store: ArtifactStore, folder: str, version: int | None, hour: int, inputs: list[str], report: CompactionReport
) -> None:
    digest = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:16]
    suffix = "" if version is None else f".v{version}"
    output = f"{folder}/c{hour:02d}-{digest}{suffix}.parquet"
    journal = f"{folder}/{_JOURNAL}{digest}.json"
    rows_in = sum(_rows(store, key) for key in inputs)
    store.put_bytes(journal, json.dumps({"inputs": inputs, "output": output}).encode())
    reader = PredictionLog(store)
    connection = reader._connect()
    try:
        source = reader._source(inputs, prediction_schema())
        order = "ts, request_id, row, replica, path, status"
        table = connection.sql(
            f"SELECT * EXCLUDE (_k) FROM (SELECT *, row_number() OVER (PARTITION BY {', '.join(_DEDUP_KEY)} "
            f"ORDER BY {order}) AS _k FROM {source}) WHERE _k = 1 ORDER BY {order}"
        ).to_arrow_table()
    finally:
        connection.close()
    table = _conform(table, reader._layout(inputs[-1]) if version is not None else None)
    duplicates = rows_in - table.num_rows
    if duplicates < 0:  # never: a row appeared from nowhere; leave everything as it was
        store.delete(journal)
        raise RuntimeError(f"compaction of {folder} read {table.num_rows} rows from files holding {rows_in}")
    store.put_bytes(output, table_bytes(table))
    for key in inputs:
        store.delete(key)
    store.delete(journal)
    report.groups += 1
    report.files_in += len(inputs)
    report.files_out += 1
    report.rows += table.num_rows
    report.duplicates += duplicates
    report.outputs.append(output)


def _conform(table: pa.Table, layout: dict[str, Any] | None) -> pa.Table:
    """The base columns with ``PREDICTION_SCHEMA``'s exact types (then the typed ones), the layout in metadata."""
    import pyarrow as pa

    schema = prediction_schema()
    base = [table.column(name).cast(schema.field(name).type) for name in schema.names]
    extra = [name for name in table.column_names if name not in schema.names]
    columns = base + [table.column(name) for name in extra]
    fields = list(schema) + [table.schema.field(name) for name in extra]
    metadata = {LAYOUT_METADATA: json.dumps(layout).encode()} if layout else None
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata))


def expire(
    store: ArtifactStore, environment: str, project: str, keep_days: int, now: datetime | None = None
) -> RetentionReport:
    """Remove the prediction and feedback files of days that ended more than ``keep_days`` days ago.

    Whole day partitions go: a row is kept at least ``keep_days`` days and at most one day longer.
    """
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=keep_days)).date().isoformat()
    report = RetentionReport()
    days: set[str] = set()
    for kind in ("predictions", "feedback"):
        for key in store.list(partition(kind, environment, project)):
            day = key.partition("/date=")[2][:10]
            if not day or day >= cutoff:
                continue
            if key.endswith(".parquet"):
                report.rows += _rows(store, key)
                report.files += 1
            store.delete(key)
            days.add(day)
    report.days = sorted(days)
    return report


def projects(store: ArtifactStore, environment: str) -> list[str]:
    """The projects with a prediction log (or feedback) in an environment."""
    found: set[str] = set()
    for kind in ("predictions", "feedback"):
        for key in store.list(f"{kind}/env={environment}/"):
            part = key.split("/")[2]
            if part.startswith("project="):
                found.add(part[len("project=") :])
    return sorted(found)
