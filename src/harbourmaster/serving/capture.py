"""Asynchronous prediction capture: a bounded queue drained in batches to Parquet by one thread.

The request path only does ``queue.put_nowait``; a full queue drops the row and
counts it (never silently). ``close()`` drains everything left and flushes, so a
graceful stop (SIGTERM) loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.store.artifacts import ArtifactStore
from harbourmaster.store.prediction_log import write_predictions

log = logging.getLogger("harbourmaster.serving.capture")

_STOP = object()


class CaptureWriter:
    """Bounded queue of prediction rows and the thread that writes them."""

    def __init__(
        self,
        store: ArtifactStore,
        metrics: ServingMetrics,
        *,
        max_queue: int = 100_000,
        batch_rows: int = 5_000,
        flush_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="hm-capture", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, rows: list[dict[str, Any]]) -> None:
        """Queue the rows of one request (never blocks; counts a drop when full)."""
        try:
            self._queue.put_nowait(rows)
        except queue.Full:
            self.dropped += len(rows)
            self._metrics.capture_dropped.inc(len(rows))

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        deadline = time.monotonic() + self._flush_seconds
        stopping = False
        while not stopping:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
                if item is _STOP:
                    stopping = True
                else:
                    pending.extend(item)
                    while len(pending) < self._batch_rows:  # take whatever else is already waiting
                        item = self._queue.get_nowait()
                        if item is _STOP:
                            stopping = True
                            break
                        pending.extend(item)
            except queue.Empty:
                pass
            self._metrics.capture_depth.set(self._queue.qsize())
            if pending and (stopping or len(pending) >= self._batch_rows or time.monotonic() >= deadline):
                pending = self._flush(pending, final=stopping)
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self._flush_seconds

    def _flush(self, rows: list[dict[str, Any]], *, final: bool) -> list[dict[str, Any]]:
        attempts = 5 if final else 1
        for attempt in range(attempts):
            try:
                write_predictions(self._store, rows)
            except Exception as exc:
                self._metrics.capture_errors.inc()
                log.warning("prediction log write failed (%s rows kept for retry): %s", len(rows), exc)
                if attempt + 1 < attempts:
                    time.sleep(0.2 * (attempt + 1))
                continue
            self.written += len(rows)
            self._metrics.capture_written.inc(len(rows))
            return []
        if final:
            log.error("prediction log: %s rows could not be written at shutdown", len(rows))
            self.dropped += len(rows)
            self._metrics.capture_dropped.inc(len(rows))
            return []
        return rows if len(rows) < self._queue.maxsize else rows[-self._queue.maxsize :]

    def close(self, timeout: float = 30.0) -> None:
        """Drain the queue, write everything and stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)  # blocks only while the queue is full, which the thread is emptying
        self._thread.join(timeout)
        self._metrics.capture_depth.set(0)
