"""The data-plane commands embedded (the sandbox): replica credentials, replicas and the prediction log."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from harbourmaster.cli.main import app
from harbourmaster.config import Settings
from harbourmaster.services.platform import Platform

from .helpers import PROJECT, SYSTEM, prediction_file

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_replica_tokens_replicas_and_predictions_embedded(isolated_env: Path) -> None:
    issued = json.loads(_run("replica-tokens", "create", "--env", "dev", "--name", "web", "--json"))
    assert issued["token"].startswith("hmr_") and issued["environment"] == "dev"
    listed = json.loads(_run("replica-tokens", "list", "--json"))
    assert [(c["id"], c["name"], c["revoked_at"]) for c in listed] == [(issued["id"], "web", None)]
    assert issued["token"] not in json.dumps(listed)  # never the token again, only its prefix

    platform = Platform(Settings.from_env())
    try:
        replica = platform.identity.authenticate(issued["token"])
        platform.dataplane.heartbeat(replica, "dev", "web-1", host="h", pid=1, address="", loaded={})
        key = f"predictions/env=dev/project={PROJECT}/date=2026-01-01/{'e' * 32}.parquet"
        platform.dataplane.store_predictions(replica, "dev", key, prediction_file("dev", rows=3))
        assert [r.id for r in platform.replicas.list(SYSTEM, "dev")] == ["web-1"]
    finally:
        platform.close()

    assert [r["id"] for r in json.loads(_run("replicas", "--env", "dev", "--json"))] == ["web-1"]
    rows = json.loads(_run("predictions", PROJECT, "--env", "dev", "--limit", "2", "--json"))
    assert len(rows) == 2 and {row["environment"] for row in rows} == {"dev"}
    assert "3 predictions logged" in _run("predictions", PROJECT, "--env", "dev")
    sql = "SELECT count(*) AS n FROM predictions"
    counted = json.loads(_run("predictions", PROJECT, "--env", "dev", "--sql", sql, "--json"))
    assert counted == [{"n": 3}]

    assert "revoked" in _run("replica-tokens", "revoke", str(issued["id"]))
    assert json.loads(_run("replica-tokens", "list", "--json"))[0]["revoked_at"]
