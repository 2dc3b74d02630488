"""``harbourmaster loadtest`` against real replicas on loopback: a version that holds the SLA passes and its
evidence is stored for the gates; a slow one fails with the reason; production's captured requests are
replayed when there are any, the reference profile is sampled otherwise; the default rate comes from
production's peak; bad options and states are refused with what to do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.cli_inprocess import invoke
from tests.conftest import make_settings
from tests.loadtest.helpers import (
    OWNER,
    STEADY,
    admit,
    capture,
    logged_inputs,
    replica_serving,
    train_steady,
    wait_for_replica,
)

from harbourmaster.core.sla import LATENCY_BUCKETS, Counts
from harbourmaster.errors import ConflictError, InvalidInputError, NotFoundError
from harbourmaster.services.platform import Platform
from harbourmaster.store import traffic_samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loadtest") / "home"


@pytest.fixture(scope="module")
def steady(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, dict[str, int]]]:
    platform = Platform(make_settings(home))
    versions = train_steady(platform, tmp_path_factory.mktemp("projects"))
    # prod without sign-offs here: what is tested is what a load test reads from it, not how one gets there.
    platform.environments.configure(OWNER, "prod", {"guarded": False, "gates": []})
    # The SLA a load test in test is judged against: prod's, the environment it is for. Generous for a
    # shared machine (2 cores, other work): what is tested is the verdict, not this host.
    platform.environments.configure(OWNER, "prod", {"sla": {"p99_ms": 2000, "error_rate": 0.0}})
    admit(platform, versions["slow"])
    admit(platform, versions["fast"], ("dev", "test", "prod"))
    yield platform, versions
    platform.close()


def test_a_version_that_holds_the_sla_passes_and_its_evidence_is_stored(
    steady: tuple[Platform, dict[str, int]], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, versions = steady
    fast = versions["fast"]
    platform.deployments.deploy(OWNER, STEADY, fast, "test")
    monkeypatch.setenv("HARBOURMASTER_HOME", str(home))
    with replica_serving(platform, home, "test", fast):
        result = invoke(["loadtest", STEADY, str(fast), "--env", "test", "--rate", "100", "--duration", "2"])
    assert result.code == 0, result.out + result.err + str(result.crash)
    assert "PASSED" in result.out and "--rate 100 req/s, as asked" in result.out
    # Nothing captured in prod: records sampled from the version's profile, every one accepted.
    assert "sampled from v" in result.out
    stored = platform.evidence.list(OWNER, STEADY, version=fast, environment="prod")[0]
    assert stored.check == "loadtest" and stored.passed
    figures = stored.details
    assert figures["tested_in"] == "test" and "for prod" in result.out
    assert figures["requests"] == 200 and figures["ok"] == 200 and figures["error_rate"] == 0.0
    assert figures["statuses"] == {"200": 200} and figures["answered_by"] == {f"champion v{fast}": 200}
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= figures["max_ms"] < 2000
    assert 80 <= figures["throughput"] <= 105
    # What the evidence gate reads for the digest.
    digest = platform.registry.get_version(OWNER, STEADY, fast).digest
    assert platform.evidence.for_gate(STEADY, digest, "prod")["loadtest"]["passed"] is True
    # The run is in the audit chain.
    events = [e for e in platform.audit.entries(OWNER) if e["action"] == "loadtest.run"]
    assert events[-1]["details"]["passed"] is True and events[-1]["details"]["evidence"] == stored.id


def test_a_slow_model_fails_the_sla_with_the_reason(steady: tuple[Platform, dict[str, int]], home: Path) -> None:
    platform, versions = steady
    slow = versions["slow"]
    platform.environments.configure(OWNER, "prod", {"sla": {"p99_ms": 20, "error_rate": 0.0}})
    try:
        platform.deployments.deploy(OWNER, STEADY, slow, "test")
        with replica_serving(platform, home, "test", slow):
            evidence = platform.loadtest.run(OWNER, STEADY, slow, "test", rate=20, duration=1)
    finally:
        platform.environments.configure(OWNER, "prod", {"sla": {"p99_ms": 2000, "error_rate": 0.0}})
    assert not evidence.passed
    assert "p99" in evidence.summary and "above the SLA of prod (20 ms)" in evidence.summary
    assert evidence.details["p99_ms"] >= 30  # every call sleeps 30 ms
    assert evidence.details["errors"] == 0
    assert platform.evidence.for_gate(STEADY, evidence.digest, "prod")["loadtest"]["passed"] is False


def test_captured_production_requests_are_replayed_at_a_rate_from_productions_peak(
    steady: tuple[Platform, dict[str, int]], home: Path
) -> None:
    platform, versions = steady
    fast = versions["fast"]
    platform.deployments.deploy(OWNER, STEADY, fast, "test")
    captured = [{"x1": round(1.0 + i * 0.125, 3), "x2": round(9.0 - i * 0.0625, 4)} for i in range(40)]
    capture(platform, "prod", fast, captured)
    # Two prod replicas' counters: 10 req/s each over the same 15 s, then 4 req/s: a peak of 20 req/s.
    now = datetime.now(UTC)
    with platform.db.transaction() as session:
        for replica in ("a", "b"):
            started = now - timedelta(seconds=60)
            for seconds, requests in ((30, 0.0), (45, 150.0), (60, 210.0)):
                counts = Counts(requests=requests, timed=requests, buckets=(requests,) * len(LATENCY_BUCKETS))
                at = started + timedelta(seconds=seconds)
                traffic_samples.add(session, replica, "prod", started, at, {STEADY: counts})
    with replica_serving(platform, home, "test", fast):
        evidence = platform.loadtest.run(OWNER, STEADY, fast, "test", duration=1)
    details = evidence.details
    assert details["rate"] == pytest.approx(40.0)
    assert details["rate_rule"].startswith("2 x the peak 20.00 req/s of prod")
    assert details["requests_source"] == f"40 captured request(s) of prod (answered by v{fast})"
    assert evidence.passed and details["ok"] == 40, evidence.summary
    # The replica of test answered exactly the captured inputs (its own prediction log says so).
    answered = {(r["x1"], r["x2"]) for r in logged_inputs(platform, "test", fast)}
    assert {(r["x1"], r["x2"]) for r in captured} <= answered


def test_no_traffic_in_production_falls_back_to_the_floor(steady: tuple[Platform, dict[str, int]]) -> None:
    from harbourmaster.core.loadtest import choose_rate

    assert choose_rate(None, None, 2.0, 10.0, "prod") == (
        10.0,
        "the floor, 10 req/s: prod has no traffic to learn a peak from",
    )
    rate, rule = choose_rate(None, 3.0, 2.0, 10.0, "prod")
    assert rate == 10.0 and "above 2 x the peak 3.00" in rule


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate", "0"], "--rate 0: give a rate above 0"),
        (["--duration", "-1"], "--duration -1: give a duration above 0"),
        (["--rate", "5000", "--duration", "600"], "more than 1000000: shorten --duration"),
        (["--headroom", "0"], "--headroom 0: give a factor above 0"),
    ],
)
def test_bad_options_are_refused_with_what_to_do(isolated_env: Path, options: list[str], message: str) -> None:
    result = invoke(["loadtest", STEADY, "1", "--env", "test", *options])
    assert result.crash is None and result.code not in (0, None)
    assert message in result.out + result.err


def test_unknown_things_and_wrong_states_are_named(steady: tuple[Platform, dict[str, int]]) -> None:
    platform, versions = steady
    with pytest.raises(NotFoundError, match="99"):
        platform.loadtest.run(OWNER, STEADY, 99, "test", rate=10, duration=1)
    with pytest.raises(NotFoundError, match="staging"):
        platform.loadtest.run(OWNER, STEADY, versions["fast"], "staging", rate=10, duration=1)
    platform.deployments.deploy(OWNER, STEADY, versions["fast"], "test")
    with pytest.raises(ConflictError, match=f"v{versions['slow']} is not the champion of test") as refused:
        platform.loadtest.run(OWNER, STEADY, versions["slow"], "test", rate=10, duration=1)
    assert "harbourmaster deploy steady" in refused.value.hint
    with pytest.raises(ConflictError, match="no live replica of test serves") as refused:
        platform.loadtest.run(OWNER, STEADY, versions["fast"], "test", rate=10, duration=1)
    assert "harbourmaster serve --env test" in refused.value.hint
    with pytest.raises(InvalidInputError, match="recorded by running it"):
        platform.evidence.record(OWNER, STEADY, versions["fast"], "test", checks=["loadtest"])


def test_through_a_control_plane_server_the_caller_is_recorded(steady: tuple[Platform, dict[str, int]]) -> None:
    import json

    from tests.loopback import serve_in_thread

    from harbourmaster.api.app import create_app
    from harbourmaster.serving.server import ServerThread

    platform, versions = steady
    fast = versions["fast"]
    platform.deployments.deploy(OWNER, STEADY, fast, "test")
    platform.identity.create_user(OWNER, "olive", ["operator"])
    token = platform.identity.create_token(OWNER, "olive", "tests").secret
    # Users make the store shared: a replica process would need a credential; this one is in-process.
    with ServerThread(platform, "test") as replica, serve_in_thread(create_app(platform)) as url:
        wait_for_replica(platform, "test", replica.url, fast)
        argv = ["loadtest", STEADY, str(fast), "--rate", "20", "--duration", "0.5", "--url", url, "--token", token]
        result = invoke([*argv, "--json"])
    assert result.code == 0, result.out + result.err
    item = json.loads(result.out)
    assert item["recorded_by"] == "olive" and item["environment"] == "prod" and item["details"]["tested_in"] == "test"
    assert item["details"]["requests"] == 10 and item["details"]["ok"] == 10
