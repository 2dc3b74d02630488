"""Abuse costs the attacker: a flood of bad tokens on a guarded replica is refused from a cache and
audited in aggregate (per token hash and reason, with a count), while granted callers keep being answered."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pandas as pd
import pytest
from tests.governance.helpers import PROJECT, actor
from tests.governance.test_scoring_access import promote_to_prod

from harbourmaster.services.platform import Platform
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread

FLOOD = 150  # requests per flooding client (bounded)


@pytest.mark.slow
def test_a_bad_token_flood_is_audited_in_aggregate_and_granted_calls_still_succeed(
    platform: Platform, demo_project: Path
) -> None:
    tokens, _number = promote_to_prod(platform, demo_project)
    row = pd.read_csv(demo_project / "data" / "train.csv").drop(columns=["malignant"]).iloc[0].to_dict()
    statuses: dict[str, list[int]] = {"bad": [], "none": [], "forbidden": [], "granted": []}
    lock = threading.Lock()

    with ServerThread(platform, "prod", ReplicaOptions(poll_seconds=0.2)) as prod:
        url = f"{prod.url}/v1/projects/{PROJECT}/predict"
        assert httpx.post(url, json=row, headers={"Authorization": f"Bearer {tokens['olga']}"}).status_code in (
            200,
            404,
        )

        def client(kind: str, headers: dict[str, str], count: int) -> None:
            with httpx.Client(timeout=30, headers=headers) as own:
                for _ in range(count):
                    answer = own.post(url, json=row)
                    with lock:
                        statuses[kind].append(answer.status_code)

        clients = [
            threading.Thread(target=client, args=("bad", {"Authorization": "Bearer stolen-and-wrong"}, FLOOD)),
            threading.Thread(target=client, args=("bad", {"Authorization": "Bearer stolen-and-wrong"}, FLOOD)),
            threading.Thread(target=client, args=("none", {}, 50)),
            threading.Thread(target=client, args=("forbidden", {"Authorization": f"Bearer {tokens['otto']}"}, 50)),
            threading.Thread(target=client, args=("granted", {"Authorization": f"Bearer {tokens['olga']}"}, 60)),
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(120)
        assert not any(thread.is_alive() for thread in clients)
        metrics = httpx.get(f"{prod.url}/metrics").text
    # the server has stopped: the guard wrote what it had tallied

    assert statuses["bad"] == [401] * (2 * FLOOD) and statuses["none"] == [401] * 50
    assert statuses["forbidden"] == [403] * 50
    assert statuses["granted"] == [200] * 60
    assert 'status="401"' in metrics and 'status="403"' in metrics

    entries = platform.audit.entries(actor(platform, "audrey"))
    denied = [e for e in entries if e["action"] in ("predict.access", "denied.predict") and e["outcome"] == "denied"]
    by_reason: dict[str, int] = {}
    for entry in denied:
        details = entry["details"]
        by_reason[details["reason"]] = by_reason.get(details["reason"], 0) + details["count"]
        assert details["token_sha256"] and details["count"] >= 1
    assert by_reason == {"unauthenticated": 2 * FLOOD + 50, "forbidden": 50}  # every refusal, counted
    assert len(denied) <= 12, f"{len(denied)} audit rows for {2 * FLOOD + 100} refusals: not aggregated"
    forbidden = [e for e in denied if e["details"]["reason"] == "forbidden"]
    assert {e["actor"] for e in forbidden} == {"otto"} and all(e["action"] == "denied.predict" for e in forbidden)
    assert platform.audit.verify(actor(platform, "audrey")).ok
