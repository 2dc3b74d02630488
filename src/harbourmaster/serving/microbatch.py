"""Adaptive micro-batching: concurrent requests for one version are scored in one call.

The first waiting request opens a window of at most ``max_wait_ms``; the window
closes early once ``max_batch`` rows are waiting, or at once when nothing else is
queued (so a lone request pays no wait). One predict call answers the lot; when
that call raises, each request is scored alone so that only the one at fault fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from harbourmaster.bundle.predictor import Batch, Predictor


class Microbatcher:
    """Collects batches for one predictor within one event loop."""

    def __init__(
        self,
        predictor: Predictor,
        max_batch: int,
        max_wait_ms: float,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.observe = observe  # called with the number of requests in each predict call
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[tuple[Batch, asyncio.Future[Any]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, batch: Batch) -> tuple[np.ndarray, np.ndarray | None]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((batch, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        queue, loop = self._queue, asyncio.get_running_loop()
        last_size = 1
        while True:
            items = [await queue.get()]
            rows = len(items[0][0])
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
                items.append(item)
                rows += len(item[0])
            last_size = len(items)
            self._score(items)

    def _score(self, items: list[tuple[Batch, asyncio.Future[Any]]]) -> None:
        predictor = self.predictor
        if self.observe is not None:
            self.observe(len(items))
        try:
            if len(items) == 1:
                results = [predictor.predict(items[0][0])]
            else:
                records = [record for batch, _ in items for record in batch.records]
                merged = predictor.batch(records)
                labels, proba = predictor.predict(merged)
                results, start = [], 0
                for batch, _ in items:
                    end = start + len(batch)
                    results.append((labels[start:end], None if proba is None else proba[start:end]))
                    start = end
        except Exception as exc:
            if len(items) > 1:  # one poison request must not fail the others merged with it
                for item in items:
                    self._score([item])
                return
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(items, results, strict=True):
            if not future.done():
                future.set_result(result)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
