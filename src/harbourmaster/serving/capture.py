"""Prediction capture, at least once: a write-ahead spool on local disk, drained to Parquet by one thread.

The request path serialises each answered (or refused) request to one JSON line
and appends it to the replica's spool (``serving/spool.py``: a copy into a shared mapping,
before the answer is sent) and to an in-memory queue (one tuple). The writer
thread wakes every ``poll_seconds``, turns queued requests into Arrow record
batches a few hundred at a time (column by column, so it never holds the GIL
for long), and every ``flush_seconds`` (or ``batch_rows``) seals the spool's
live segment and uploads its rows through ``sink`` as one Parquet file per
partition and version, named after the segment, then removes the segment.

Inputs and outputs go to typed columns (``core/log_layout.py``: one per input field,
the prediction, each class probability), given by the layout the replica ``describe``s
for each version it loads; Arrow converts whole columns of records at once (in C++),
so no JSON text is built per row; a request whose records were validated in one pass as exactly
the schema's float fields hands over its float matrix too, and those columns are sliced from it
(no dict per row). A version without a layout is logged as JSON text.

When the sink fails, the sealed segment stays on disk ("spilled") and its rows
leave memory; the writer retries the oldest spilled segment with a backoff (up
to 30 s) and uploads fresh segments again once one succeeds. A queue that is
full keeps nothing in memory but the line on disk. Segments left by a killed
process are adopted and uploaded by the next writer on the same folder; a
segment always becomes the same keys with the same rows, so an upload repeated
after a crash overwrites instead of duplicating. Rows are lost only when the
spool is full (counted in ``harbourmaster_capture_dropped_total`` and
``harbourmaster_capture_spool_full_total``, logged) or a line cannot be encoded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import date
from itertools import chain, repeat
from operator import countOf, methodcaller
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa

from harbourmaster.core.log_layout import PREDICTION_COLUMN, LogLayout, input_column, probability_column
from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.serving.spool import Segment, Spool, SpoolFull, read_segment, segment_key_name
from harbourmaster.store.artifacts import ArtifactStore
from harbourmaster.store.prediction_log import (
    PREDICTION_SCHEMA,
    arrow_type,
    layout_metadata,
    prediction_key,
    table_bytes,
)

log = logging.getLogger("harbourmaster.serving.capture")

CHUNK_REQUESTS = 256  # requests converted per GIL-holding step
MAX_BACKOFF_SECONDS = 30.0
_DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1).toordinal()
_NUMPY = orjson.OPT_SERIALIZE_NUMPY

Sink = Callable[[str, bytes], None]
Partitions = dict[tuple[str, date, int | None], list[pa.RecordBatch]]
Layouts = dict[tuple[str, int | None], LogLayout]


class Captured(NamedTuple):
    """One answered or refused request, as the request path hands it over (converted later, off the path).

    A refused request has no records: it is logged as one row with its status and reason and no inputs.
    """

    ts_us: int  # microseconds since the epoch (UTC)
    request_id: str
    project: str
    version: int | None
    path: str
    reason: str | None
    status: int
    latency_ms: float
    records: list[dict[str, Any]]
    predictions: list[Any] | None
    probabilities: list[dict[str, float]] | None
    shadow_version: int | None = None
    shadow_outputs: list[Any] | None = None
    # In memory only (never spooled): the validated float64 matrix of ``records`` and its column names, so
    # that the writer builds the typed input columns from it instead of converting a dict per row.
    matrix: np.ndarray | None = None
    columns: list[str] | None = None
    # In memory only: ``records`` as the JSON text the client sent (one line), spooled as is (not re-encoded).
    records_json: bytes | None = None


SPOOLED_FIELDS = 13  # the fields of a spool line: a Captured without its in-memory matrix


def now_us() -> int:
    return time.time_ns() // 1000


def spool_line(entry: Captured) -> bytes:
    """The spool's line of ``entry``: its first ``SPOOLED_FIELDS`` as JSON (the records as the client sent
    them when ``records_json`` has them: not encoded again), and a newline. TypeError: not encodable."""
    if entry.records_json is None:
        return orjson.dumps(entry[:SPOOLED_FIELDS], option=_NUMPY) + b"\n"
    before, after = orjson.dumps(entry[:8]), orjson.dumps(entry[9:SPOOLED_FIELDS], option=_NUMPY)
    return b"".join((before[:-1], b",", entry.records_json, b",", after[1:], b"\n"))


def _json(value: Any) -> str:
    return orjson.dumps(value, option=_NUMPY).decode()


def _json_values(values: list[Any]) -> list[str]:
    """JSON of each value; plain ints (the usual labels) as their decimal digits, what orjson writes."""
    if countOf(map(type, values), int) == len(values):
        return list(map(str, values))
    return list(map(_json, values))


def _rows(entry: Captured) -> int:
    return len(entry.records) or 1


class CaptureWriter:
    """The spool and queue of answered requests, and the thread that writes them to the prediction log."""

    def __init__(
        self,
        store: ArtifactStore | None,
        metrics: ServingMetrics,
        *,
        spool_dir: Path,
        sink: Sink | None = None,
        environment: str = "",
        replica: str = "",
        max_queue: int = 100_000,
        batch_rows: int = 5_000,
        flush_seconds: float = 1.0,
        poll_seconds: float = 0.05,
        spool_bytes: int = 2 << 30,
        fsync_seconds: float = 0.2,
        layout_wait_seconds: float = 0.0,
    ) -> None:
        if sink is None:
            if store is None:
                raise ValueError("CaptureWriter needs a store or a sink")
            sink = store.put_bytes
        self._sink = sink
        self._metrics = metrics
        self._environment = environment
        self._replica = replica
        self._spool = Spool(spool_dir, {"environment": environment, "replica": replica}, max_bytes=spool_bytes)
        self._lock = threading.Lock()  # orders spool lines and queue entries (request path, shadow thread)
        self._entries: deque[tuple[int, Captured]] = deque()
        self._max_queue = max_queue
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._poll_seconds = min(poll_seconds, flush_seconds)
        self._fsync_seconds = fsync_seconds
        # converted, not yet written: segment -> (project, day) -> record batches
        self._pending: dict[int, Partitions] = {}
        self._pending_rows = 0
        self._layouts: Layouts = {}  # (project, version) -> typed columns; replaced whole, never mutated
        self._started = time.monotonic()
        self._layout_wait = layout_wait_seconds
        self._disk_only: set[int] = set()  # segments some of whose requests were kept on disk only
        self._spilled: deque[Segment] = deque()  # sealed segments waiting on disk for the sink
        self._retry_at = 0.0
        self._backoff = 0.0
        self._full_logged = 0.0
        self.accepted = 0  # rows in the spool, ever (own and adopted)
        self._lost_after_accept = 0  # spooled rows that could not be encoded into Parquet
        self.dropped = 0
        self.written = 0
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hm-capture", daemon=True)
        self._thread.start()

    # -- the request path -------------------------------------------------------------

    def submit(self, entry: Captured) -> None:
        """Spool one request and queue it (never blocks on I/O beyond one append; never raises)."""
        rows = _rows(entry)
        try:
            line = spool_line(entry)
        except TypeError as exc:  # a value orjson cannot encode: counted, never raised to the caller
            log.error("prediction log: request %s could not be encoded: %s", entry.request_id, exc)
            self._drop(rows)
            return
        with self._lock:
            try:
                seq = self._spool.append(line, rows)
            except SpoolFull as exc:
                self._spool_full(rows, exc)
                return
            self.accepted += rows
            if len(self._entries) >= self._max_queue:
                self._disk_only.add(seq)  # the line is on disk; the writer uploads the segment from there
                return
            self._entries.append((seq, entry))

    def _drop(self, rows: int) -> None:
        self.dropped += rows
        self._metrics.capture_dropped.inc(rows)

    def _spool_full(self, rows: int, exc: Exception) -> None:
        self._drop(rows)
        self._metrics.capture_spool_full.inc(rows)
        now = time.monotonic()
        if now - self._full_logged > 10:
            self._full_logged = now
            log.error(
                "prediction log: the spool at %s is full (%s); answered rows are being dropped "
                "(harbourmaster_capture_spool_full_total). Free disk or restore the store.",
                self._spool.folder,
                exc,
            )

    def describe(self, project: str, version: int | None, layout: LogLayout) -> None:
        """Log ``version``'s rows (``None``: rows no version answered) of ``project`` in typed columns.

        Called when a version is loaded (never on the request path); rows of a version the writer has no
        layout for (a spool replayed by a replica that no longer serves it) are logged as JSON text.
        """
        if self._layouts.get((project, version)) != layout:
            self._layouts = {**self._layouts, (project, version): layout}

    @property
    def depth(self) -> int:
        """Requests waiting in memory to be converted."""
        return len(self._entries)

    @property
    def pending(self) -> int:
        """Rows answered and spooled, not yet in the prediction log (in memory or on disk)."""
        return max(0, self.accepted - self.written - self._lost_after_accept)

    @property
    def spilled(self) -> int:
        """Rows waiting on disk only (the store failed, or the queue was full)."""
        return sum(max(segment.rows, 0) for segment in list(self._spilled))

    @property
    def spool_folder(self) -> Path:
        return self._spool.folder

    # -- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._adopt()
        except Exception:
            log.exception("prediction log: could not adopt spool segments left by earlier processes")
        deadline = time.monotonic() + self._flush_seconds
        next_sync = time.monotonic() + self._fsync_seconds
        while True:
            stopping = self._stop.wait(self._poll_seconds)
            self._convert_waiting()
            now = time.monotonic()
            if stopping or now >= deadline or self._pending_rows >= self._batch_rows:
                self._seal_and_upload(stopping)
                deadline = now + self._flush_seconds
                next_sync = now + self._fsync_seconds
            elif now >= next_sync:
                try:
                    self._spool.sync()
                except OSError as exc:
                    log.warning("prediction log: spool sync failed: %s", exc)
                next_sync = now + self._fsync_seconds
            self._replay(final=stopping)
            if not stopping:
                self._spool.prepare()
            self._gauges()
            if stopping and not self._entries:
                return

    def _gauges(self) -> None:
        metrics = self._metrics
        metrics.capture_depth.set(len(self._entries))
        metrics.capture_pending.set(self.pending)
        metrics.capture_spilled.set(self.spilled)
        metrics.capture_spool_bytes.set(self._spool.bytes)

    def _adopt(self) -> None:
        for segment in self._spool.adopt():
            _header, entries = read_segment(segment.path)
            segment.rows = sum(len(entry[8]) or 1 for entry in entries if len(entry) >= 9)
            self.accepted += segment.rows
            self._spilled.append(segment)
            log.warning(
                "prediction log: uploading %s rows spooled by an earlier process (%s)", segment.rows, segment.path.name
            )

    def _convert_waiting(self) -> None:
        # Only what waits now: requests arriving meanwhile wait for the next poll. Draining until empty made
        # the writer chase a trickle of new arrivals in batches of a few requests, each paying a record batch's
        # fixed cost (about 30 Arrow arrays): 70 µs of writer CPU per request at 2,500 req/s, not 10.
        entries = self._entries
        waiting = len(entries)
        while waiting > 0:
            take = min(waiting, CHUNK_REQUESTS)
            waiting -= take
            popleft = entries.popleft
            chunk: list[tuple[int, Captured]] = [popleft() for _ in range(take)]
            by_segment: dict[int, list[Captured]] = {}
            for seq, entry in chunk:
                by_segment.setdefault(seq, []).append(entry)
            for seq, members in by_segment.items():
                try:
                    self._pending_rows += _convert(
                        self._pending.setdefault(seq, {}), members, self._environment, self._replica, self._layouts
                    )
                except Exception:  # a row that cannot be encoded: its segment is replayed from disk
                    log.exception("prediction log: %s captured requests could not be converted", len(members))
                    self._disk_only.add(seq)
            time.sleep(0)  # let the event loop have the GIL between chunks

    def _seal_and_upload(self, final: bool) -> None:
        with self._lock:
            segment = self._spool.seal()
        if segment is None:
            return
        try:
            segment.finish()
        except OSError as exc:
            log.warning("prediction log: spool sync failed: %s", exc)
        self._convert_waiting()  # every request of the sealed segment is queued by now
        partitions = self._pending.pop(segment.seq, {})
        rows = sum(batch.num_rows for batches in partitions.values() for batch in batches)
        self._pending_rows -= rows
        if segment.seq in self._disk_only:
            self._disk_only.discard(segment.seq)
            self._spill(segment, "the capture queue was full")
            return
        if not final and time.monotonic() < self._retry_at:
            self._spill(segment, "the prediction log store is failing")
            return
        try:
            self._upload(segment, partitions, self._environment)
        except Exception as exc:
            self._failed(exc)
            self._spill(segment, f"the upload failed: {exc}")
            return
        self._done(segment, rows)

    def _spill(self, segment: Segment, why: str) -> None:
        self._spilled.append(segment)
        log.debug("prediction log: %s rows kept in the spool (%s)", segment.rows, why)

    def _failed(self, exc: Exception) -> None:
        self._metrics.capture_errors.inc()
        self._backoff = min(MAX_BACKOFF_SECONDS, max(0.5, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff
        log.warning(
            "prediction log write failed; rows stay in the spool at %s, retrying in %.1f s: %s",
            self._spool.folder,
            self._backoff,
            exc,
        )

    def _done(self, segment: Segment, rows: int) -> None:
        self._spool.remove(segment)
        self.written += rows
        self._metrics.capture_written.inc(rows)
        if rows < segment.rows:  # rows that could not be encoded
            self._lost_after_accept += segment.rows - rows
            self._drop(segment.rows - rows)
        self._backoff = 0.0
        self._retry_at = 0.0

    def _replay(self, *, final: bool) -> None:
        """Upload spilled segments from disk, oldest first, while the sink works.

        Right after start, segments adopted from a dead process wait (up to ``layout_wait_seconds``) for the
        replica to describe the versions it loads, so that their rows get typed columns too.
        """
        if not final and not self._layouts and time.monotonic() - self._started < self._layout_wait:
            return
        deadline = time.monotonic() + (10.0 if final else 0.5)
        while self._spilled and (final or time.monotonic() >= self._retry_at) and time.monotonic() < deadline:
            segment = self._spilled[0]
            try:
                header, entries = read_segment(segment.path)
                environment = header.get("environment", self._environment)
                replica = header.get("replica", self._replica)
                partitions, rows = _convert_lines(entries, environment, replica, self._layouts)
                self._upload(segment, partitions, environment)
            except FileNotFoundError:
                rows = 0
            except Exception as exc:
                self._failed(exc)
                if final:
                    break
                return
            self._spilled.popleft()
            self._done(segment, rows)

    def _upload(self, segment: Segment, partitions: Partitions, environment: str) -> None:
        """One Parquet file per partition, named after the segment (so a repeated upload overwrites)."""
        name = segment_key_name(segment)
        layouts = self._layouts
        for (project, day, version), batches in partitions.items():
            table = _table(batches, layouts.get((project, version)), version)
            self._sink(prediction_key(environment, project, day, name, version), table_bytes(table))

    def close(self, timeout: float = 30.0) -> None:
        """Drain the queue, write everything the store takes and stop the thread (the rest stays spooled)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout)
        with self._lock:
            leftover = self._spool.seal()
        if leftover is not None:
            leftover.finish()
            self._spilled.append(leftover)
        if self._spilled:
            log.error(
                "prediction log: %s rows could not be written at shutdown; they stay in the spool at %s "
                "and the next replica started on this folder uploads them",
                self.spilled,
                self._spool.folder,
            )
        self._spool.close()
        self._gauges()


def _convert_lines(
    lines: Iterable[list[Any]], environment: str, replica: str, layouts: Layouts
) -> tuple[Partitions, int]:
    """Partitions and row count of a segment's lines; a line that cannot be converted is logged and skipped
    (so one bad line cannot hold back the spool behind it)."""
    partitions: Partitions = {}
    rows = 0
    batch: list[Captured] = []

    def attempt(entries: list[Captured]) -> None:
        nonlocal rows
        converted: Partitions = {}  # merged only when every entry converted (no half-added batch)
        rows += _convert(converted, entries, environment, replica, layouts)
        for key, batches in converted.items():
            partitions.setdefault(key, []).extend(batches)

    def flush() -> None:
        try:
            attempt(batch)
            return
        except Exception:  # find the culprit: one request at a time
            pass
        for entry in batch:
            try:
                attempt([entry])
            except Exception as exc:
                log.error("prediction log: spooled request %s cannot be converted, skipped: %s", entry[1], exc)

    for values in lines:
        try:
            batch.append(Captured(*values))
        except TypeError:
            log.error("prediction log: a spooled line has an unknown shape, skipped")
            continue
        if len(batch) >= CHUNK_REQUESTS:
            flush()
            batch = []
            time.sleep(0)  # let the event loop have the GIL between chunks
    if batch:
        flush()
    return partitions, rows


def _convert(partitions: Partitions, entries: list[Captured], environment: str, replica: str, layouts: Layouts) -> int:
    """Append the rows of ``entries`` to ``partitions`` as record batches; the number of rows."""
    groups: dict[tuple[str, int, int | None], list[Captured]] = {}
    for entry in entries:
        groups.setdefault((entry.project, entry.ts_us // _DAY_US, entry.version), []).append(entry)
    rows = 0
    for (project, day_number, version), members in groups.items():
        batch = _record_batch(members, environment, replica, layouts.get((project, version)))
        partitions.setdefault((project, date.fromordinal(_EPOCH + day_number), version), []).append(batch)
        rows += batch.num_rows
    return rows


_NO_RECORD: tuple[dict[str, Any], ...] = ({},)  # a refused request's one row: every input null


def _typed_columns(
    entries: list[Captured], layout: LogLayout, rows: int
) -> tuple[dict[str, pa.Array], list[str | None] | None, list[str | None] | None, list[str | None] | None]:
    """The typed columns of one version's rows (whole columns at once, converted by Arrow in C++), and the
    JSON of what did not fit them (None when everything did): inputs, output, probabilities."""
    columns: dict[str, pa.Array] = {}
    stacked = _stacked_inputs(entries, layout)
    if stacked is not None:  # every row validated as exactly the layout's float fields
        for (name, _kind), values in zip(layout.inputs, stacked, strict=True):
            columns[input_column(name)] = pa.array(values)
        return (columns, None, *_typed_outputs(entries, layout, rows, columns))
    records = list(chain.from_iterable(entry.records or _NO_RECORD for entry in entries))
    plain = [(name, kind) for name, kind in layout.inputs if kind != "json"]
    if plain:
        struct = pa.array(records, type=pa.struct([(name, arrow_type(kind)) for name, kind in plain]))
        for (name, _kind), child in zip(plain, struct.flatten(), strict=True):
            columns[input_column(name)] = child
    for name, kind in layout.inputs:
        if kind == "json":  # a category of mixed types: its JSON text, value by value
            getter = methodcaller("get", name)
            columns[input_column(name)] = pa.array(
                [None if value is None else _json(value) for value in map(getter, records)], pa.string()
            )
    inputs_json = None
    width = len(layout.inputs)
    full = countOf(map(len, records), width) == len(records) and not any(c.null_count for c in columns.values())
    # Every row has as many fields as the layout and none is missing: exactly the layout's. Otherwise look
    # for a field the layout has no column for (C-level, one call a row).
    known = frozenset(name for name, _kind in layout.inputs)
    fits = [] if full else list(map(known.issuperset, records))
    if not all(fits):  # kept whole as JSON text besides the typed columns
        inputs_json = [None if fit else _json(record) for fit, record in zip(fits, records, strict=True)]
    return (columns, inputs_json, *_typed_outputs(entries, layout, rows, columns))


def _stacked_inputs(entries: list[Captured], layout: LogLayout) -> np.ndarray | None:
    """The inputs of ``entries`` as one float64 array with a row per field, when every entry carries its
    validated matrix with the layout's fields in order and every field is a float; else None."""
    names = entries[0].columns
    if names is None or any(kind != "float64" for _name, kind in layout.inputs):
        return None
    if len(names) != len(layout.inputs) or any(n != f for n, (f, _k) in zip(names, layout.inputs, strict=True)):
        return None
    matrices = []
    for entry in entries:
        if entry.matrix is None or (entry.columns is not names and entry.columns != names):
            return None
        matrices.append(entry.matrix)
    return np.ascontiguousarray((matrices[0] if len(matrices) == 1 else np.concatenate(matrices)).T)


def _typed_outputs(
    entries: list[Captured], layout: LogLayout, rows: int, columns: dict[str, pa.Array]
) -> tuple[list[str | None] | None, list[str | None] | None]:
    """Add the prediction and probability columns of ``entries`` to ``columns``; the JSON of what did not fit."""
    output_json = None
    if layout.prediction is not None:
        predictions = list(
            chain.from_iterable(
                entry.predictions if entry.predictions is not None else repeat(None, _rows(entry)) for entry in entries
            )
        )
        kind = layout.prediction
        try:
            if kind == "json":
                raise TypeError("json")
            columns[PREDICTION_COLUMN] = pa.array(predictions, arrow_type(kind))
        except (TypeError, ValueError, pa.ArrowException):
            columns[PREDICTION_COLUMN] = pa.nulls(rows, arrow_type(kind))
            output_json = [None if value is None else _json(value) for value in predictions]
    proba_json = None
    if layout.classes:
        probabilities = list(
            chain.from_iterable(entry.probabilities or repeat(None, _rows(entry)) for entry in entries)
        )
        struct_type = pa.struct([(key, pa.float64()) for key in layout.classes])
        try:
            struct = pa.array(probabilities, type=struct_type)
            for key, child in zip(layout.classes, struct.flatten(), strict=True):  # a null row: null children
                columns[probability_column(key)] = child
        except (TypeError, ValueError, pa.ArrowException):
            for key in layout.classes:
                columns[probability_column(key)] = pa.nulls(rows, pa.float64())
            proba_json = [None if value is None else _json(value) for value in probabilities]
    return output_json, proba_json


def _json_columns(entries: list[Captured]) -> tuple[list[str | None], list[str | None], list[str | None]]:
    """Inputs, outputs and probabilities as JSON text, row by row (format 1: no layout known)."""
    inputs: list[str | None] = []
    output: list[str | None] = []
    probabilities: list[str | None] = []
    dumps = orjson.dumps
    for entry in entries:
        n = len(entry.records)
        if not n:  # a refused request: one row with its status and reason, no inputs or outputs
            inputs.append(None)
            output.append(None)
            probabilities.append(None)
            continue
        inputs += [dumps(record).decode() for record in entry.records]
        predictions, proba = entry.predictions, entry.probabilities
        output += [None] * n if predictions is None else _json_values(predictions)
        probabilities += [None] * n if not proba else [dumps(value).decode() for value in proba]
    return inputs, output, probabilities


def _record_batch(entries: list[Captured], environment: str, replica: str, layout: LogLayout | None) -> pa.RecordBatch:
    # Per-request values are converted once per request and repeated in Arrow (``take``, in C++); inputs
    # and outputs go to the version's typed columns whole (Arrow converts them), never as JSON row by row.
    counts = [_rows(entry) for entry in entries]
    rows = sum(counts)
    typed: dict[str, pa.Array] = {}
    inputs = output = probabilities = None
    if layout is not None:
        try:
            typed, inputs, output, probabilities = _typed_columns(entries, layout, rows)
        except (TypeError, ValueError, pa.ArrowException) as exc:  # not what the schema says: JSON text
            log.warning("prediction log: rows of v%s kept as JSON text (%s)", layout.version, exc)
            typed = {}
            inputs, output, probabilities = _json_columns(entries)
    else:
        inputs, output, probabilities = _json_columns(entries)
    shadow_output: list[str | None] = []
    for entry in entries:
        shadow = entry.shadow_outputs
        n = len(entry.records)
        shadow_output += [None] * (n or 1) if shadow is None or not n else _json_values(shadow)
    fields = PREDICTION_SCHEMA
    if rows == len(entries):  # one row per request: plain lists (measured faster than numpy + take here)
        owner = None
        row = pa.array([0] * rows, type=pa.int32())
    else:  # row -> its request, and its index within the request
        sizes = np.array(counts, dtype=np.int64)
        owner = pa.array(np.repeat(np.arange(len(entries), dtype=np.int64), sizes))
        row = pa.array(np.arange(rows, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes), pa.int32())

    def repeated(name: str, values: list[Any]) -> pa.Array:
        array = pa.array(values, type=fields.field(name).type)
        return array if owner is None else array.take(owner)

    def text(values: list[str | None] | None) -> pa.Array:
        return pa.nulls(rows, pa.string()) if values is None else pa.array(values, type=pa.string())

    columns = {
        "request_id": repeated("request_id", [e.request_id for e in entries]),
        "row": row,
        "ts": repeated("ts", [e.ts_us for e in entries]),
        "environment": repeated("environment", [environment] * len(entries)),
        "project": repeated("project", [e.project for e in entries]),
        "version": repeated("version", [e.version for e in entries]),
        "path": repeated("path", [e.path for e in entries]),
        "reason": repeated("reason", [e.reason for e in entries]),
        "status": repeated("status", [e.status for e in entries]),
        "latency_ms": repeated("latency_ms", [e.latency_ms for e in entries]),
        "inputs": text(inputs),
        "output": text(output),
        "probabilities": text(probabilities),
        "shadow_version": repeated("shadow_version", [e.shadow_version for e in entries]),
        "shadow_output": pa.array(shadow_output, type=pa.string()),
        "replica": repeated("replica", [replica] * len(entries)),
    }
    schema = pa.schema([*fields, *(pa.field(name, array.type) for name, array in typed.items())])
    return pa.RecordBatch.from_arrays([*(columns[f.name] for f in fields), *typed.values()], schema=schema)


def encode(
    entries: list[Captured], environment: str, replica: str, layouts: Layouts
) -> dict[tuple[str, date, int | None], pa.Table]:
    """The tables (one per project, day and version) a list of captured requests becomes, as the writer
    uploads them (also for tools that write a log directly, e.g. the drift benchmark)."""
    partitions: Partitions = {}
    _convert(partitions, entries, environment, replica, layouts)
    return {key: _table(batches, layouts.get((key[0], key[2])), key[2]) for key, batches in partitions.items()}


def _table(batches: list[pa.RecordBatch], layout: LogLayout | None, version: int | None) -> pa.Table:
    """One file's table: its batches (typed or not) under one schema, the version and layout in its metadata."""
    tables = [pa.Table.from_batches([batch]) for batch in batches]
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    return table.replace_schema_metadata(layout_metadata(layout, version))
