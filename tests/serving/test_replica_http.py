"""A real replica on loopback: protocols, bad input, traffic, fallbacks, hot swap, capture, metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import make_settings
from tests.serving.helpers import FLAG, PROJECT, record, train_versions, wait_for_revision

import harbourmaster.serving.app as serving_app
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.prediction_log import PredictionLog

ACTOR = Actor.local_owner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("serving")
    platform = Platform(make_settings(folder / "home"))
    versions = train_versions(platform, folder)
    state = platform.deployments.deploy(ACTOR, PROJECT, versions["good"], "dev")
    server = ServerThread(platform, "dev", ReplicaOptions(poll_seconds=0.1, heartbeat_seconds=0.5)).start()
    wait_for_revision(server, state.revision)
    client = httpx.Client(base_url=server.url, timeout=30)
    yield {"platform": platform, "versions": versions, "server": server, "client": client}
    client.close()
    server.stop()
    platform.close()


def reset(world: dict, **options: object) -> None:
    """Champion = good version, no challenger, no fallback, given options; wait until served."""
    platform, versions = world["platform"], world["versions"]
    platform.deployments.deploy(ACTOR, PROJECT, versions["good"], "dev")
    platform.deployments.clear_challenger(ACTOR, PROJECT, "dev")
    platform.deployments.set_fallback(ACTOR, PROJECT, "dev", replace=True)
    state = platform.deployments.set_options(ACTOR, PROJECT, "dev", dict(options))
    wait_for_revision(world["server"], state.revision)


def test_health_metadata_and_both_protocols(world: dict) -> None:
    reset(world)
    client, platform = world["client"], world["platform"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get(f"/v2/models/{PROJECT}").json()
    assert meta["name"] == PROJECT and meta["parameters"]["champion"] == world["versions"]["good"]
    assert len(meta["inputs"]) == 30

    row = record(platform)
    answer = client.post(f"/v1/projects/{PROJECT}/predict", json=row, headers={"X-Request-ID": "req-1"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["version"] == world["versions"]["good"] and body["path"] == "champion"
    assert body["request_id"] == "req-1" and answer.headers["x-request-id"] == "req-1"
    assert body["prediction"] in (0, 1) and set(body["probabilities"]) == {"0", "1"}

    many = client.post(f"/v1/projects/{PROJECT}/predict", json={"records": [row, row, row]}).json()
    assert len(many["predictions"]) == 3 and many["path"] == "champion" and many["request_id"]

    names = list(row)
    v2 = {"inputs": [{"name": n, "shape": [2], "datatype": "FP64", "data": [row[n], row[n]]} for n in names]}
    infer = client.post(f"/v2/models/{PROJECT}/infer", json=v2).json()
    assert infer["model_name"] == PROJECT and infer["model_version"] == str(world["versions"]["good"])
    assert infer["outputs"][0]["data"] == [body["prediction"]] * 2
    assert infer["parameters"]["path"] == "champion" and infer["id"]
    matrix = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP64", "data": [row[n] for n in names]}]}
    assert client.post(f"/v2/models/{PROJECT}/infer", json=matrix).json()["outputs"][0]["data"] == [body["prediction"]]

    assert client.post("/v1/projects/nope/predict", json=row).status_code == 404


def test_bad_input_is_a_4xx_naming_each_field(world: dict) -> None:
    reset(world)
    client, platform = world["client"], world["platform"]
    row = record(platform)
    bad = dict(row)
    del bad["mean radius"]
    bad["colour"] = "red"
    bad["mean area"] = "large"
    bad["worst area"] = None
    answer = client.post(f"/v1/projects/{PROJECT}/predict", json=bad)
    assert answer.status_code == 422
    errors = {(e["field"], e["error"]) for e in answer.json()["errors"]}
    assert ("mean radius", "missing") in errors
    assert ("colour", "unknown field") in errors
    assert ("mean area", "expected a number, got string") in errors
    assert ("worst area", "null is not allowed") in errors

    assert client.post(f"/v1/projects/{PROJECT}/predict", content=b"{not json").status_code == 400
    assert client.post(f"/v1/projects/{PROJECT}/predict", json=[1, 2]).status_code == 422
    assert client.post(f"/v1/projects/{PROJECT}/predict", json={"records": []}).status_code == 422
    assert client.post(f"/v2/models/{PROJECT}/infer", json={"inputs": 3}).status_code == 422
    # Another server's body shape (TensorFlow Serving's) gets one error naming the shape this endpoint takes,
    # not a "missing" for every field.
    foreign = client.post(f"/v1/projects/{PROJECT}/predict", json={"instances": [list(row.values())]})
    assert foreign.status_code == 422 and "errors" not in foreign.json(), foreign.json()
    assert foreign.json()["error"].startswith('{"instances": ...} is TensorFlow Serving'), foreign.json()
    assert '{"records": [' in foreign.json()["hint"] and f'"{next(iter(row))}": ...' in foreign.json()["hint"]
    huge = b'{"records": [' + b",".join([b'{"a": 1}'] * 1_000_000) + b"]}"
    too_big = client.post(f"/v1/projects/{PROJECT}/predict", content=huge)
    assert too_big.status_code == 413 and "larger" in too_big.json()["error"]
    assert client.get(f"/v1/projects/{PROJECT}/predict").status_code == 405

    reset(world, unknown_fields="ignore")
    extra = dict(row, colour="red")
    assert client.post(f"/v1/projects/{PROJECT}/predict", json=extra).status_code == 200


def test_fallback_chain_failover_rules_humility_and_503(world: dict) -> None:
    platform, client, versions = world["platform"], world["client"], world["versions"]
    flagged = record(platform, **{"mean texture": FLAG})
    reset(world)
    platform.deployments.deploy(ACTOR, PROJECT, versions["faulty"], "dev")
    state = platform.deployments.set_fallback(ACTOR, PROJECT, "dev", failover=versions["good"], fallback={})
    wait_for_revision(world["server"], state.revision)
    normal = client.post(f"/v1/projects/{PROJECT}/predict", json=record(platform)).json()
    assert normal["path"] == "champion" and normal["version"] == versions["faulty"]
    saved = client.post(f"/v1/projects/{PROJECT}/predict", json=flagged).json()
    assert saved["path"] == "failover" and saved["version"] == versions["good"]
    assert saved["fallback"]["reason"] == "error"

    state = platform.deployments.set_fallback(
        ACTOR,
        PROJECT,
        "dev",
        fallback={"rules": [{"when": {"feature": "worst area", "op": ">", "value": 1000}, "output": 1}], "default": 0},
        clear_failover=True,  # the chain merges: the rules alone answer now
    )
    wait_for_revision(world["server"], state.revision)
    ruled = client.post(f"/v1/projects/{PROJECT}/predict", json=flagged).json()
    assert ruled["path"] == "rules" and ruled["version"] is None and ruled["prediction"] in (0, 1)

    state = platform.deployments.set_fallback(ACTOR, PROJECT, "dev", replace=True)
    wait_for_revision(world["server"], state.revision)
    failed = client.post(f"/v1/projects/{PROJECT}/predict", json=flagged)
    assert failed.status_code == 503
    assert "flagged input" in failed.json()["error"] and failed.json()["reason"] == "error"

    reset(world, humility={"enabled": True, "margin": 0.0})
    state = platform.deployments.set_fallback(ACTOR, PROJECT, "dev", fallback={"default": 0})
    wait_for_revision(world["server"], state.revision)
    outside = client.post(f"/v1/projects/{PROJECT}/predict", json=record(platform, **{"mean radius": 500.0})).json()
    assert outside["path"] == "rules" and outside["fallback"]["reason"] == "humility"
    assert "mean radius" in outside["fallback"]["detail"]
    inside = client.post(f"/v1/projects/{PROJECT}/predict", json=record(platform)).json()
    assert inside["path"] == "champion"

    metrics = client.get("/metrics").text
    assert 'reason="error",source="champion",target="failover"' in metrics.replace('environment="dev",', "").replace(
        'project="breast-cancer",', ""
    )
    assert 'reason="humility"' in metrics


def test_canary_and_shadow(world: dict) -> None:
    platform, client, versions = world["platform"], world["client"], world["versions"]
    reset(world)
    state = platform.deployments.set_challenger(ACTOR, PROJECT, "dev", versions["other"], mode="canary", weight=100)
    wait_for_revision(world["server"], state.revision)
    body = client.post(f"/v1/projects/{PROJECT}/predict", json=record(platform)).json()
    assert body["path"] == "challenger" and body["version"] == versions["other"]

    state = platform.deployments.set_challenger(
        ACTOR, PROJECT, "dev", versions["other"], mode="canary", weight=50, sticky_key="mean radius"
    )
    wait_for_revision(world["server"], state.revision)
    seen = {client.post(f"/v1/projects/{PROJECT}/predict", json=record(platform)).json()["path"] for _ in range(10)}
    assert len(seen) == 1  # one caller key, one side

    state = platform.deployments.set_challenger(ACTOR, PROJECT, "dev", versions["other"], mode="shadow")
    wait_for_revision(world["server"], state.revision)
    shadowed = client.post(
        f"/v1/projects/{PROJECT}/predict", json=record(platform), headers={"X-Request-ID": "shadow-1"}
    ).json()
    assert shadowed["path"] == "champion" and shadowed["version"] == versions["good"]
    log = PredictionLog(platform.artifacts)
    deadline = time.monotonic() + 15
    rows = None
    while time.monotonic() < deadline:
        rows = log.query("SELECT * FROM predictions WHERE request_id = 'shadow-1'", "dev", PROJECT)
        if len(rows):
            break
        time.sleep(0.2)
    assert rows is not None and len(rows) == 1
    assert int(rows["shadow_version"].iloc[0]) == versions["other"] and rows["shadow_output"].iloc[0] is not None


@pytest.mark.parametrize("microbatch", [False, True], ids=["direct", "microbatched"])
def test_hot_swap_under_concurrent_load_has_zero_errors(world: dict, microbatch: bool) -> None:
    platform, versions, server = world["platform"], world["versions"], world["server"]
    options = {"microbatch": {"enabled": True, "max_batch": 16, "max_wait_ms": 2.0}} if microbatch else {}
    reset(world, **options)
    row = record(platform)
    stop = threading.Event()
    results: list[tuple[int, int | None]] = []
    failures: list[str] = []
    finished: list[int] = []
    lock = threading.Lock()
    per_client, clients, least = 1500, 4, 2000

    def hammer(number: int) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=30) as own:
                for _ in range(per_client):
                    if stop.is_set():
                        break
                    answer = own.post(f"/v1/projects/{PROJECT}/predict", json=row)
                    with lock:
                        results.append((answer.status_code, answer.json().get("version")))
                        if answer.status_code != 200:
                            failures.append(answer.text[:200])
        except Exception as exc:  # a client that dies fails the test below
            with lock:
                failures.append(f"client {number} died: {exc!r}")
            return
        with lock:
            finished.append(number)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        for swap in range(6):
            target = versions["other"] if swap % 2 == 0 else versions["good"]
            if swap == 5:
                state = platform.deployments.rollback(ACTOR, PROJECT, "dev")
            else:
                state = platform.deployments.deploy(ACTOR, PROJECT, target, "dev")
            wait_for_revision(server, state.revision)
            time.sleep(0.2)
        deadline = time.monotonic() + 120  # thousands of requests, bounded in time
        while time.monotonic() < deadline and len(results) < least and len(finished) < clients:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures[:5]
    assert sorted(finished) == list(range(clients)), "a client thread died or hung"
    assert len(results) >= least
    assert all(status == 200 for status, _ in results), {s for s, _ in results}
    assert {version for _, version in results} == {versions["good"], versions["other"]}


def test_refuses_a_version_that_fails_to_load_and_keeps_serving(world: dict) -> None:
    platform, client, server = world["platform"], world["client"], world["server"]
    reset(world)
    detail = platform.registry.get_version(ACTOR, PROJECT, world["versions"]["other"])
    # A bundle whose model cannot load: swap its digest for one that is not in the store.
    state = platform.deployments.deploy(ACTOR, PROJECT, detail.number, "dev")
    from harbourmaster.bundle.storage import manifest_key

    key = manifest_key(detail.digest)
    saved = platform.artifacts.get_bytes(key)
    try:
        # Evict the cached copy so the replica must load it again, then corrupt the manifest.
        reset(world)
        platform.artifacts.put_bytes(key, saved + b" ")
        state = platform.deployments.deploy(ACTOR, PROJECT, detail.number, "dev")
        wait_for_revision(server, state.revision)
        assert "corrupt" in server.replica.failures[PROJECT]["error"]
        body = client.post(f"/v1/projects/{PROJECT}/predict", json=record(platform)).json()
        assert body["version"] == world["versions"]["good"]
        assert "harbourmaster_reconcile_failures_total" in client.get("/metrics").text
    finally:
        platform.artifacts.put_bytes(key, saved)
    reset(world)


def test_capture_feedback_metrics_and_heartbeat(world: dict) -> None:
    platform, client, server = world["platform"], world["client"], world["server"]
    reset(world)
    ids = [f"cap-{i}" for i in range(5)]
    for request_id in ids:
        client.post(f"/v1/projects/{PROJECT}/predict", json=record(platform), headers={"X-Request-ID": request_id})
    stored = client.post(
        f"/v1/projects/{PROJECT}/feedback", json={"feedback": [{"request_id": i, "value": 1} for i in ids]}
    )
    assert stored.status_code == 200 and stored.json() == {"stored": 5}
    assert client.post(f"/v1/projects/{PROJECT}/feedback", json={"nothing": 1}).status_code == 422
    log = PredictionLog(platform.artifacts)
    deadline = time.monotonic() + 15
    joined = None
    while time.monotonic() < deadline:
        joined = log.with_feedback("dev", PROJECT)
        if set(ids) <= set(joined["request_id"]):
            break
        time.sleep(0.2)
    assert joined is not None and set(ids) <= set(joined["request_id"])
    row = joined[joined["request_id"] == "cap-0"].iloc[0]
    assert row["path"] == "champion" and row["latency_ms"] > 0 and row["truth"] == "1"

    metrics = client.get("/metrics").text
    for name in (
        "harbourmaster_requests_total",
        "harbourmaster_request_latency_seconds_bucket",
        "harbourmaster_capture_queue_depth",
        "harbourmaster_capture_dropped_total",
        "harbourmaster_loaded_version",
    ):
        assert name in metrics
    time.sleep(0.7)
    replicas = platform.replicas.list(ACTOR, "dev")
    mine = [r for r in replicas if r.id == server.replica.id]
    assert mine and mine[0].status == "alive" and PROJECT in mine[0].loaded
    assert mine[0].details["memory_bytes"] > 0 and "cpu_percent" in mine[0].details


def test_guarded_environment_refuses_predictions_without_a_token(world: dict) -> None:
    with ServerThread(world["platform"], "prod", ReplicaOptions(poll_seconds=0.5)) as prod:
        answer = httpx.post(f"{prod.url}/v1/projects/{PROJECT}/predict", json={"a": 1})
        assert answer.status_code == 401
        assert (
            httpx.post(
                f"{prod.url}/v1/projects/{PROJECT}/predict", json={"a": 1}, headers={"Authorization": "Bearer nope"}
            ).status_code
            == 401
        )
        assert httpx.get(f"{prod.url}/v2/health/live").status_code == 200
        assert httpx.get(f"{prod.url}/metrics").status_code == 200


def test_batch_scoring_is_recorded_as_a_run(world: dict, tmp_path: Path) -> None:
    platform = world["platform"]
    reset(world)
    frame = pd.DataFrame([record(platform)] * 4)
    frame.to_csv(tmp_path / "in.csv", index=False)
    run = platform.scoring.score(ACTOR, PROJECT, "dev", tmp_path / "in.csv", tmp_path / "out.parquet")
    assert run.status == "succeeded" and run.kind == "score" and run.rows_out == 4
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert {"prediction", "proba_0", "proba_1"} <= set(scored.columns)
    frame.drop(columns=["mean radius"]).to_csv(tmp_path / "bad.csv", index=False)
    failed = platform.scoring.score(ACTOR, PROJECT, "dev", tmp_path / "bad.csv", tmp_path / "x.csv")
    assert failed.status == "failed" and "mean radius" in failed.error


def test_every_status_is_counted_and_refusals_are_logged(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    platform, client, versions = world["platform"], world["client"], world["versions"]
    parse_v1 = serving_app._records_from_v1

    def parse_or_fail(body: object, names: list[str]) -> object:  # a bug of the replica's own, on one request
        if isinstance(body, dict) and body.get("internal-bug"):
            raise RuntimeError("a bug in the replica")
        return parse_v1(body, names)

    monkeypatch.setattr(serving_app, "_records_from_v1", parse_or_fail)
    reset(world)
    platform.deployments.deploy(ACTOR, PROJECT, versions["faulty"], "dev")
    wait_for_revision(world["server"], platform.deployments.get(ACTOR, PROJECT, "dev").revision)
    url = f"/v1/projects/{PROJECT}/predict"
    huge = b'{"records": [' + b",".join([b'{"a": 1}'] * 1_100_000) + b"]}"
    calls = {  # request id -> (method, url, body, status, reason, project label)
        "st-400": ("POST", url, b"{not json", 400, "malformed", PROJECT),
        "st-404": ("POST", "/v1/projects/no-such-project/predict", b"{}", 404, "not_found", "_unrouted"),
        "st-405": ("GET", url, None, 405, "method_not_allowed", PROJECT),
        "st-413": ("POST", url, huge, 413, "too_large", PROJECT),
        "st-422": ("POST", url, b'{"records": []}', 422, "invalid_input", PROJECT),
        "st-503": ("POST", url, orjson.dumps(record(platform, **{"mean texture": FLAG})), 503, "error", PROJECT),
        "st-500": ("POST", url, b'{"internal-bug": true}', 500, "internal", PROJECT),
    }

    def counts() -> dict[tuple[str, str, str], float]:
        found: dict[tuple[str, str, str], float] = {}
        for family in text_string_to_metric_families(client.get("/metrics").text):
            for sample in family.samples:
                if sample.name == "harbourmaster_requests_total":
                    labels = sample.labels
                    found[(labels["project"], labels["path"], labels["status"])] = sample.value
        return found

    before = counts()
    for request_id, (method, target, body, status, _reason, _project) in calls.items():
        answer = client.request(method, target, content=body, headers={"X-Request-ID": request_id})
        assert answer.status_code == status, (request_id, answer.text[:200])
        assert answer.json()["request_id"] == request_id and answer.json()["error"]
    feedback = client.post(f"/v1/projects/{PROJECT}/feedback", content=b"{not json")
    assert feedback.status_code == 400 and feedback.json()["error"]
    after = counts()
    for request_id, (_m, _t, _b, status, _reason, project) in calls.items():
        path = "unavailable" if status == 503 else "refused"
        key = (project, path, str(status))
        assert after.get(key, 0) - before.get(key, 0) == 1, (request_id, key)
    # Refused feedback is counted as feedback, so the SLA's prediction requests do not include it.
    key = (PROJECT, "feedback", "400")
    assert after.get(key, 0) - before.get(key, 0) == 1

    log = PredictionLog(platform.artifacts)
    deadline = time.monotonic() + 20
    rows = None
    while time.monotonic() < deadline:
        rows = log.query("SELECT * FROM predictions WHERE request_id LIKE 'st-%'")
        if len(rows) >= len(calls):
            break
        time.sleep(0.2)
    assert rows is not None
    logged = {r.request_id: r for r in rows.itertuples()}
    assert set(logged) == set(calls)
    for request_id, (_m, _t, _b, status, reason, project) in calls.items():
        row = logged[request_id]
        assert (row.status, row.reason, row.project) == (status, reason, project), request_id
        if status != 503:
            assert row.path == "refused" and pd.isna(row.inputs)  # no inputs kept for a refusal
    assert log.count("dev", PROJECT, refused=True) - log.count("dev", PROJECT) >= 4  # count() is of predictions
    reset(world)


def test_the_log_holds_typed_columns_with_the_exact_values_answered(world: dict) -> None:
    import json

    import pyarrow.parquet as pq

    from harbourmaster.store.prediction_log import LAYOUT_METADATA, key_version

    reset(world)
    client, platform, good = world["client"], world["platform"], world["versions"]["good"]
    rows = [record(platform, **{"mean radius": 10.0 + i / 7, "worst area": 700 + i}) for i in range(3)]
    answer = client.post(f"/v1/projects/{PROJECT}/predict", json={"records": rows}, headers={"X-Request-ID": "typed-1"})
    body = answer.json()
    refused = client.post(f"/v1/projects/{PROJECT}/predict", json={"records": []}, headers={"X-Request-ID": "typed-2"})
    assert answer.status_code == 200 and refused.status_code == 422
    log = PredictionLog(platform.artifacts)
    deadline = time.monotonic() + 15
    frame = pd.DataFrame()
    while time.monotonic() < deadline and len(frame) < 4:
        frame = log.query(
            "SELECT * FROM predictions WHERE request_id IN ('typed-1', 'typed-2') ORDER BY request_id, row"
        )
        time.sleep(0.2)
    answered = frame[frame["request_id"] == "typed-1"]
    assert answered["row"].tolist() == [0, 1, 2]
    for name in rows[0]:
        assert answered[f"in_{name}"].tolist() == [row[name] for row in rows], name
    assert answered["out_prediction"].tolist() == body["predictions"]
    for key in ("0", "1"):
        assert answered[f"out_proba_{key}"].tolist() == [p[key] for p in body["probabilities"]]
    assert answered["inputs"].map(json.loads).tolist() == rows  # the JSON view, rebuilt from the typed columns
    assert (answered["version"] == good).all()
    refusal = frame[frame["request_id"] == "typed-2"].iloc[0]
    assert refusal["status"] == 422 and pd.isna(refusal["version"]) and pd.isna(refusal["inputs"])

    files = log.files("predictions", "dev", PROJECT)
    typed = [key for key in files if key_version(key) == good]
    assert typed and {key_version(key) for key in files} >= {0, good}
    layout = json.loads(pq.read_schema(platform.artifacts.path(typed[-1])).metadata[LAYOUT_METADATA])
    assert layout["version"] == good and set(layout["inputs"]) == set(rows[0]) and layout["classes"] == ["0", "1"]
