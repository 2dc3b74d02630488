"""Every state change and every prod read is audited, with the caller and a true before/after; a
failed operation is logged as failed (issue 7 item 7), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from governance.helpers import PROJECT, SYSTEM, actor, create_users, train
from harbourmaster.services.platform import Platform
from served import serve_champion


def _entries(platform: Platform, action: str) -> list[dict]:
    return [e for e in platform.audit.entries(SYSTEM) if e["action"] == action]


def test_moving_an_environment_records_its_place_before_and_after(platform: Platform) -> None:
    root = SYSTEM
    platform.environments.configure(root, "staging", {}, None)
    last = max(env.position for env in platform.environments.list())
    platform.environments.configure(root, "staging", {}, 1)  # moved to the front, config unchanged
    moved = _entries(platform, "environment.configure")[-1]
    assert moved["before"]["position"] == last and moved["after"]["position"] == 1
    assert moved["before"] != moved["after"] and moved["details"]["moved"] is True


@pytest.mark.slow
def test_prod_reads_feedback_and_predictions_are_audited_with_the_caller(
    platform: Platform, demo_project: Path, tmp_path: Path
) -> None:
    create_users(platform)
    number = train(platform, demo_project)
    dana, olga, vera = (actor(platform, name) for name in ("dana", "olga", "vera"))
    platform.deployments.deploy(dana, PROJECT, number, "dev")
    serve_champion(platform, PROJECT, "dev")
    platform.promotions.promote(dana, PROJECT, number, "test")
    serve_champion(platform, PROJECT, "test")
    for approver in ("abe", "amy"):
        platform.approvals.decide(actor(platform, approver), PROJECT, number, "prod", "approve")
    platform.promotions.promote(olga, PROJECT, number, "prod")
    rows = pd.read_csv(demo_project / "data" / "train.csv").drop(columns=["malignant"]).head(3)
    rows.to_csv(tmp_path / "in.csv", index=False)
    scored = platform.scoring.score(olga, PROJECT, "prod", tmp_path / "in.csv", tmp_path / "out.csv")

    reads = {
        "deployment.list": lambda: platform.deployments.list(vera),
        "deployment.events": lambda: platform.deployments.history(vera, PROJECT),
        "history.read": lambda: platform.history.history(vera, PROJECT),
        "promotion.list": lambda: platform.promotions.list(vera),
        "approval.list": lambda: platform.approvals.list(vera),
        "run.list": lambda: platform.training.list_runs(vera),
        "run.read": lambda: platform.runs.get(vera, scored.id),
        "predictions.read": lambda: platform.predictions.read(vera, PROJECT, "prod"),
    }
    for action, read in reads.items():
        read()
        entries = _entries(platform, action)
        assert [(e["actor"], e["environment"]) for e in entries] == [("vera", "prod")], action
    # Reads that return no guarded data leave no entry.
    platform.deployments.list(vera, environment="dev")
    assert len(_entries(platform, "deployment.list")) == 1

    # req-1 was answered with one row (as the replica that took the feedback vouches), so its feedback is stored.
    platform.feedback.record(olga, PROJECT, "prod", [("req-1", 0, 1)], recent=lambda ids: dict.fromkeys(ids, 1))
    (feedback,) = _entries(platform, "feedback.record")
    assert feedback["actor"] == "olga" and feedback["environment"] == "prod" and feedback["details"]["items"] == 1


def test_a_failed_export_is_logged_as_failed(platform: Platform) -> None:
    auditor = SYSTEM
    platform.environments.configure(auditor, "staging", {}, None)
    platform.audit.export(auditor)
    assert _entries(platform, "audit.export")[-1]["outcome"] == "allowed"
    # Break the anchor store for real: a file where the anchors' folder must be.
    anchors = Path(platform.settings.audit_anchors_location)
    if anchors.is_dir():
        for child in anchors.iterdir():
            child.chmod(0o600)  # anchors are written read-only (write-once)
            child.unlink()
        anchors.rmdir()
    anchors.parent.mkdir(parents=True, exist_ok=True)
    anchors.write_text("not a folder")
    with pytest.raises(OSError):
        platform.audit.export(auditor)
    assert _entries(platform, "audit.export")[-1]["outcome"] == "failed"
