"""End to end, against a real control plane on 127.0.0.1 with its monitors on their schedule: a replica
that stops heartbeating raises a "replica silent" alert, delivered once to a webhook receiver on loopback
that failed the first attempt, and resolved when the replica comes back; the CLI lists and acknowledges
it over HTTP under the same roles and grants as the API."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from tests.governance.helpers import SYSTEM, create_users

from faces.test_cli import hm
from harbourmaster.api.app import create_app
from harbourmaster.services.platform import Platform
from harbourmaster.serving.control_plane import RemoteControlPlane
from loopback import serve_in_thread
from monitoring.receiver import webhook_receiver


@contextmanager
def heartbeating(url: str, token: str, platform: Platform, replica: str) -> Iterator[threading.Event]:
    """A replica's heartbeats (its own transport and payload fields) every 0.2s until the event is set."""
    control_plane = RemoteControlPlane(url, token, "prod", settings=platform.settings)
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            details = {"cpu_percent": 3.0, "memory_bytes": 80 * 2**20, "capture_pending": 0, "capture_dropped": 0}
            control_plane.heartbeat(replica, host="test-host", pid=4242, address="", status="alive", details=details)
            stop.wait(0.2)

    thread = threading.Thread(target=beat, name=f"heartbeats-{replica}", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=10)


def _wait(predicate: Callable[[], Any], seconds: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_silent_replica_alerts_once_through_a_flaky_webhook_and_resolves(platform: Platform, tmp_path) -> None:
    platform.settings = dataclasses.replace(
        platform.settings,
        monitoring=dataclasses.replace(
            platform.settings.monitoring, interval=0.3, replica_silent_after=2.0, notify_backoff=0.2
        ),
    )
    tokens = create_users(platform)
    credential = platform.dataplane.create_credential(SYSTEM, "prod", "web").secret
    with webhook_receiver(fail_first=1) as receiver, serve_in_thread(create_app(platform, run_monitors=True)) as url:
        platform.notifiers.add(SYSTEM, "ops", "webhook", receiver.url)
        olga = {"Authorization": f"Bearer {tokens['olga']}"}
        with httpx.Client(base_url=f"{url}/api/v1", headers=olga, timeout=30) as api:
            with heartbeating(url, credential, platform, "web-1"):
                time.sleep(1.5)  # several monitor passes while it beats: no alert
                assert api.get("/alerts").json() == []
            # the replica went silent (killed: no "stopped" heartbeat)
            firing = _wait(
                lambda: [a for a in api.get("/alerts").json() if a["rule"] == "replica.silent"], what="alert"
            )
            [alert] = firing
            assert (alert["subject"], alert["severity"], alert["environment"]) == ("replica:web-1", "critical", "prod")
            assert alert["evidence"] == "replica:web-1" and "silent for" in alert["summary"]
            [delivered] = receiver.wait_for(1)
            assert delivered.body["event"] == "firing" and delivered.body["alert"]["id"] == alert["id"]
            assert [r.status for r in receiver.requests] == [500, 200]  # failed once, retried once
            assert {r.key for r in receiver.requests} == {delivered.key}
            time.sleep(1.0)  # more passes while it stays silent: the same alert, no new notification
            assert len(receiver.accepted()) == 1
            assert api.get(f"/alerts/{alert['id']}").json()["fired_count"] > 1

            # the CLI over HTTP: an operator without a prod grant may read it but not acknowledge it
            home = tmp_path / "cli-home"
            listed = hm(home, "alerts", "--json", "--url", url, "--token", tokens["otto"])
            assert listed.code == 0 and [a["id"] for a in listed.json()] == [alert["id"]]
            refused = hm(home, "alerts", "ack", str(alert["id"]), "--url", url, "--token", tokens["otto"])
            assert refused.code == 1 and "no deploy grant for prod" in refused.err
            acked = hm(home, "alerts", "ack", str(alert["id"]), "--url", url, "--token", tokens["olga"])
            assert acked.code == 0 and "acknowledged by olga" in acked.out

            with heartbeating(url, credential, platform, "web-1"):  # it comes back
                resolved = _wait(
                    lambda: api.get(f"/alerts/{alert['id']}").json()["status"] == "resolved", what="resolution"
                )
                assert resolved
                messages = receiver.wait_for(2)
                assert api.get("/alerts").json() == []
                report = api.post("/monitors/run").json()  # a cron job's run, asked of the server
                assert {r["status"] for r in report["runs"]} == {"succeeded"} and report["delivered"] == 0
                assert ("replica:web-1", "heartbeat-age", "ok") in {
                    (r["subject"], r["metric"], r["status"]) for r in report["results"]
                }
            assert [m.body["event"] for m in messages] == ["firing", "resolved"]
            assert len({m.key for m in messages}) == 2
            runs = api.get("/monitors/runs", params={"limit": 1000}).json()
            assert len(runs) >= 10 and {r["status"] for r in runs} == {"succeeded"}
