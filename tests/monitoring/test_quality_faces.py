"""``harbourmaster quality`` / ``evidence`` and their routes: the CLI as a user runs it, the API and the
remote SDK on a live server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from faces.test_cli import assert_fails, assert_ok, hm
from governance.helpers import create_users, live_server
from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.errors import InvalidInputError
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow
from monitoring.helpers import OWNER, PROJECT, current_frame, fitted, log_rows, register_and_deploy, training_frame


def _traffic(platform: Platform, version: int, environment: str = "dev", rows: int = 200) -> None:
    """``rows`` answers of ``version`` with probabilities, every second one labelled (the true label)."""
    frame = current_frame(rows)
    model = fitted(*training_frame(3000))
    labels = [int(v) for v in model.predict(frame)]
    probabilities = [{"0": float(p[0]), "1": float(p[1])} for p in model.predict_proba(frame)]
    log_rows(platform, frame, version=version, environment=environment, outputs=labels, probabilities=probabilities)
    truth = (frame["income"].to_numpy() + np.random.default_rng(2).normal(0, 5, rows) > 50).astype(int)
    items = [(f"req-{i // 10}", i % 10, int(truth[i])) for i in range(0, rows, 2)]
    platform.feedback.record(OWNER, PROJECT, environment, items, classes=[0, 1])


def test_cli_quality_table_json_and_evidence_in_promote_check(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(Settings.from_env({"HARBOURMASTER_HOME": str(home)}))
    try:
        version = register_and_deploy(platform, metrics={"accuracy": 0.9, "f1": 0.9, "roc_auc": 0.95})
        _traffic(platform, version)
        platform.environments.configure(OWNER, "dev", {"gates": [{"kind": "evidence", "check": "quality"}]})
    finally:
        platform.close()

    table = assert_ok(hm(home, "quality", PROJECT, "--env", "dev", "--window", "1h")).out
    assert "100 labelled, 100 waiting for ground truth" in table and "judged from 100 labelled rows" in table
    assert "accuracy" in table and "roc_auc" in table
    data = assert_ok(hm(home, "quality", PROJECT, "--window", "200", "--json")).json()
    assert (data["rows"], data["labelled"], data["unlabelled"]) == (200, 100, 100)
    assert {m["metric"]: m["baseline"] for m in data["metrics"]} == {"accuracy": 0.9, "f1": 0.9, "roc_auc": 0.95}
    assert_fails(hm(home, "quality", PROJECT, "--window", "yesterday"), "not a window")
    assert_fails(hm(home, "quality", "nope"), "does not exist")

    refused = hm(home, "promote", PROJECT, str(version), "--to", "dev", "--check")
    assert refused.code == 1 and "no quality evidence recorded" in refused.both
    recorded = assert_ok(hm(home, "evidence", PROJECT, str(version), "--to", "dev", "--check", "quality")).out
    assert "PASSED" in recorded and "is the champion of dev" in recorded
    checked = assert_ok(hm(home, "promote", PROJECT, str(version), "--to", "dev", "--check")).out
    assert "is the champion of dev" in checked
    assert_fails(hm(home, "evidence", PROJECT, str(version), "--to", "dev", "--check", "vibes"), "unknown evidence")


def test_http_routes_and_remote_client(platform: Platform) -> None:
    tokens = create_users(platform)
    version = register_and_deploy(platform, metrics={"accuracy": 0.9})
    platform.environments.configure(OWNER, "dev", {"guarded": True})  # as prod is: its reads are audited
    _traffic(platform, version)
    with live_server(platform) as live:
        live.tokens = tokens
        with live.http("vera") as viewer:  # a guarded environment's quality report is a read there, audited
            answer = viewer.post(f"/api/v1/quality/{PROJECT}/dev", json={"window": "1h"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["labelled"] == 100 and answer.json()["version"] == version
            bad = viewer.post(f"/api/v1/quality/{PROJECT}/dev", json={"window": "soon"})
            assert bad.status_code == 422 and "not a window" in bad.json()["error"]["message"]
            history = viewer.get(f"/api/v1/quality/{PROJECT}/dev/history")
            assert [h["id"] for h in history.json()] == [answer.json()["id"]]
            evidence = viewer.post(f"/api/v1/evidence/{PROJECT}/{version}/dev", json={"checks": ["drift"]})
            assert evidence.status_code == 200 and evidence.json()[0]["passed"], evidence.text
        with live.http(None) as nobody:
            assert nobody.post(f"/api/v1/quality/{PROJECT}/dev", json={}).status_code == 401
        with Client(live.url, token=tokens["dana"]) as remote:
            report = remote.quality(PROJECT, "dev", "200")
            assert report.rows == 200 and report.values["accuracy"] > 0.5
            assert remote.quality_history(PROJECT, "dev")[0].id == report.id
            assert [e.check for e in remote.evidence(PROJECT, version, "dev")] == ["drift"]
            recorded = remote.record_evidence(PROJECT, version, "dev", ["quality"])
            assert recorded[0].check == "quality" and recorded[0].passed
            with pytest.raises(InvalidInputError, match="not a window"):
                remote.quality(PROJECT, "dev", "soon")
    with platform.db.reader() as session:
        actions = set(session.scalars(select(AuditEventRow.action).where(AuditEventRow.environment == "dev")))
    assert {"quality.report", "evidence.record"} <= actions
