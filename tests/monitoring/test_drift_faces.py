"""``harbourmaster drift`` and the drift routes: the CLI as a newcomer runs it, the API on a live server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faces.test_cli import assert_fails, assert_ok, hm
from governance.helpers import create_users, live_server
from harbourmaster.client import Client
from harbourmaster.config import Settings
from harbourmaster.errors import InvalidInputError
from harbourmaster.services.platform import Platform
from monitoring.helpers import PROJECT, current_frame, log_rows, register_and_deploy


def test_cli_prints_the_ranked_table_json_and_history(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(Settings.from_env({"HARBOURMASTER_HOME": str(home)}))
    try:
        version = register_and_deploy(platform)
        log_rows(platform, current_frame(600, shift=1.0), version=version)
    finally:
        platform.close()

    table = assert_ok(hm(home, "drift", PROJECT, "--env", "dev", "--window", "1h")).out
    assert "2 of 5 features drift" in table and "income, region" in table
    lines = [line for line in table.splitlines() if "│" in line]
    assert "income" in lines[0] or "region" in lines[0]  # ranked: the most drifted first

    data = assert_ok(
        hm(home, "drift", PROJECT, "--window", "600", "--method", "age=psi", "--drift-share", "0.4", "--json")
    ).json()
    assert data["drifted"] is True and data["rows"] == 600
    assert {f["feature"]: f["method"] for f in data["features"]}["age"] == "psi"

    series = assert_ok(hm(home, "drift", PROJECT, "--history", "--feature", "income", "--json")).json()
    assert [s["report_id"] for s in series] == [data["id"], *[s["report_id"] for s in series[1:]]]
    assert len(series) == 2

    assert_fails(hm(home, "drift", PROJECT, "--method", "kss"), "unknown drift method 'kss'")
    assert_fails(hm(home, "drift", PROJECT, "--window", "yesterday"), "not a window")
    assert_fails(hm(home, "drift", "nope"), "does not exist")


def test_cli_refuses_options_of_the_other_mode_and_unknown_series(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(Settings.from_env({"HARBOURMASTER_HOME": str(home)}))
    try:
        version = register_and_deploy(platform)
    finally:
        platform.close()

    assert "No stored drift reports of" in assert_ok(hm(home, "drift", PROJECT, "--history")).out
    empty = assert_ok(hm(home, "drift", PROJECT, "--window", "1h")).out
    assert "window 1h (no rows) against its reference" in empty and "(0 rows" not in empty, empty  # said once
    assert_fails(hm(home, "drift", PROJECT, "--feature", "income"), "needs --history")
    assert_fails(hm(home, "drift", PROJECT, "--history", "--window", "1h"), "--window: option(s) of a new report")
    assert_fails(hm(home, "drift", "nope", "--history"), "does not exist")

    platform = Platform(Settings.from_env({"HARBOURMASTER_HOME": str(home)}))
    try:
        log_rows(platform, current_frame(200, shift=1.0), version=version)
    finally:
        platform.close()
    assert_ok(hm(home, "drift", PROJECT, "--window", "1h"))
    assert_fails(hm(home, "drift", PROJECT, "--history", "--feature", "incom"), "no series of feature 'incom'")
    series = assert_ok(hm(home, "drift", PROJECT, "--history", "--feature", "income", "--json")).json()
    assert len(series) == 2  # the empty window's report, then this one


def test_http_routes_and_remote_client(platform: Platform) -> None:
    tokens = create_users(platform)
    version = register_and_deploy(platform)
    log_rows(platform, current_frame(400, shift=1.0), version=version)
    with live_server(platform) as live:
        live.tokens = tokens
        with live.http("vera") as viewer:
            answer = viewer.post(f"/api/v1/drift/{PROJECT}/dev", json={"window": "1h"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["rows"] == 400 and "income" in [
                f["feature"] for f in answer.json()["features"] if f["drifted"]
            ]
            bad = viewer.post(f"/api/v1/drift/{PROJECT}/dev", json={"options": {"method": "kss"}})
            assert bad.status_code == 422 and "unknown drift method" in bad.json()["error"]["message"]
            history = viewer.get(f"/api/v1/drift/{PROJECT}/dev/history", params={"feature": "__dataset__"})
            assert [h["report_id"] for h in history.json()] == [answer.json()["id"]]
        with live.http(None) as nobody:
            assert nobody.post(f"/api/v1/drift/{PROJECT}/dev", json={}).status_code == 401
        with Client(live.url, token=tokens["dana"]) as remote:
            report = remote.drift(PROJECT, "dev", "400", {"features": {"age": {"method": "ks"}}})
            assert {f.feature: f.method for f in report.features}["age"] == "ks"
            assert remote.drift_history(PROJECT, "dev", feature="age")[0].report_id == report.id
            with pytest.raises(InvalidInputError, match="not a window"):
                remote.drift(PROJECT, "dev", "soon")
    assert json.loads(answer.text)["version"] == version
