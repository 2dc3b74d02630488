"""Batch scoring with a guarded environment's model needs a predict grant there, and every run is audited."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harbourmaster.errors import PermissionDeniedError
from harbourmaster.services.platform import Platform

from .helpers import PROJECT, actor, create_users, train


def test_scoring_in_prod_needs_a_predict_grant_and_is_audited(
    platform: Platform, demo_project: Path, tmp_path: Path
) -> None:
    create_users(platform)
    number = train(platform, demo_project)
    dana = actor(platform, "dana")
    platform.deployments.deploy(dana, PROJECT, number, "dev")
    platform.promotions.promote(dana, PROJECT, number, "test")
    for approver in ("abe", "amy"):
        platform.approvals.decide(actor(platform, approver), PROJECT, number, "prod", "approve")
    platform.promotions.promote(actor(platform, "olga"), PROJECT, number, "prod")

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
