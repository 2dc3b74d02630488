"""Bounded capacity for model code: a ``Lane`` runs one project's calls of one kind off the event loop.

Each (project, link) of a replica has a lane of its own: at most ``max_in_flight``
calls run at once, each in a daemon thread of the lane; at most ``max_queued`` more
wait for a slot (in the event loop, holding no thread); beyond that a call is
refused at once with ``Saturated``. A slow model therefore fills its own lane and
nobody else's: not another project, not its failover, not health or metrics.

A call whose caller gave up (latency budget) keeps its slot until the model
returns, so abandoned calls are bounded by ``max_in_flight`` and counted. Threads
are daemons so that a model stuck forever never keeps the process from exiting
on SIGTERM; idle ones end after ``IDLE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

log = logging.getLogger("harbourmaster.serving")

T = TypeVar("T")
IDLE_SECONDS = 10.0


class Saturated(Exception):
    """A lane had no free slot and its queue was full."""

    def __init__(self, lane: str, max_in_flight: int, max_queued: int) -> None:
        super().__init__(f"{lane} is saturated ({max_in_flight} calls running, {max_queued} queued)")
        self.lane = lane


class Lane:
    """At most ``max_in_flight`` concurrent calls in daemon threads, ``max_queued`` waiting; refuse the rest."""

    def __init__(
        self, name: str, max_in_flight: int, max_queued: int, on_abandon: Callable[[], None] | None = None
    ) -> None:
        self.name = name
        self.on_abandon = on_abandon
        self.max_in_flight = max(1, max_in_flight)
        self.max_queued = max(0, max_queued)
        self._lock = threading.Lock()
        self._running = 0  # slots held: calls running in a thread, abandoned ones included
        self._abandoned = 0  # of those, calls whose caller stopped waiting
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._work: deque[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]] = deque()
        self._wake = threading.Condition(self._lock)
        self._threads = 0
        self._idle = 0
        self._closed = False
        self.abandoned_total = 0
        self.refused_total = 0

    # -- figures (read without the lock: plain ints, for metrics) ----------------------

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def abandoned(self) -> int:
        return self._abandoned

    @property
    def threads(self) -> int:
        return self._threads

    def figures(self) -> tuple[int, int, int]:
        """(running, queued, abandoned-and-still-running) at this instant."""
        with self._lock:
            return self._running, len(self._waiters), self._abandoned

    # -- calls ------------------------------------------------------------------------

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in one of the lane's threads; ``Saturated`` at once when the lane is full.

        Cancelling the caller (``asyncio.wait_for``) while it waits in the queue gives its place up;
        while the call runs, the call is abandoned: it finishes in its thread, holding its slot.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] | None = None
        with self._lock:
            if self._running < self.max_in_flight and not self._waiters:
                self._running += 1
            elif len(self._waiters) >= self.max_queued:
                self.refused_total += 1
                raise Saturated(self.name, self.max_in_flight, self.max_queued)
            else:
                waiter = loop.create_future()
                self._waiters.append((loop, waiter))
        if waiter is not None:
            try:
                await waiter
            except asyncio.CancelledError:
                with self._lock:
                    try:
                        self._waiters.remove((loop, waiter))
                        handed = False
                    except ValueError:
                        handed = True  # the slot was handed over as we were cancelled: give it back
                if handed:
                    self._release()
                raise
        future: Future[T] = Future()
        self._submit(function, args, future)
        try:
            return await asyncio.wrap_future(future, loop=loop)
        except asyncio.CancelledError:
            if not future.done():
                with self._lock:
                    self._abandoned += 1
                    self.abandoned_total += 1
                future.add_done_callback(self._forget_abandoned)
                if self.on_abandon is not None:
                    self.on_abandon()
            raise

    def _forget_abandoned(self, _future: Future[Any]) -> None:
        with self._lock:
            self._abandoned -= 1

    def _submit(self, function: Callable[..., Any], args: tuple[Any, ...], future: Future[Any]) -> None:
        with self._lock:
            self._work.append((function, args, future))
            if self._idle:
                self._wake.notify()
            else:
                self._threads += 1
                thread = threading.Thread(target=self._worker, name=f"hm-lane-{self.name}", daemon=True)
                thread.start()

    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._work:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle += 1
                    woken = self._wake.wait(IDLE_SECONDS)
                    self._idle -= 1
                    if not woken and not self._work:
                        self._threads -= 1
                        return
                function, args, future = self._work.popleft()
            if not future.set_running_or_notify_cancel():
                self._release()
                continue
            error: BaseException | None = None
            try:
                result = function(*args)
            except BaseException as exc:  # handed to the caller, who decides what it means
                error, result = exc, None
            self._release()  # before the caller hears back: it sees its slot free
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
            del function, args, future, result, error

    def _release(self) -> None:
        """Free one slot: hand it to the oldest waiter still waiting, else give it back."""
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(_wake_waiter, waiter)
                except RuntimeError:  # that loop is closed: nobody waits there any more
                    continue
                return  # the slot passes to the waiter (still counted in _running), which may give it back
            self._running -= 1

    def close(self) -> None:
        """End the lane's idle threads once their work is done (calls still queued or running finish)."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()


def _wake_waiter(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
    # A waiter cancelled between the hand-over and now gives the slot back itself (see Lane.run).
