"""Adaptive micro-batching: concurrent requests for one version are scored in one call.

The first waiting request opens a window of at most ``max_wait_ms``; the window
closes early once ``max_batch`` rows are waiting, or at once when nothing else is
queued (so a lone request pays no wait). One predict call, in the link's lane
(never on the event loop), answers the lot; when that call raises, each request
is scored alone so that only the one at fault fails. A request that stopped
waiting before its batch was scored is left out of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from harbourmaster.bundle.predictor import Batch, Predictor
from harbourmaster.serving.lanes import Lane

Result = tuple[np.ndarray, np.ndarray | None]
_CLOSE = object()


class Microbatcher:
    """Collects batches for one predictor within one event loop; ``close`` (from any thread) ends it."""

    def __init__(
        self,
        predictor: Predictor,
        lane: Lane,
        max_batch: int,
        max_wait_ms: float,
        observe: Callable[[int], None] | None = None,
        abandoned: Callable[[], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.lane = lane
        self.observe = observe  # called with the number of requests in each predict call
        self.abandoned = abandoned  # called per request that stopped waiting while its batch was scored
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._scoring: set[asyncio.Task[None]] = set()
        self._closed = False
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether the collecting task is alive."""
        return self._task is not None and not self._task.done()

    async def submit(self, batch: Batch) -> Result:
        if self._closed:  # a request that took a replaced route: scored alone
            return await self.lane.run(self.predictor.predict, batch)
        loop = asyncio.get_running_loop()
        if self._queue is None:
            with self._lock:
                closed = self._closed
                if not closed:
                    self._queue, self._loop = asyncio.Queue(), loop
            if closed:
                return await self.lane.run(self.predictor.predict, batch)
            self._task = loop.create_task(self._run())
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.put_nowait((batch, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        queue, loop = self._queue, asyncio.get_running_loop()
        last_size = 1
        closing = False
        while not closing:
            first = await queue.get()
            if first is _CLOSE:
                return
            items = [first]
            rows = len(first[0])
            await asyncio.sleep(0)  # one turn of the loop: requests already parsed can join
            # Adaptive: wait for company only when the previous batch had some (there is load).
            deadline = loop.time() + (self.max_wait if last_size > 1 else 0.0)
            while rows < self.max_batch:
                if not queue.empty():
                    item = queue.get_nowait()
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                if item is _CLOSE:
                    closing = True
                    break
                items.append(item)
                rows += len(item[0])
            last_size = len(items)
            task = loop.create_task(self._score(items))
            self._scoring.add(task)
            task.add_done_callback(self._scoring.discard)

    async def _score(self, items: list[tuple[Batch, asyncio.Future[Result]]]) -> None:
        items = [item for item in items if not item[1].done()]  # callers past their budget are left out
        if not items:
            return
        if self.observe is not None:
            self.observe(len(items))
        try:
            results = await self.lane.run(self._compute, [batch for batch, _ in items])
        except Exception as exc:  # the lane is saturated: every request here moves on
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(items, results, strict=True):
            if future.done():
                if self.abandoned is not None:
                    self.abandoned()
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _compute(self, batches: list[Batch]) -> list[Result | BaseException]:
        """In a lane thread: one merged call, or (when it raises) one call per request."""
        predictor = self.predictor
        if len(batches) > 1:
            try:
                merged = predictor.batch([record for batch in batches for record in batch.records])
                labels, proba = predictor.predict(merged)
            except Exception:  # one poison request must not fail the others merged with it
                pass
            else:
                results: list[Result | BaseException] = []
                start = 0
                for batch in batches:
                    end = start + len(batch)
                    results.append((labels[start:end], None if proba is None else proba[start:end]))
                    start = end
                return results
        out: list[Result | BaseException] = []
        for batch in batches:
            try:
                out.append(predictor.predict(batch))
            except Exception as exc:
                out.append(exc)
        return out

    def close(self) -> None:
        """Stop collecting (callable from any thread): queued requests are still scored, later ones alone."""
        with self._lock:
            self._closed = True
            loop, queue = self._loop, self._queue
        if loop is not None and queue is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop took the task with it
                loop.call_soon_threadsafe(queue.put_nowait, _CLOSE)
