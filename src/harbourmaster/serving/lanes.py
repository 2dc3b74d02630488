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

A call is handed to its thread through a ``SimpleQueue`` and answered with one
``call_soon_threadsafe``: no ``concurrent.futures.Future`` (and its condition
variable) per call, which measured as about a quarter of the replica's CPU per request.

Even so, the hand-off costs 2-6 voluntary context switches per call (the thread's
wake-up, the GIL passing back and forth), more than a small model's own work. So a
call given an ``InlineGate`` may run on the caller's thread instead (the event loop),
only while the gate is open and the lane idle. The replica gives a gate only to
versions served by library code alone (an ONNX graph in onnxruntime, a pipeline of
scikit-learn's own classes: no project code, which could sleep or hang) and only for
small batches; the gate opens after a run of calls in threads that all finished within
its budget, and closes at the first call over it (see ``InlineGate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

log = logging.getLogger("harbourmaster.serving")

T = TypeVar("T")
IDLE_SECONDS = 10.0
PROBATION_CALLS = 64  # calls in a row within the budget, in threads, before a gate first opens
MAX_PROBATION_CALLS = 8192  # the longest probation after repeated closings
STALL_FACTOR = 50  # a call this many budgets long on the clock is over the budget, even with little CPU


class InlineGate:
    """Whether one version's calls may run on the event loop itself, judged by how long its calls take.

    Closed at first: calls run in the lane's threads, timed. After ``probation`` calls in a row within the
    budget, the gate opens and calls run inline while their lane is idle. A call is over the budget when its
    thread spent more CPU time than ``budget`` on it (the model's own work, whatever the machine's load), or
    when it took more than ``STALL_FACTOR`` times the budget on the clock (whatever the cause). A call cannot
    be stopped once it runs on the loop, so the first one over (inline or in a thread) closes the gate
    again, and the next probation is four times longer (up to ``MAX_PROBATION_CALLS``): a model that is slow
    now and then spends most of its time in threads. Updated from the loop and the lane's threads without a
    lock: a lost count only delays an opening.
    """

    __slots__ = ("_probation", "_streak", "budget", "closed_total", "open")

    def __init__(self, budget_seconds: float, probation: int = PROBATION_CALLS) -> None:
        self.budget = budget_seconds
        self.open = False
        self.closed_total = 0  # times a call over the budget sent the version back to threads
        self._probation = max(1, probation)
        self._streak = 0

    def observe(self, wall: float, cpu: float) -> None:
        """Record one call's duration on the clock and its thread's CPU time for it (seconds)."""
        if cpu <= self.budget and wall <= self.budget * STALL_FACTOR:
            self._streak += 1
            if not self.open and self._streak >= self._probation:
                self.open = True
            return
        self._streak = 0
        if self.open:
            self.open = False
            self.closed_total += 1
            self._probation = min(self._probation * 4, MAX_PROBATION_CALLS)
            log.warning(
                "a model call took %.1f ms (%.1f ms of CPU), over the %.1f ms budget of calls on the event loop: "
                "its calls run in threads again",
                wall * 1e3,
                cpu * 1e3,
                self.budget * 1e3,
            )


class _Call:
    """One model call handed to a lane thread; its flags change under the lane's lock."""

    __slots__ = ("abandoned", "args", "cancelled", "finished", "function", "gate", "loop", "result", "started")

    def __init__(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        result: Any,
        gate: InlineGate | None,
    ) -> None:
        self.function, self.args, self.loop, self.result, self.gate = function, args, loop, result, gate
        self.started = self.finished = self.abandoned = self.cancelled = False


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
        self._queue: SimpleQueue[_Call | None] = SimpleQueue()
        self._threads = 0  # daemon threads alive
        self._handed = 0  # calls handed to the threads and not finished
        self._closed = False
        self.abandoned_total = 0
        self.refused_total = 0
        self.inline_total = 0  # calls that ran on the caller's thread (an open gate, an idle lane)

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

    async def run(self, function: Callable[..., T], *args: Any, gate: InlineGate | None = None) -> T:
        """``function(*args)`` in one of the lane's threads; ``Saturated`` at once when the lane is full.

        Cancelling the caller (``asyncio.wait_for``) while it waits in the queue gives its place up;
        while the call runs, the call is abandoned: it finishes in its thread, holding its slot.
        With a ``gate``: the call is timed for it, and runs right here when it is open and the lane idle.
        """
        if gate is not None and gate.open and not self._running and not self._waiters:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args)
            finally:
                gate.observe(time.perf_counter() - started, time.thread_time() - cpu)
                self.inline_total += 1
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
        call = _Call(function, args, loop, loop.create_future(), gate)
        self._submit(call)
        try:
            return await call.result
        except asyncio.CancelledError:
            with self._lock:
                if not call.finished:
                    if call.started:
                        call.abandoned = True
                        self._abandoned += 1
                        self.abandoned_total += 1
                    else:
                        call.cancelled = True  # the thread that takes it frees its slot without running it
            if call.abandoned and self.on_abandon is not None:
                self.on_abandon()
            raise

    def _submit(self, call: _Call) -> None:
        # Invariant (under the lock): threads >= calls handed over and not finished, and a thread holds
        # one call at a time, so every call in the queue has a thread that is free to take it.
        with self._lock:
            self._handed += 1
            if self._handed > self._threads:
                self._threads += 1
                thread = threading.Thread(target=self._worker, name=f"hm-lane-{self.name}", daemon=True)
                thread.start()
            self._queue.put(call)

    def _worker(self) -> None:
        queue, lock = self._queue, self._lock
        while True:
            try:
                call = queue.get(timeout=IDLE_SECONDS) if not self._closed else queue.get_nowait()
            except Empty:
                with lock:
                    if self._handed < self._threads and queue.empty():
                        self._threads -= 1
                        return
                continue
            if call is None:  # closing: each thread's wake-up; it ends unless work is still queued for it
                with lock:
                    if self._handed < self._threads:
                        self._threads -= 1
                        return
                continue
            self._execute(call)
            with lock:
                self._handed -= 1
            del call

    def _execute(self, call: _Call) -> None:
        """Run one call (unless its caller left before it started) and hand its answer to its loop."""
        with self._lock:
            skip = call.cancelled
            call.started = True
        error: BaseException | None = None
        result: Any = None
        if not skip:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                result = call.function(*call.args)
            except BaseException as exc:  # handed to the caller, who decides what it means
                error = exc
            if call.gate is not None:
                call.gate.observe(time.perf_counter() - started, time.thread_time() - cpu)
        with self._lock:
            call.finished = True
            if call.abandoned:
                self._abandoned -= 1
            self._release_locked()  # before the caller hears back: it sees its slot free
        if not skip and not call.abandoned:
            # RuntimeError: the caller's loop is closed, nobody waits for this answer.
            with contextlib.suppress(RuntimeError):
                call.loop.call_soon_threadsafe(_deliver, call.result, result, error)

    def _release(self) -> None:
        """Free one slot: hand it to the oldest waiter still waiting, else give it back."""
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
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
            for _ in range(self._threads):
                self._queue.put(None)


def _deliver(result: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if result.done():  # the caller was cancelled meanwhile
        return
    if error is not None:
        result.set_exception(error)
    else:
        result.set_result(value)


def _wake_waiter(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
    # A waiter cancelled between the hand-over and now gives the slot back itself (see Lane.run).
