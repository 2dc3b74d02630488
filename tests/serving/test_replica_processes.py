"""Replicas as real processes / side by side: SIGTERM and SIGKILL with requests in flight on two workers
lose no answered request (reconciled with the prediction log), two replicas on PostgreSQL converge."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import make_settings
from tests.serving.helpers import PROJECT, record, serve_process, stop_process, train_versions, wait_for_revision
from tests.serving.projects import MOODY, train_moody

from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread, free_port
from harbourmaster.store.prediction_log import PredictionLog

ACTOR = Actor.local_owner()


CLIENTS = 4


class Load:
    """Bounded client load on a replica: CLIENTS threads, each request with its own id; answered ids kept."""

    def __init__(self, url: str, project: str, per_client: int = 3000) -> None:
        self.url, self.project, self.per_client = url, project, per_client
        self.answered: list[str] = []
        self.failures: list[str] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _client(self, number: int) -> None:
        client = None
        try:
            for i in range(self.per_client):
                if self._stop.is_set():
                    return
                if i % 50 == 0:  # a new connection now and then, so the kernel spreads them over the workers
                    if client is not None:
                        client.close()
                    client = httpx.Client(base_url=self.url, timeout=30)
                rid = f"c{number}-{i}"
                with self._lock:
                    self.sent += 1
                answer = client.post(
                    f"/v1/projects/{self.project}/predict",
                    json={"x1": 1.0 + i % 9, "x2": 3.0},
                    headers={"X-Request-ID": rid},
                )
                if answer.status_code != 200 or answer.json()["request_id"] != rid:
                    with self._lock:
                        self.failures.append(f"{rid}: {answer.status_code} {answer.text[:200]}")
                    return
                with self._lock:
                    self.answered.append(rid)
        except httpx.HTTPError:
            return  # the server went away: the request in flight was not answered
        finally:
            if client is not None:
                client.close()

    def wait_for(self, answered: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.answered) < answered and not self.failures:
            time.sleep(0.02)
        assert not self.failures, self.failures[:3]
        assert len(self.answered) >= answered, f"only {len(self.answered)} answered"

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in self._threads)


def reconcile_with_log(platform: Platform, answered: list[str]) -> set[str]:
    """Every answered request is logged exactly once; logged ids that were never answered were in flight."""
    logged = PredictionLog(platform.artifacts).query("SELECT request_id, row, replica FROM predictions", "dev", MOODY)
    keys = list(zip(logged["request_id"], logged["row"], strict=True))
    assert len(keys) == len(set(keys)), "a row was logged twice"
    missing = set(answered) - set(logged["request_id"])
    assert not missing, f"{len(missing)} answered requests are not in the log, e.g. {sorted(missing)[:5]}"
    extra = set(logged["request_id"]) - set(answered)
    assert len(extra) <= CLIENTS, extra  # at most one request in flight per client was spooled, not answered
    return set(logged["replica"])


@pytest.mark.slow
def test_sigterm_with_requests_in_flight_on_two_workers_logs_every_answer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(make_settings(home))
    moody = train_moody(platform, tmp_path)
    platform.deployments.deploy(ACTOR, MOODY, moody["good"], "dev")
    port = free_port()
    process = serve_process(home, port, workers=2)
    deadline = time.monotonic() + 60  # a worker's first heartbeat follows its first reconcile, off its start-up path
    while True:
        alive = [r for r in platform.replicas.list(ACTOR, "dev") if r.status == "alive"]
        if len(alive) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(alive) == 2  # each worker is a replica with its own heartbeat
    with Load(f"http://127.0.0.1:{port}", MOODY) as load:
        load.wait_for(300)
        output = stop_process(process, signal.SIGTERM)  # clients are still sending
    assert process.returncode in (0, -signal.SIGTERM), output
    assert output.count("Application shutdown complete") == 2, output
    replicas = reconcile_with_log(platform, load.answered)
    assert len(replicas) == 2, "both workers answered and logged"
    stopped = [r for r in platform.replicas.list(ACTOR, "dev", include_stopped=True) if r.status == "stopped"]
    assert len(stopped) == 2
    platform.close()


@pytest.mark.slow
def test_sigkill_under_load_on_two_workers_loses_no_answer_after_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(make_settings(home))
    moody = train_moody(platform, tmp_path)
    platform.deployments.deploy(ACTOR, MOODY, moody["good"], "dev")
    process = serve_process(home, free_port(), workers=2)
    url = f"http://127.0.0.1:{process.args[process.args.index('--port') + 1]}"
    with Load(url, MOODY) as load:
        load.wait_for(500)
        stop_process(process, signal.SIGKILL)  # no shutdown at all: memory, queues and threads are gone
    assert process.returncode == -signal.SIGKILL
    spool = platform.settings.cache_dir / "spool" / "dev"
    assert list(spool.glob("*.seg")), "the killed workers left their spooled answers on disk"
    logged_before = PredictionLog(platform.artifacts).count("dev", MOODY)
    assert logged_before < len(load.answered), "the kill should have caught answers not yet in the log"

    restarted = serve_process(home, free_port(), workers=2)  # adopts and uploads the dead workers' segments
    stop_process(restarted, signal.SIGTERM)
    reconcile_with_log(platform, load.answered)
    assert not list(spool.glob("*.seg")) and not list(spool.glob("*.lock"))
    platform.close()


@pytest.mark.slow
def test_two_replicas_on_postgresql_follow_the_desired_state(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", postgres_url)
    control = Platform(settings)
    versions = train_versions(control, tmp_path)
    state = control.deployments.deploy(ACTOR, PROJECT, versions["good"], "dev")
    first_platform, second_platform = Platform(settings), Platform(settings)
    options = ReplicaOptions(poll_seconds=0.2, heartbeat_seconds=0.5)
    with ServerThread(first_platform, "dev", options) as first, ServerThread(second_platform, "dev", options) as second:
        for server in (first, second):
            wait_for_revision(server, state.revision)
        row = record(control)
        state = control.deployments.deploy(ACTOR, PROJECT, versions["other"], "dev")
        started = time.monotonic()
        for server in (first, second):
            wait_for_revision(server, state.revision, timeout=10)
        assert time.monotonic() - started < 10
        for server in (first, second):
            body = httpx.post(f"{server.url}/v1/projects/{PROJECT}/predict", json=row).json()
            assert body["version"] == versions["other"]
        time.sleep(0.8)
        alive = {r.id for r in control.replicas.list(ACTOR, "dev") if r.status == "alive"}
        assert {first.replica.id, second.replica.id} <= alive
    assert PredictionLog(control.artifacts).count("dev", PROJECT) == 2
    for platform in (first_platform, second_platform, control):
        platform.close()
