"""The open-loop generator and the pure rules of a load test.

The stall check uses a stub ASGI server of its own on loopback: every request that arrives during a
0.5 s window mid-run is held until the window ends. Measured from intended send times, every request
*due* during the stall is charged for it (far more than the connections in flight), so p99 shows it; a
closed-loop tool that timed from the actual send would charge only the few requests in flight."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.loopback import serve_in_thread

from harbourmaster.core.environments import SlaConfig
from harbourmaster.core.loadtest import (
    check_options,
    figures,
    judge,
    peak_rate,
    sample_records,
)
from harbourmaster.core.profile import build_profile
from harbourmaster.core.schema import infer_input_schema
from harbourmaster.core.sla import LATENCY_BUCKETS, Counts, Sample
from harbourmaster.loadgen import Plan, encode_post, run_open_loop

STALL_FROM, STALL_FOR = 0.8, 0.5  # seconds after the first request


def stalling_app() -> Any:
    first: list[float] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        now = time.monotonic()
        first.append(now) if not first else None
        since = now - first[0]
        if STALL_FROM <= since < STALL_FROM + STALL_FOR:
            await asyncio.sleep(STALL_FROM + STALL_FOR - since)
        body = b'{"path": "champion", "version": 1}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def test_a_stall_mid_run_is_charged_to_every_request_due_during_it() -> None:
    with serve_in_thread(stalling_app()) as url:
        host, port, raw = encode_post(f"{url}/v1/projects/p/predict", b'{"x": 1}')
        tag = lambda status, body: f"{json.loads(body)['path']} v{json.loads(body)['version']}"  # noqa: E731
        run = run_open_loop(Plan(host, port, [raw], rate=200, duration=2.0, connections=8, grace=5.0, inspect=tag))
    outcomes = [(o.intended, o.latency, o.status, o.tag) for o in run.outcomes]
    result = figures(200, 2.0, outcomes, run.elapsed, run.late_dispatches, run.waited, run.max_dispatch_lag_ms, 8)
    assert result.requests == 400 and result.ok == 400 and result.errors == 0
    slow = [o for o in run.outcomes if o.latency is not None and o.latency > 0.1]
    # About 0.5 s x 200 req/s = 100 requests were due during the stall; only 8 were in flight.
    assert len(slow) >= 60, len(slow)
    assert result.p99_ms is not None and result.p99_ms >= 350
    assert result.max_ms is not None and 400 <= result.max_ms < 2000
    assert result.p50_ms is not None and result.p50_ms < 100  # the rest of the run was fast
    assert run.waited >= 50  # they waited for a connection: the server, not the generator, was slow
    assert result.answered_by == {"champion v1": 400}
    # The slowest requests were those due at the start of the stall.
    assert all(STALL_FROM - 0.2 <= intended <= STALL_FROM + STALL_FOR for intended, _ in result.slowest[:10])
    passed, reasons = judge(result, SlaConfig(p99_ms=100, error_rate=0.0), "test")
    assert not passed and any("p99" in r and "above the SLA of test (100 ms)" in r for r in reasons)


def test_a_server_that_is_not_there_is_named() -> None:
    from tests.loopback import free_port

    port = free_port()
    host, port, raw = encode_post(f"http://127.0.0.1:{port}/x", b"{}")
    try:
        run_open_loop(Plan(host, port, [raw], rate=10, duration=0.1, connections=2))
    except ConnectionError as exc:
        assert f"127.0.0.1:{port}" in str(exc)
    else:
        raise AssertionError("no error for a closed port")


def test_peak_rate_sums_replicas_over_overlapping_intervals_and_survives_restarts() -> None:
    def sample(at: float, started: float, requests: float) -> Sample:
        return Sample(at, started, Counts(requests=requests, buckets=(0.0,) * len(LATENCY_BUCKETS)))

    a = [sample(0, -100, 0), sample(15, -100, 150), sample(30, -100, 300), sample(45, -100, 330)]
    b = [sample(5, -50, 1000), sample(20, -50, 1150), sample(35, 30, 25)]  # b restarted at 30: 25 in 5 s
    assert peak_rate([a]) == 10.0
    assert peak_rate([a, b]) == 20.0
    assert peak_rate([a[:1]]) is None and peak_rate([]) is None
    assert peak_rate([[sample(0, -10, 0), sample(15, -10, 0)]]) == 0.0


def test_options_are_bounded() -> None:
    assert check_options(100, 10, 2, 10) == []
    assert any("--rate 0" in p for p in check_options(0, 10, 2, 10))
    assert any("--duration -1" in p for p in check_options(10, -1, 2, 10))
    assert any("--duration 601" in p for p in check_options(10, 601, 2, 10))
    assert any("shorten --duration" in p for p in check_options(50_000, 600, 2, 10))
    assert any("--floor 0" in p for p in check_options(None, 10, 2, 0))


def test_sampled_records_follow_the_profile_and_the_schema_types() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "age": [20, 30, 40, 50, 60] * 20,
            "income": [1.5, 2.5, 3.5, 4.5, 5.5] * 20,
            "colour": ["red", "red", "red", "blue", "green"] * 20,
            "member": [True, False, True, True, False] * 20,
        }
    )
    schema = infer_input_schema(frame)
    records = sample_records(build_profile(frame), schema, 500, seed=1)
    assert len(records) == 500
    assert all(isinstance(r["age"], int) and 20 <= r["age"] <= 60 for r in records)
    assert all(isinstance(r["income"], float) and 1.5 <= r["income"] <= 5.5 for r in records)
    assert all(isinstance(r["member"], bool) for r in records)
    shares = {c: sum(r["colour"] == c for r in records) / 500 for c in ("red", "blue", "green")}
    assert 0.5 < shares["red"] < 0.7 and 0.1 < shares["blue"] < 0.3 and set(shares) == {"red", "blue", "green"}
    assert sample_records(build_profile(frame), schema, 5, seed=1) == records[:5]  # reproducible


def test_a_saturated_generator_is_said_so_and_never_blamed_on_the_server() -> None:
    outcomes = [(i / 100, 0.005, 200, None) for i in range(100)]
    late = figures(100, 1.0, outcomes, 1.0, late_sends=30, waited=0, max_send_lag_ms=80.0, connections=8)
    passed, reasons = judge(late, SlaConfig(p99_ms=50), "test")
    assert passed and "charged to the server" in reasons[-1]
    failing = figures(100, 1.0, [(i / 100, 0.2, 200, None) for i in range(100)], 1.0, 30, 0, 80.0, 8)
    passed, reasons = judge(failing, SlaConfig(p99_ms=50), "test")
    assert not passed and "may be this machine's, not the server's" in reasons[-1]
    errors = figures(100, 1.0, [(i / 100, None, -1, None) for i in range(100)], 1.0, 0, 0, 0.0, 8)
    passed, reasons = judge(errors, SlaConfig(error_rate=0.01), "test")
    assert not passed and errors.timed_out == 100 and errors.statuses == {"timeout": 100}
    assert "error rate 100.00% is above the SLA of test (1.00%)" in reasons
