"""A guarded environment's model answers only those with a predict grant there (replicas and batch
scoring alike), and every decision is audited."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from harbourmaster.errors import PermissionDeniedError
from harbourmaster.services.platform import Platform
from harbourmaster.serving.replica import ReplicaOptions
from harbourmaster.serving.server import ServerThread
from served import serve_champion

from .helpers import PROJECT, actor, create_users, train


def promote_to_prod(platform: Platform, demo_project: Path) -> tuple[dict[str, str], int]:
    tokens = create_users(platform)
    number = train(platform, demo_project)
    dana = actor(platform, "dana")
    platform.deployments.deploy(dana, PROJECT, number, "dev")
    serve_champion(platform, PROJECT, "dev")
    platform.promotions.promote(dana, PROJECT, number, "test")
    serve_champion(platform, PROJECT, "test")
    for approver in ("abe", "amy"):
        platform.approvals.decide(actor(platform, approver), PROJECT, number, "prod", "approve")
    platform.promotions.promote(actor(platform, "olga"), PROJECT, number, "prod")
    return tokens, number


def test_scoring_in_prod_needs_a_predict_grant_and_is_audited(
    platform: Platform, demo_project: Path, tmp_path: Path
) -> None:
    promote_to_prod(platform, demo_project)
    rows = pd.read_csv(demo_project / "data" / "train.csv").drop(columns=["malignant"]).head(5)
    rows.to_csv(tmp_path / "in.csv", index=False)

    with pytest.raises(PermissionDeniedError, match="no predict grant for prod"):
        platform.scoring.score(actor(platform, "otto"), PROJECT, "prod", tmp_path / "in.csv", tmp_path / "out.csv")
    run = platform.scoring.score(actor(platform, "olga"), PROJECT, "prod", tmp_path / "in.csv", tmp_path / "out.csv")
    assert run.status == "succeeded" and run.rows_out == 5

    entries = platform.audit.entries(actor(platform, "audrey"))
    scored = [e for e in entries if e["action"] == "run.score"]
    assert scored and scored[-1]["actor"] == "olga" and scored[-1]["environment"] == "prod"
    assert any(e["action"] == "denied.predict" and e["actor"] == "otto" for e in entries)
    assert platform.audit.verify(actor(platform, "audrey")).ok


def test_a_prod_replica_answers_a_granted_token_and_audits_each_decision(
    platform: Platform, demo_project: Path
) -> None:
    tokens, number = promote_to_prod(platform, demo_project)
    row = pd.read_csv(demo_project / "data" / "train.csv").drop(columns=["malignant"]).iloc[0].to_dict()

    with ServerThread(platform, "prod", ReplicaOptions(poll_seconds=0.2)) as prod:
        url = f"{prod.url}/v1/projects/{PROJECT}/predict"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and PROJECT not in prod.replica.table.routes:
            time.sleep(0.05)
        granted = [httpx.post(url, json=row, headers={"Authorization": f"Bearer {tokens['olga']}"}) for _ in range(3)]
        refused = httpx.post(url, json=row, headers={"Authorization": f"Bearer {tokens['otto']}"})

    assert [answer.status_code for answer in granted] == [200, 200, 200]
    assert granted[0].json()["version"] == number
    assert refused.status_code == 403 and "predict grant" in refused.text
    entries = platform.audit.entries(actor(platform, "audrey"))
    allowed = [e for e in entries if e["action"] == "predict.access" and e["actor"] == "olga"]
    assert len(allowed) == 1  # decided once, then cached for the following requests
    assert any(e["action"] == "denied.predict" and e["actor"] == "otto" and e["environment"] == "prod" for e in entries)
