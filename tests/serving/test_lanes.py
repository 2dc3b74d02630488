"""Lanes: bounded in-flight and queued calls in daemon threads, refusal when full, abandoned calls bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from harbourmaster.serving.lanes import STALL_FACTOR, InlineGate, Lane, Saturated


def test_a_full_lane_refuses_at_once_and_serves_its_queue_in_order() -> None:
    gate = threading.Event()
    order: list[int] = []

    def blocked(n: int) -> int:
        gate.wait(10)
        order.append(n)
        return n

    async def scenario() -> None:
        lane = Lane("t", max_in_flight=1, max_queued=2)
        calls = [asyncio.create_task(lane.run(blocked, n)) for n in range(3)]
        await asyncio.sleep(0.05)
        assert lane.figures() == (1, 2, 0)
        started = time.perf_counter()
        with pytest.raises(Saturated, match="saturated"):
            await lane.run(blocked, 9)
        assert time.perf_counter() - started < 0.5  # refused at once, not after the others
        gate.set()
        assert await asyncio.gather(*calls) == [0, 1, 2]
        assert order == [0, 1, 2] and lane.figures() == (0, 0, 0) and lane.refused_total == 1
        lane.close()

    asyncio.run(scenario())


def test_a_caller_past_its_budget_leaves_the_queue_or_abandons_a_running_call_which_keeps_its_slot() -> None:
    gate = threading.Event()
    abandoned: list[int] = []

    async def scenario() -> None:
        lane = Lane("t", max_in_flight=1, max_queued=4, on_abandon=lambda: abandoned.append(1))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(lane.run(gate.wait, 10), 0.05)  # running: abandoned
        assert lane.figures() == (1, 0, 1) and abandoned == [1]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(lane.run(time.sleep, 0), 0.05)  # queued: gives its place up
        assert lane.figures() == (1, 0, 1) and abandoned == [1]
        gate.set()
        deadline = time.monotonic() + 5
        while lane.figures() != (0, 0, 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert lane.figures() == (0, 0, 0)  # the abandoned call finished and freed its slot
        assert await lane.run(sum, [1, 2]) == 3
        lane.close()

    asyncio.run(scenario())
    deadline = time.monotonic() + 5
    while any(t.name == "hm-lane-t" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "hm-lane-t" for t in threading.enumerate())  # closed: its threads ended


def test_lane_threads_are_daemons_and_exceptions_reach_the_caller() -> None:
    seen: list[bool] = []

    def boom() -> None:
        seen.append(threading.current_thread().daemon)
        raise ValueError("model bug")

    async def scenario() -> None:
        lane = Lane("d", max_in_flight=2, max_queued=0)
        with pytest.raises(ValueError, match="model bug"):
            await lane.run(boom)
        assert lane.figures() == (0, 0, 0)
        lane.close()

    asyncio.run(scenario())
    assert seen == [True]


def test_calls_up_to_the_limit_run_at_the_same_time_and_idle_threads_end(monkeypatch: pytest.MonkeyPatch) -> None:
    import harbourmaster.serving.lanes as lanes

    monkeypatch.setattr(lanes, "IDLE_SECONDS", 0.05)
    barrier = threading.Barrier(4, timeout=5)  # passes only when four calls are inside at once

    async def scenario() -> None:
        lane = Lane("b", max_in_flight=4, max_queued=0)
        assert sorted(await asyncio.gather(*(lane.run(lambda n=n: (barrier.wait(), n)[1]) for n in range(4)))) == [
            0,
            1,
            2,
            3,
        ]
        deadline = time.monotonic() + 5
        while lane.threads and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert lane.threads == 0  # idle threads ended
        # Calls made while threads are ending are never stranded: each one is answered.
        for _ in range(50):
            assert await asyncio.wait_for(lane.run(sum, [1, 1]), 5) == 2
            await asyncio.sleep(0.001 * (_ % 7))
        lane.close()

    asyncio.run(scenario())


def test_a_call_whose_caller_left_before_it_started_is_not_run() -> None:
    gate = threading.Event()
    ran: list[str] = []

    async def scenario() -> None:
        lane = Lane("c", max_in_flight=2, max_queued=0)
        blocker = asyncio.create_task(lane.run(gate.wait, 10))
        await asyncio.sleep(0.05)
        # The second slot is free, but the call is cancelled before any thread starts it.
        call = asyncio.create_task(lane.run(ran.append, "late"))
        await asyncio.sleep(0)
        call.cancel()
        gate.set()
        await blocker
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.1)
        assert lane.figures() == (0, 0, 0)
        lane.close()

    asyncio.run(scenario())
    assert ran in ([], ["late"])  # a thread may have started it before the cancel landed; never twice


def _burn(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_gated_call_runs_inline_after_its_probation_and_goes_back_to_threads_once_over_budget() -> None:
    loop_thread: list[threading.Thread] = []
    inline: list[bool] = []

    def where(n: int) -> int:
        inline.append(threading.current_thread() is loop_thread[0])
        return n

    async def scenario() -> None:
        loop_thread.append(threading.current_thread())
        lane = Lane("t", max_in_flight=2, max_queued=4)
        gate = InlineGate(0.002, probation=3)
        assert [await lane.run(where, n, gate=gate) for n in range(3)] == [0, 1, 2]
        assert inline == [False] * 3 and gate.open  # probation: timed in threads
        assert await lane.run(where, 3, gate=gate) == 3 and inline[-1] and lane.inline_total == 1
        assert await lane.run(where, 4) == 4 and not inline[-1]  # no gate: always a thread

        blocker = threading.Event()
        busy = asyncio.create_task(lane.run(blocker.wait, 10))
        await asyncio.sleep(0.05)
        assert await lane.run(where, 5, gate=gate) == 5 and not inline[-1]  # a busy lane: no inline call
        blocker.set()
        await busy

        # over the budget on the clock (a sleep spends no CPU): the gate closes; probation is 4 times longer
        await lane.run(time.sleep, 0.002 * STALL_FACTOR * 2, gate=gate)
        assert not gate.open and gate.closed_total == 1
        for n in range(11):
            await lane.run(where, n, gate=gate)
        assert not gate.open and not any(inline[-11:])
        await lane.run(where, 11, gate=gate)
        assert gate.open
        # over the budget in CPU time
        await lane.run(_burn, 0.01, gate=gate)
        assert not gate.open and gate.closed_total == 2
        # an exception raised inline reaches the caller like one raised in a thread
        for _ in range(48):
            await lane.run(where, 0, gate=gate)
        assert gate.open
        with pytest.raises(ZeroDivisionError):
            await lane.run(lambda: 1 / 0, gate=gate)
        assert gate.open and lane.figures() == (0, 0, 0)
        lane.close()

    asyncio.run(scenario())
