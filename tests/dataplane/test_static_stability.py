"""A replica over the control plane's API: it keeps serving its cached state and bundles while the
control plane is away (even when it starts then), catches up when it returns, loses no logged
prediction meanwhile, and checks client tokens of a guarded environment through one bounded cache."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import make_settings

from harbourmaster.errors import AuthenticationError
from harbourmaster.services.dataplane import TokenDecision
from harbourmaster.services.platform import Platform
from harbourmaster.serving import control_plane as control_plane_module
from harbourmaster.serving.control_plane import RemoteControlPlane, TokenDecisions
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.prediction_log import PredictionLog

from .helpers import OWNER, PROJECT, SYSTEM, ControlPlaneServer, a_record, train_two, wait_for_version

OPTIONS = ReplicaOptions(poll_seconds=0.2, heartbeat_seconds=0.3, capture_flush_seconds=0.3)


def _predict(server: ServerThread, record: dict, count: int, **headers: str) -> list[httpx.Response]:
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as client:
        return [client.post(f"/v1/projects/{PROJECT}/predict", json=record) for _ in range(count)]


@pytest.mark.slow
def test_a_replica_serves_its_cached_state_while_the_control_plane_is_away(platform: Platform, tmp_path: Path) -> None:
    first, second = train_two(platform, tmp_path)
    platform.deployments.deploy(OWNER, PROJECT, first, "dev")
    token = platform.dataplane.create_credential(SYSTEM, "dev", "web").secret
    record = a_record(platform)
    replica_home = make_settings(tmp_path / "replica-home")  # not the control plane's home: no database here
    control = ControlPlaneServer(platform).start()

    # 1. A replica learns the desired state and the bundle, then stops.
    remote = RemoteControlPlane(control.url, token, "dev", replica_home)
    with ServerThread(remote, "dev", OPTIONS) as replica:
        wait_for_version(replica, first)
        assert [r.json()["version"] for r in _predict(replica, record, 3)] == [first] * 3
    remote.close()
    assert PredictionLog(platform.artifacts).count("dev", PROJECT) == 3

    # 2. The control plane goes away; a new replica starts from what is cached on its disk.
    control.stop()
    remote = RemoteControlPlane(control.url, token, "dev", replica_home)
    with ServerThread(remote, "dev", OPTIONS) as replica:
        assert replica.replica.table.ready, "the replica did not start from its cached state"
        assert remote.reachable is False
        answers = _predict(replica, record, 5)
        assert [(r.status_code, r.json()["version"]) for r in answers] == [(200, first)] * 5
        time.sleep(1.0)  # heartbeats and uploads fail meanwhile: retried, never fatal
        assert _predict(replica, record, 1)[0].status_code == 200

        # 3. The desired state changes while it is away; the replica catches up when it returns.
        platform.deployments.deploy(OWNER, PROJECT, second, "dev")
        control.start()
        wait_for_version(replica, second, timeout=30)
        assert remote.reachable is True
        assert _predict(replica, record, 1)[0].json()["version"] == second
    remote.close()
    control.stop()
    # Every answered request is in the control plane's log, those answered while it was away too.
    assert PredictionLog(platform.artifacts).count("dev", PROJECT) == 3 + 5 + 1 + 1
    assert not (replica_home.home / "harbourmaster.db").exists()
    alive = [r for r in platform.replicas.list(SYSTEM, "dev", include_stopped=True) if r.id == replica.replica.id]
    assert alive and alive[0].status == "stopped"


def test_a_replica_with_nothing_cached_starts_listening_and_waits(tmp_path: Path) -> None:
    """No control plane and no cache: the replica still listens (not ready) and obeys its stop."""
    remote = RemoteControlPlane("http://127.0.0.1:9", "hmr_" + "x" * 40, "dev", make_settings(tmp_path / "home"))
    with ServerThread(remote, "dev", OPTIONS) as replica, httpx.Client(base_url=replica.url, timeout=10) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503
    remote.close()


def test_a_guarded_replica_checks_tokens_through_the_control_plane_and_caches_both_answers(
    platform: Platform, tmp_path: Path
) -> None:
    first, _ = train_two(platform, tmp_path)
    config = platform.environments.get("dev").config.model_dump()
    platform.environments.configure(SYSTEM, "dev", {**config, "guarded": True})
    platform.deployments.deploy(SYSTEM, PROJECT, first, "dev")
    for name, grants in (("olga", [("dev", "predict")]), ("otto", [])):
        platform.identity.create_user(SYSTEM, name, ["operator"])
        for environment, permission in grants:
            platform.identity.grant(SYSTEM, name, environment, permission)
    olga = platform.identity.create_token(SYSTEM, "olga").secret
    otto = platform.identity.create_token(SYSTEM, "otto").secret
    token = platform.dataplane.create_credential(SYSTEM, "dev", "web").secret
    record = a_record(platform)
    control = ControlPlaneServer(platform).start()
    remote = RemoteControlPlane(control.url, token, "dev", make_settings(tmp_path / "replica-home"))
    try:
        with ServerThread(remote, "dev", OPTIONS) as replica:
            wait_for_version(replica, first)
            assert replica.replica.guarded
            assert [r.status_code for r in _predict(replica, record, 3, authorization=f"Bearer {olga}")] == [200] * 3
            assert _predict(replica, record, 1)[0].status_code == 401
            assert _predict(replica, record, 1, authorization="Bearer hm_" + "z" * 40)[0].status_code == 401
            refused = _predict(replica, record, 1, authorization=f"Bearer {otto}")[0]
            assert refused.status_code == 403 and "no predict grant" in refused.json()["error"]
            denied = _denied_predictions(platform)
            # Refused again within the cache's lifetime: answered by the replica, no new decision upstream.
            assert [r.status_code for r in _predict(replica, record, 5, authorization=f"Bearer {otto}")] == [403] * 5
            assert _denied_predictions(platform) == denied
            assert remote.knows_token(olga) and remote.knows_token(otto)
    finally:
        remote.close()
        control.stop()


def _denied_predictions(platform: Platform) -> int:
    entries = platform.audit.entries(SYSTEM)
    return sum(1 for e in entries if e["outcome"] == "denied" and e["action"] in ("predict.access", "denied.predict"))


def test_the_token_cache_is_bounded_and_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = TokenDecisions(limit=3)
    refused = TokenDecision(allowed=False, code="unauthenticated", message="the API token is not valid", hint="h")
    for index in range(5):
        cache.put(f"token-{index}", TokenDecision(allowed=True, caller=f"u{index}"))
    assert len(cache) == 3 and cache.get("token-0") is None and cache.get("token-4").caller == "u4"
    cache.put("bad", refused)
    assert isinstance(cache.get("bad").error(), AuthenticationError)
    later = time.monotonic() + control_plane_module.REFUSED_TTL_SECONDS + 1
    monkeypatch.setattr(control_plane_module.time, "monotonic", lambda: later)
    assert cache.get("bad") is None and cache.get("token-4") is not None  # refusals are forgotten sooner
