"""Asynchronous prediction capture: a bounded queue drained to Parquet by one thread.

The request path only appends one tuple per request to a deque (no lock, no
thread wake-up, no JSON, no datetime); a full queue drops the request's rows and
counts them (never silently). The writer thread wakes every ``poll_seconds``,
turns what is waiting into Arrow record batches a few hundred requests at a time
(column by column, so it never holds the GIL for long and the event loop's p99
does not see it), and writes one Parquet file per partition every
``flush_seconds`` (or ``batch_rows``). ``close()`` drains everything left and
flushes, so a graceful stop (SIGTERM) loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import date
from operator import countOf
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.store.artifacts import ArtifactStore
from harbourmaster.store.prediction_log import PREDICTION_SCHEMA, partition

log = logging.getLogger("harbourmaster.serving.capture")

CHUNK_REQUESTS = 256  # requests converted per GIL-holding step
_DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1).toordinal()


class Captured(NamedTuple):
    """One answered request, as the request path hands it over (converted later, off the path)."""

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


def now_us() -> int:
    return time.time_ns() // 1000


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _json_values(values: list[Any]) -> list[str]:
    """JSON of each value; plain ints (the usual labels) as their decimal digits, what orjson writes."""
    if countOf(map(type, values), int) == len(values):
        return list(map(str, values))
    return list(map(_json, values))


class CaptureWriter:
    """Bounded queue of answered requests and the thread that writes them."""

    def __init__(
        self,
        store: ArtifactStore | None,
        metrics: ServingMetrics,
        *,
        environment: str = "",
        replica: str = "",
        max_queue: int = 100_000,
        batch_rows: int = 5_000,
        flush_seconds: float = 1.0,
        poll_seconds: float = 0.05,
        sink: Callable[[str, bytes], None] | None = None,
    ) -> None:
        # Where finished Parquet files go (artifact key, bytes): a replica passes its control plane's upload.
        if sink is None and store is None:
            raise ValueError("CaptureWriter needs a store or a sink")
        self._sink: Callable[[str, bytes], None] = sink or store.put_bytes  # type: ignore[union-attr]
        self._metrics = metrics
        self._environment = environment
        self._replica = replica
        self._entries: deque[Captured] = deque()
        self._max_queue = max_queue
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._poll_seconds = min(poll_seconds, flush_seconds)
        # converted, not yet written: (project, day) -> record batches
        self._pending: dict[tuple[str, date], list[pa.RecordBatch]] = {}
        self._pending_rows = 0
        self.dropped = 0
        self.written = 0
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hm-capture", daemon=True)
        self._thread.start()

    def submit(self, entry: Captured) -> None:
        """Queue one answered request (never blocks; counts its rows as dropped when full)."""
        if len(self._entries) >= self._max_queue:
            self.dropped += len(entry.records)
            self._metrics.capture_dropped.inc(len(entry.records))
            return
        self._entries.append(entry)

    @property
    def depth(self) -> int:
        """Requests waiting to be converted (rows already converted wait at most flush_seconds)."""
        return len(self._entries)

    # -- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        deadline = time.monotonic() + self._flush_seconds
        while True:
            stopping = self._stop.wait(self._poll_seconds)
            self._convert_waiting()
            self._metrics.capture_depth.set(len(self._entries))
            now = time.monotonic()
            if self._pending_rows and (stopping or self._pending_rows >= self._batch_rows or now >= deadline):
                self._flush(final=stopping)
            if now >= deadline:
                deadline = now + self._flush_seconds
            if stopping and not self._entries:
                return

    def _convert_waiting(self) -> None:
        entries = self._entries
        while entries:
            chunk: list[Captured] = []
            popleft = entries.popleft
            try:
                for _ in range(CHUNK_REQUESTS):
                    chunk.append(popleft())
            except IndexError:
                pass
            try:
                self._convert(chunk)
            except Exception:  # a row that cannot be encoded must not stop the writer
                log.exception("prediction log: %s captured requests could not be encoded", len(chunk))
                rows = sum(len(entry.records) for entry in chunk)
                self.dropped += rows
                self._metrics.capture_dropped.inc(rows)
            if self._pending_rows >= self._batch_rows:
                self._flush(final=False)
            time.sleep(0)  # let the event loop have the GIL between chunks

    def _convert(self, chunk: list[Captured]) -> None:
        groups: dict[tuple[str, int], list[Captured]] = {}
        for entry in chunk:
            groups.setdefault((entry.project, entry.ts_us // _DAY_US), []).append(entry)
        for (project, day_number), entries in groups.items():
            batch = self._record_batch(entries)
            key = (project, date.fromordinal(_EPOCH + day_number))
            self._pending.setdefault(key, []).append(batch)
            self._pending_rows += batch.num_rows

    def _record_batch(self, entries: list[Captured]) -> pa.RecordBatch:
        # Per-request values are converted once per request and repeated in Arrow (``take``, in C++);
        # only the per-row JSON (inputs, outputs, probabilities) is built in Python.
        inputs: list[str] = []
        output: list[str | None] = []
        probabilities: list[str | None] = []
        shadow_output: list[str | None] = []
        dumps = orjson.dumps
        for entry in entries:
            n = len(entry.records)
            inputs += [dumps(record).decode() for record in entry.records]
            predictions, proba, shadow = entry.predictions, entry.probabilities, entry.shadow_outputs
            output += [None] * n if predictions is None else _json_values(predictions)
            probabilities += [None] * n if not proba else [dumps(value).decode() for value in proba]
            shadow_output += [None] * n if shadow is None else _json_values(shadow)
        counts = [len(entry.records) for entry in entries]
        rows = sum(counts)
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

        columns = {
            "request_id": repeated("request_id", [e.request_id for e in entries]),
            "row": row,
            "ts": repeated("ts", [e.ts_us for e in entries]),
            "environment": repeated("environment", [self._environment] * len(entries)),
            "project": repeated("project", [e.project for e in entries]),
            "version": repeated("version", [e.version for e in entries]),
            "path": repeated("path", [e.path for e in entries]),
            "reason": repeated("reason", [e.reason for e in entries]),
            "status": repeated("status", [e.status for e in entries]),
            "latency_ms": repeated("latency_ms", [e.latency_ms for e in entries]),
            "inputs": pa.array(inputs, type=pa.string()),
            "output": pa.array(output, type=pa.string()),
            "probabilities": pa.array(probabilities, type=pa.string()),
            "shadow_version": repeated("shadow_version", [e.shadow_version for e in entries]),
            "shadow_output": pa.array(shadow_output, type=pa.string()),
            "replica": repeated("replica", [self._replica] * len(entries)),
        }
        return pa.RecordBatch.from_arrays([columns[field.name] for field in fields], schema=fields)

    def _flush(self, *, final: bool) -> None:
        attempts = 5 if final else 1
        for key in list(self._pending):
            batches = self._pending[key]
            rows = sum(batch.num_rows for batch in batches)
            for attempt in range(attempts):
                try:
                    self._write(key, batches)
                except Exception as exc:
                    self._metrics.capture_errors.inc()
                    log.warning("prediction log write failed (%s rows kept for retry): %s", rows, exc)
                    if attempt + 1 < attempts:
                        time.sleep(0.2 * (attempt + 1))
                    continue
                self.written += rows
                self._metrics.capture_written.inc(rows)
                del self._pending[key]
                self._pending_rows -= rows
                break
        if final and self._pending:
            rows = self._pending_rows
            log.error("prediction log: %s rows could not be written at shutdown", rows)
            self._drop_pending(rows)
        elif self._pending_rows > self._max_queue:  # the store is failing: keep the newest rows only
            for batches in self._pending.values():
                while batches and self._pending_rows > self._max_queue:
                    lost = batches.pop(0).num_rows
                    self._pending_rows -= lost
                    self.dropped += lost
                    self._metrics.capture_dropped.inc(lost)
            self._pending = {key: batches for key, batches in self._pending.items() if batches}

    def _drop_pending(self, rows: int) -> None:
        self.dropped += rows
        self._metrics.capture_dropped.inc(rows)
        self._pending.clear()
        self._pending_rows = 0

    def _write(self, key: tuple[str, date], batches: list[pa.RecordBatch]) -> None:
        project, day = key
        table = pa.Table.from_batches(batches, schema=PREDICTION_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        name = f"{partition('predictions', self._environment, project, day)}{uuid.uuid4().hex}.parquet"
        self._sink(name, sink.getvalue().to_pybytes())

    def close(self, timeout: float = 30.0) -> None:
        """Drain the queue, write everything and stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout)
        self._metrics.capture_depth.set(0)
