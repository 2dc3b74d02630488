"""Shared parts of the rollout tests: prod opened for a test (no sign-offs, a tight SLA), a champion and a
challenger of the moody project (tests/serving/projects.py), and bounded client load against replicas."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import make_settings
from tests.serving.projects import MOODY, train_moody

from harbourmaster.config import Settings
from harbourmaster.core.rollout_rules import rollout_plan
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread
from harbourmaster.store.tables import AuditEventRow

SYSTEM = Actor.system("tests")
FAST = ReplicaOptions(poll_seconds=0.2, heartbeat_seconds=0.25, capture_flush_seconds=0.3)
PROD_CONFIG = {
    "guarded": False,  # predictions without tokens: the data plane's credentials are tested elsewhere
    "allow_skip": True,  # the champion and the challenger enter prod without serving in test first
    "gates": [{"kind": "schema_compatible"}],
    "approvals": {"required": []},
    # p99 lenient: a healthy canary on a loaded 2-core machine must not breach it (the latency test tightens it)
    "sla": {"p99_ms": 5000, "error_rate": 0.05, "fallback_rate": 0.2},
}


def moody_in_prod(platform: Platform, folder: Path) -> dict[str, int]:
    """Train moody's two versions; the well-behaved one becomes prod's champion (promoted, immediate).
    The other (``bad``) raises on x1 = RAISE and sleeps on x1 = SLOW: the challenger of the tests."""
    versions = train_moody(platform, folder)
    platform.environments.configure(SYSTEM, "prod", PROD_CONFIG)
    platform.promotions.promote(SYSTEM, MOODY, versions["good"], "prod")
    return versions


@dataclass
class Load:
    """Client threads posting single records to replicas until stopped (bounded in count and time)."""

    urls: list[str]
    fault: float | None = None  # x1 value of the faulty records (RAISE or SLOW), or None
    fault_share: int = 0  # one record in this many carries the fault
    threads: int = 4
    pause: float = 0.0  # seconds each thread waits between two requests (bounds the rate)
    max_requests: int = 4000
    max_seconds: float = 40.0
    statuses: Counter[int] = field(default_factory=Counter)
    paths: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)
    sent: int = 0

    def start(self) -> Load:
        self._deadline = time.monotonic() + self.max_seconds
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _take(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or self.sent >= self.max_requests or time.monotonic() > self._deadline:
                return None
            self.sent += 1
            return self.sent

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=30) as http:
            while (number := self._take()) is not None:
                url = self.urls[number % len(self.urls)]
                x1 = 2.0 + (number % 7)
                if self.fault is not None and number % self.fault_share == 0:
                    x1 = self.fault
                try:
                    answer = http.post(f"{url}/v1/projects/{MOODY}/predict", json={"x1": x1, "x2": 3.0})
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if self.pause:
                    time.sleep(self.pause)
                with self._lock:
                    self.statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        self.paths[answer.json()["path"]] += 1
                    else:
                        self.failures.append(answer.text[:300])

    def stop(self) -> Load:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)
        return self


def wait_for(check: Callable[[], object], timeout: float, what: str | Callable[[], str], every: float = 0.2) -> object:
    """Poll ``check`` until it is true; past ``timeout`` fail, saying ``what`` (a callable: evaluated then)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(every)


@pytest.fixture
def moody_prod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Platform, dict[str, int], ServerThread]]:
    monkeypatch.setenv("HARBOURMASTER_TRAFFIC_SAMPLE_SECONDS", "0")  # a sample per heartbeat
    settings: Settings = make_settings(tmp_path / "home")
    platform = Platform(settings)
    versions = moody_in_prod(platform, tmp_path)
    with ServerThread(platform, "prod", FAST) as replica:
        wait_for(lambda: MOODY in replica.replica.table.routes, 60, "the replica to load moody")
        yield platform, versions, replica
    platform.close()


def start_canary(platform: Platform, version: int, **plan: object) -> int:
    info = platform.promotions.promote(SYSTEM, MOODY, version, "prod", rollout=rollout_plan("canary", **plan))
    assert info.outcome == "promoted" and info.rollout_id is not None
    return info.rollout_id


def run_until_over(platform: Platform, rollout_id: int, timeout: float) -> str:
    controller = platform.rollouts.start_controller(0.3)
    try:
        wait_for(
            lambda: platform.rollouts.get(SYSTEM, rollout_id).state not in ("running", "paused"),
            timeout,
            lambda: f"the rollout to finish: {platform.rollouts.get(SYSTEM, rollout_id)}",
        )
    finally:
        controller.stop()
    return platform.rollouts.get(SYSTEM, rollout_id).state


def audit_actions(platform: Platform) -> list[str]:
    with platform.db.reader() as session:
        return list(session.scalars(select(AuditEventRow.action).order_by(AuditEventRow.seq)))
