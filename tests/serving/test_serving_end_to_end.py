"""Serving end to end against a live replica, on small projects written under tmp_path: fallback triggers
(latency budget, NaN, invalid output), categorical validation, micro-batching, and the desired-state CLI
through the SDK client (embedded and against a control-plane server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import make_settings
from tests.governance.helpers import live_server
from tests.serving.projects import (
    COLOURS,
    INVALID,
    MOODY,
    NAN,
    RAISE,
    SLOW,
    SLOW_SECONDS,
    moody_frame,
    train_colours,
    train_moody,
)

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.prediction_log import PredictionLog

ACTOR = Actor.local_owner()
BUDGET_MS = 200.0


def wait_for(server: ServerThread, project: str, revision: int, timeout: float = 20.0) -> None:
    """Block until the replica serves ``revision`` of ``project`` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        route = server.replica.table.routes.get(project)
        if route is not None and route.revision >= revision:
            return
        failed = server.replica.failures.get(project)
        if failed and failed["revision"] >= revision:
            raise AssertionError(f"{project} revision {revision} refused: {failed['error']}")
        time.sleep(0.05)
    raise AssertionError(f"replica did not reach revision {revision} of {project}")


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("e2e")
    platform = Platform(make_settings(folder / "home"))
    moody = train_moody(platform, folder)
    colours = train_colours(platform, folder)
    platform.deployments.deploy(ACTOR, MOODY, moody["bad"], "dev")
    platform.deployments.deploy(ACTOR, COLOURS, colours, "dev")
    server = ServerThread(platform, "dev", ReplicaOptions(poll_seconds=0.1, heartbeat_seconds=0.5)).start()
    client = httpx.Client(base_url=server.url, timeout=30)
    yield {"platform": platform, "moody": moody, "colours": colours, "server": server, "client": client}
    client.close()
    server.stop()
    platform.close()


def configure(world: dict[str, Any], champion: int, *, failover: int | None, fallback: dict, **options: Any) -> None:
    """One desired state for the moody project, served before returning."""
    platform = world["platform"]
    platform.deployments.deploy(ACTOR, MOODY, champion, "dev")
    platform.deployments.set_fallback(ACTOR, MOODY, "dev", failover=failover, fallback=fallback, replace=True)
    state = platform.deployments.set_options(ACTOR, MOODY, "dev", options)
    wait_for(world["server"], MOODY, state.revision)


def predict(client: httpx.Client, x1: float, x2: float = 5.0) -> httpx.Response:
    return client.post(f"/v1/projects/{MOODY}/predict", json={"x1": x1, "x2": x2})


def fallbacks(client: httpx.Client, reason: str, target: str) -> float:
    text = client.get("/metrics").text
    return metric(text, "harbourmaster_fallbacks_total", project=MOODY, source="champion", reason=reason, target=target)


def test_champion_over_its_latency_budget_falls_back_to_failover_then_rules_then_503(world: dict[str, Any]) -> None:
    client, moody = world["client"], world["moody"]
    configure(world, moody["bad"], failover=moody["good"], fallback={}, latency_budget_ms=BUDGET_MS)
    to_failover, to_rules = fallbacks(client, "latency", "failover"), fallbacks(client, "latency", "rules")

    normal = predict(client, 2.0).json()
    assert (normal["path"], normal["version"]) == ("champion", moody["bad"]) and "fallback" not in normal

    started = time.perf_counter()
    slow = predict(client, SLOW)
    elapsed = time.perf_counter() - started
    assert slow.status_code == 200
    body = slow.json()
    assert (body["path"], body["version"]) == ("failover", moody["good"])
    assert body["fallback"]["reason"] == "latency" and f"exceeded {BUDGET_MS}" in body["fallback"]["detail"]
    assert slow.headers["x-serving-path"] == "failover" and slow.headers["x-model-version"] == str(moody["good"])
    assert elapsed < SLOW_SECONDS, "the budget must cut the slow champion short, not wait for it"
    assert fallbacks(client, "latency", "failover") == to_failover + 1

    configure(world, moody["bad"], failover=None, fallback={"default": 0}, latency_budget_ms=BUDGET_MS)
    ruled = predict(client, SLOW).json()
    assert (ruled["path"], ruled["version"], ruled["prediction"]) == ("rules", None, 0)
    assert ruled["fallback"]["reason"] == "latency"
    assert fallbacks(client, "latency", "rules") == to_rules + 1

    configure(world, moody["bad"], failover=None, fallback={}, latency_budget_ms=BUDGET_MS)
    failed = predict(client, SLOW)
    assert failed.status_code == 503 and failed.headers["content-type"] == "application/json"
    problem = failed.json()
    assert problem["reason"] == "latency" and f"exceeded {BUDGET_MS} ms" in problem["error"]
    assert MOODY in problem["error"] and "fallback" in problem["hint"] and problem["request_id"]
    assert fallbacks(client, "latency", "rules") == to_rules + 2  # counted even when nothing answered
    assert predict(client, 2.0).json()["path"] == "champion"  # the chain is per request


@pytest.mark.parametrize(("flag", "reason", "said"), [(NAN, "nan", "NaN"), (INVALID, "invalid_output", "invalid")])
def test_champion_returning_nan_or_an_invalid_label_falls_back(
    world: dict[str, Any], flag: float, reason: str, said: str
) -> None:
    client, moody = world["client"], world["moody"]
    configure(world, moody["bad"], failover=moody["good"], fallback={})
    before = fallbacks(client, reason, "failover"), fallbacks(client, reason, "rules")

    saved = client.post(
        f"/v1/projects/{MOODY}/predict", json={"records": [{"x1": 2.0, "x2": 1.0}, {"x1": flag, "x2": 1}]}
    )
    body = saved.json()
    assert saved.status_code == 200 and (body["path"], body["version"]) == ("failover", moody["good"])
    assert body["fallback"]["reason"] == reason and len(body["predictions"]) == 2
    assert all(p in (0, 1) for p in body["predictions"])
    if reason == "nan":
        assert all(np.isfinite(list(row.values())).all() for row in body["probabilities"])

    rules = {"rules": [{"when": [{"feature": "x1", "op": ">", "value": 100}], "output": 1}], "default": 0}
    configure(world, moody["bad"], failover=None, fallback=rules)
    ruled = predict(client, flag).json()
    assert (ruled["path"], ruled["prediction"], ruled["fallback"]["reason"]) == ("rules", 1, reason)

    configure(world, moody["bad"], failover=None, fallback={})
    failed = predict(client, flag)
    assert failed.status_code == 503
    assert failed.json()["reason"] == reason and said in failed.json()["error"]
    assert fallbacks(client, reason, "failover") == before[0] + 1
    assert fallbacks(client, reason, "rules") == before[1] + 2

    deadline = time.monotonic() + 15
    reasons: set = set()
    while time.monotonic() < deadline and not {"failover", "rules", "unavailable"} <= reasons:
        logged = PredictionLog(world["platform"].artifacts).query(
            f"SELECT path FROM predictions WHERE reason = '{reason}'", "dev", MOODY
        )
        reasons = set(logged["path"])
        time.sleep(0.2)
    assert {"failover", "rules", "unavailable"} <= reasons  # the reason is in the prediction log too


def test_unseen_or_missing_category_is_a_422_naming_field_and_allowed_values(world: dict[str, Any]) -> None:
    client = world["client"]
    url = f"/v1/projects/{COLOURS}/predict"
    good = client.post(url, json={"colour": "red", "size": 3.0})
    assert good.status_code == 200 and good.json()["prediction"] in (0, 1)

    unseen = client.post(url, json={"colour": "purple", "size": 3.0})
    assert unseen.status_code == 422
    (error,) = unseen.json()["errors"]
    assert error["field"] == "colour" and error["record"] == 0
    assert "unseen category 'purple'" in error["error"] and "'blue', 'green', 'red'" in error["error"]
    assert error["allowed"] == ["blue", "green", "red"]

    for record, problem in (({"colour": None, "size": 3.0}, "null is not allowed"), ({"size": 3.0}, "missing")):
        answer = client.post(url, json=record)
        assert answer.status_code == 422
        assert answer.json()["errors"] == [{"record": 0, "field": "colour", "error": problem}]

    v2 = {
        "inputs": [{"name": "colour", "datatype": "BYTES", "data": ["red", "teal"]}, {"name": "size", "data": [1, 2]}]
    }
    answer = client.post(f"/v2/models/{COLOURS}/infer", json=v2)
    assert answer.status_code == 422 and answer.json()["errors"][0]["record"] == 1


def test_microbatching_answers_every_concurrent_request_correctly(world: dict[str, Any]) -> None:
    platform, server, moody = world["platform"], world["server"], world["moody"]
    configure(
        world,
        moody["good"],
        failover=None,
        fallback={},
        microbatch={"enabled": True, "max_batch": 16, "max_wait_ms": 5.0},
    )
    threads, per_thread = 8, 25
    frame = moody_frame(threads * per_thread, seed=11).drop(columns=["y"])
    detail = platform.registry.get_version(ACTOR, MOODY, moody["good"])
    pipeline = platform.registry.load_digest(ACTOR, MOODY, detail.digest)
    expected = np.asarray(pipeline.predict(frame)).tolist()
    expected_proba = np.asarray(pipeline.predict_proba(frame))
    rows = frame.to_dict(orient="records")
    labels = {"project": MOODY, "version": str(moody["good"])}
    start_text = world["client"].get("/metrics").text
    before = {
        kind: metric(start_text, f"harbourmaster_microbatch_requests_{kind}", **labels) for kind in ("count", "sum")
    }
    answers: dict[int, tuple[str, dict[str, Any]]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def caller(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            barrier.wait(10)
            for i in range(worker * per_thread, (worker + 1) * per_thread):
                try:
                    response = own.post(
                        f"/v1/projects/{MOODY}/predict", json=rows[i], headers={"X-Request-ID": f"mb-{i}"}
                    )
                    with lock:
                        answers[i] = (response.headers["x-request-id"], response.json())
                except Exception as exc:  # recorded, asserted below
                    with lock:
                        errors.append(f"{i}: {exc!r}")

    workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(120)
    assert not errors and len(answers) == len(rows)
    for i, (header, body) in answers.items():
        assert header == f"mb-{i}" and body["request_id"] == f"mb-{i}", body
        assert body["path"] == "champion" and body["version"] == moody["good"]
        assert body["prediction"] == expected[i], (i, rows[i], body)
        assert np.allclose([body["probabilities"]["0"], body["probabilities"]["1"]], expected_proba[i], atol=1e-12)

    text = world["client"].get("/metrics").text
    calls = metric(text, "harbourmaster_microbatch_requests_count", **labels) - before["count"]
    merged = metric(text, "harbourmaster_microbatch_requests_sum", **labels) - before["sum"]
    assert merged == len(rows)  # every request went through the batcher
    assert calls < len(rows), "no predict call merged two requests"


def test_microbatching_isolates_a_request_that_makes_the_model_raise(world: dict[str, Any]) -> None:
    server, moody = world["server"], world["moody"]
    configure(
        world, moody["bad"], failover=None, fallback={}, microbatch={"enabled": True, "max_batch": 64, "max_wait_ms": 5}
    )
    statuses: dict[str, list[int]] = {"poison": [], "normal": []}
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def caller(kind: str) -> None:
        x1 = RAISE if kind == "poison" else 3.0
        with httpx.Client(base_url=server.url, timeout=30) as own:
            barrier.wait(10)
            for _ in range(20):
                answer = own.post(f"/v1/projects/{MOODY}/predict", json={"x1": x1, "x2": 1.0})
                with lock:
                    statuses[kind].append(answer.status_code)

    kinds = ["poison", "poison", "normal", "normal", "normal", "normal"]
    workers = [threading.Thread(target=caller, args=(kind,)) for kind in kinds]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(120)
    assert statuses["normal"] == [200] * 80  # never failed by a poison request merged with them
    assert statuses["poison"] == [503] * 40


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update(HARBOURMASTER_HOME=str(home), COLUMNS="200", NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-m", "harbourmaster", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


@pytest.mark.slow
def test_desired_state_cli_goes_through_the_client_embedded_and_against_a_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(make_settings(home))
    moody = train_moody(platform, tmp_path)
    system = Actor.system("tests")
    platform.identity.create_user(system, "root", ["admin"])
    secret = platform.identity.create_token(system, "root", "cli").secret
    bad, good = str(moody["bad"]), str(moody["good"])
    with live_server(platform) as live:
        remote = ("--env", "dev", "--url", live.url, "--token", secret, "--json")

        options = ("--latency-budget-ms", "150", "--microbatch", "--max-batch", "8")
        deployed = run_cli(home, "deploy", MOODY, bad, *remote, *options, "--no-wait")  # no replica runs here
        state = json.loads(deployed.stdout)
        assert state["champion"]["number"] == moody["bad"] and state["updated_by"] == "root"
        assert state["options"]["latency_budget_ms"] == 150
        assert state["options"]["microbatch"] == {"enabled": True, "max_batch": 8, "max_wait_ms": 2.0}

        shadow = json.loads(run_cli(home, "challenger", MOODY, good, "--mode", "shadow", *remote).stdout)
        assert shadow["challenger"]["mode"] == "shadow" and shadow["challenger"]["version"]["number"] == moody["good"]
        assert json.loads(run_cli(home, "challenger", MOODY, "--clear", *remote).stdout)["challenger"] is None

        chain = json.loads(run_cli(home, "fallback", MOODY, "--failover", good, "--default", "0", *remote).stdout)
        assert chain["failover"]["number"] == moody["good"] and chain["fallback"]["default"] == 0

        swapped = json.loads(run_cli(home, "deploy", MOODY, good, *remote, "--no-wait").stdout)
        assert swapped["champion"]["number"] == moody["good"]
        assert swapped["options"]["latency_budget_ms"] == 150  # options given earlier stay
        back = json.loads(run_cli(home, "rollback", MOODY, *remote).stdout)
        assert back["champion"]["number"] == moody["bad"]

        listed = json.loads(run_cli(home, "deployments", "--url", live.url, "--token", secret, "--json").stdout)
        assert [(s["project"], s["environment"], s["revision"]) for s in listed] == [(MOODY, "dev", back["revision"])]

        refused = run_cli(home, "deploy", MOODY, good, "--env", "test", "--url", live.url, "--token", secret)
        assert refused.returncode != 0 and "promot" in (refused.stdout + refused.stderr).lower()
        anonymous = run_cli(home, "deployments", "--url", live.url)
        assert anonymous.returncode != 0

    actors = {event.actor for event in platform.deployments.history(ACTOR, MOODY, "dev")}
    assert actors == {"root"}  # every change above went through the server, as its token's user

    # The store has users now: embedded mode is refused on it (one person's sandbox), pointing to --url.
    embedded = run_cli(home, "deploy", MOODY, good, "--env", "dev", "--unknown-fields", "ignore")
    assert embedded.returncode != 0 and "--url" in embedded.stderr
    with live_server(platform) as live:
        text = run_cli(
            home,
            "deploy",
            MOODY,
            good,
            "--env",
            "dev",
            "--unknown-fields",
            "ignore",
            "--no-wait",
            "--url",
            live.url,
            "--token",
            secret,
        )
        assert text.returncode == 0, text.stderr
        assert f"champion v{good}" in text.stdout and "failover v" in text.stdout
        table = run_cli(home, "deployments", "--url", live.url, "--token", secret)
        assert MOODY in table.stdout and f"v{good}" in table.stdout
    assert platform.deployments.get(ACTOR, MOODY, "dev").options["unknown_fields"] == "ignore"
    assert run_cli(home, "challenger", MOODY).returncode == 2  # neither a VERSION nor --clear
    platform.close()
