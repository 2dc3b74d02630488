"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule (``rate`` per second) whatever
the server does, and each one's latency is measured from the time it was *meant* to leave, so a server
that stalls is charged for every request that should have gone out meanwhile (no coordinated omission,
as wrk2 and k6's constant-arrival-rate executor measure).

A scheduler puts request ``i`` on a queue at ``start + i / rate``; ``connections`` workers, each holding
one keep-alive connection, take them in turn. A request that finds no free worker waits in the queue and
its wait counts in its latency. Two figures tell a saturated *generator* from a slow *server*:
``late_dispatches`` (the scheduler itself woke up more than ``late_ms`` after a request's time: this
process could not keep up) and ``waited`` (a request was queued more than ``late_ms`` for a free
connection: every connection was busy with a slow answer).

Raw HTTP/1.1 on asyncio protocols (uvloop when installed; callbacks, no task per request) rather
than httpx: the generator must offer the rate one replica serves, and httpx's per-request overhead caps
an event loop far below it (see docs/benchmarks.md, "Load generator"). Bounded: every run has a
request count and a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Outcome", "Plan", "Run", "encode_post", "run_open_loop"]

TIMED_OUT = -1  # status of a request with no answer by the run's deadline
CONNECTION_ERROR = -2  # status of a request whose connection failed


@dataclass(frozen=True)
class Plan:
    """What to send: ``requests`` (raw HTTP/1.1 messages, sent in turn), at ``rate`` per second for
    ``duration`` seconds, over at most ``connections`` connections to ``host:port``. Requests still
    unanswered ``grace`` seconds after the last one was due count as timed out."""

    host: str
    port: int
    requests: Sequence[bytes]
    rate: float
    duration: float
    connections: int = 64
    grace: float = 5.0
    late_ms: float = 10.0
    inspect: Callable[[int, bytes], str] | None = None  # (status, body) -> a tag counted per answer

    @property
    def count(self) -> int:
        return max(1, round(self.rate * self.duration))


@dataclass
class Outcome:
    """One request: when it was meant to leave (seconds after the start), its latency from then (None:
    no answer), its status (``TIMED_OUT``/``CONNECTION_ERROR`` below zero), its tag."""

    intended: float
    latency: float | None = None
    status: int = TIMED_OUT
    tag: str | None = None


@dataclass
class Run:
    """A finished run: each request's outcome, the span from the first intended send to the last answer,
    and the generator's own figures."""

    outcomes: list[Outcome]
    elapsed: float
    late_dispatches: int
    waited: int
    max_dispatch_lag_ms: float
    connections_used: int
    errors: dict[str, int] = field(default_factory=dict)  # connection error kinds, counted


def encode_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[str, int, bytes]:
    """(host, port, raw request) of a keep-alive HTTP/1.1 POST of a JSON ``body`` to ``url``."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r}: the load generator speaks plain http:// (put TLS in front of a replica)")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.hostname}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return parts.hostname, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _parse(buffer: bytearray) -> tuple[int, bytes, bool, int] | None:
    """(status, body, keep the connection, bytes used) of the first complete HTTP/1.1 response in
    ``buffer``, or None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked, keep = False, not lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
    at = end + 4
    if chunked:
        parts = []
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
            if size == 0:
                if len(buffer) < line_end + 4:
                    return None
                return status, b"".join(parts), keep, line_end + 4
            if len(buffer) < line_end + 2 + size + 2:
                return None
            parts.append(bytes(buffer[line_end + 2 : line_end + 2 + size]))
            at = line_end + 2 + size + 2
    if length is None:
        raise ValueError("a response without Content-Length on a keep-alive connection")
    if len(buffer) < at + length:
        return None
    return status, bytes(buffer[at : at + length]), keep, at + length


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight (callbacks only: no task per request)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.index: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, index: int) -> None:
        self.index = index
        assert self.transport is not None
        self.transport.write(self.pool.plan.requests[index % len(self.pool.plan.requests)])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.index is None:
            return
        try:
            parsed = _parse(self.buffer)
        except ValueError:
            self._fail("BadResponse")
            return
        if parsed is None:
            return
        status, body, keep, used = parsed
        del self.buffer[:used]
        index, self.index = self.index, None
        self.pool.answered(index, status, body)
        if keep:
            self.pool.idle(self)
        else:
            self._drop()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.index is not None:
            self._fail(type(exc).__name__ if exc else "ConnectionClosed")
        self.pool.lost(self)

    def _fail(self, kind: str) -> None:
        index, self.index = self.index, None
        if index is not None:
            self.pool.failed(index, kind)
        self._drop()

    def _drop(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class _Pool:
    """Hands each due request to an idle connection, or queues it until one is free."""

    def __init__(self, plan: Plan, outcomes: list[Outcome], clock: Callable[[], float]) -> None:
        self.plan, self.outcomes, self.clock = plan, outcomes, clock
        self.free: deque[_Connection] = deque()
        self.waiting: deque[tuple[int, float]] = deque()
        self.live = 0
        self.start = 0.0
        self.late_s = plan.late_ms / 1000.0
        self.waited = 0
        self.remaining = len(outcomes)
        self.last_answer = 0.0
        self.errors: dict[str, int] = {}
        self.reopened = 0
        self.tasks: set[asyncio.Future[None]] = set()
        self.done = asyncio.Event()

    async def open(self, count: int) -> int:
        loop = asyncio.get_running_loop()
        opened = await asyncio.gather(
            *(loop.create_connection(lambda: _Connection(self), self.plan.host, self.plan.port) for _ in range(count)),
            return_exceptions=True,
        )
        good = [pair[1] for pair in opened if not isinstance(pair, BaseException)]
        if not good:
            raise ConnectionError(f"cannot connect to {self.plan.host}:{self.plan.port}: {opened[0]}")
        self.live = len(good)
        self.free.extend(good)
        return len(good)

    def dispatch(self, index: int, now: float) -> None:
        if self.free:
            self.free.popleft().send(index)
        else:
            self.waiting.append((index, now))
            if self.live < self.plan.connections:  # a connection was lost: open another
                self.live += 1
                self.reopened += 1
                task = asyncio.ensure_future(self._reopen())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _reopen(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(lambda: _Connection(self), self.plan.host, self.plan.port)
        except OSError as exc:
            self.live -= 1
            if self.waiting:
                index, _ = self.waiting.popleft()
                self.failed(index, type(exc).__name__)
            return
        self.idle(connection)

    def idle(self, connection: _Connection) -> None:
        if self.waiting:
            index, queued = self.waiting.popleft()
            if self.clock() - queued > self.late_s:
                self.waited += 1
            connection.send(index)
        else:
            self.free.append(connection)

    def lost(self, connection: _Connection) -> None:
        self.live -= 1
        with contextlib.suppress(ValueError):
            self.free.remove(connection)

    def _finish(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.done.set()

    def answered(self, index: int, status: int, body: bytes) -> None:
        now = self.clock()
        self.last_answer = max(self.last_answer, now)
        outcome = self.outcomes[index]
        outcome.status, outcome.latency = status, now - (self.start + outcome.intended)
        if self.plan.inspect is not None:
            outcome.tag = self.plan.inspect(status, body)
        self._finish()

    def failed(self, index: int, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.outcomes[index].status = CONNECTION_ERROR
        self._finish()

    def close(self) -> None:
        for connection in list(self.free):
            connection._drop()


async def _run(plan: Plan) -> Run:
    clock = time.perf_counter  # not loop.time(): uvloop's clock is in whole milliseconds, cached per iteration
    count = plan.count
    outcomes = [Outcome(intended=i / plan.rate) for i in range(count)]
    pool = _Pool(plan, outcomes, clock)
    # Every connection is opened before the first request is due, so opening them is not measured.
    opened = await pool.open(max(1, plan.connections))
    late_s = plan.late_ms / 1000.0
    late, lag = 0, 0.0
    pool.start = start = clock() + 0.01
    pool.last_answer = start
    index = 0
    try:
        while index < count:
            now = clock()
            while index < count and start + outcomes[index].intended <= now:
                behind = now - (start + outcomes[index].intended)
                if behind > late_s:
                    late += 1
                lag = max(lag, behind)
                pool.dispatch(index, now)
                index += 1
            if index < count:
                await asyncio.sleep(max(0.0, start + outcomes[index].intended - clock()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.done.wait(), timeout=max(0.0, start + plan.duration + plan.grace - clock()))
    finally:
        pool.close()
        for outcome in outcomes[index:]:  # never sent (the run was cancelled)
            outcome.status = TIMED_OUT
    return Run(
        outcomes=outcomes,
        elapsed=max(pool.last_answer - start, 1e-9),
        late_dispatches=late,
        waited=pool.waited,
        max_dispatch_lag_ms=lag * 1000.0,
        connections_used=opened + pool.reopened,
        errors=pool.errors,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_open_loop(plan: Plan) -> Run:
    """Run ``plan`` on an event loop of its own (in the calling thread) and return every outcome."""
    if not plan.requests:
        raise ValueError("no request to send")
    if not (plan.rate > 0 and plan.duration > 0):
        raise ValueError("rate and duration must be positive")
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        started = time.monotonic()
        run = runner.run(_run(plan))
        run.elapsed = min(run.elapsed, time.monotonic() - started)
        return run
