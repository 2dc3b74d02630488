"""Commands say what happened: versions, relative paths, gate exit codes, equal metrics, lineage, lifetimes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import harbourmaster
from cli_inprocess import Outcome, invoke
from harbourmaster.cli.common import parse_duration
from harbourmaster.config import Settings
from harbourmaster.demo.story import write_demo_project
from harbourmaster.services.platform import Platform
from served import serve_champion

PROJECT = "breast-cancer"


def ok(outcome: Outcome) -> Outcome:
    assert outcome.crash is None, outcome.crash
    assert outcome.code == 0, f"{outcome.argv} exited {outcome.code}:\n{outcome.out}{outcome.err}"
    return outcome


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The current directory holds a project folder and, beside it, another data file; two trainings."""
    root = tmp_path_factory.mktemp("truthful")
    write_demo_project(root / "project")
    shutil.copyfile(root / "project" / "data" / "train.csv", root / "elsewhere.csv")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARBOURMASTER_HOME", str(root / "home"))
        for key in ("HARBOURMASTER_URL", "HARBOURMASTER_TOKEN", "HARBOURMASTER_DATABASE_URL"):
            patch.delenv(key, raising=False)
        patch.chdir(root)
        ok(invoke(["train", "project"]))
        ok(invoke(["train", "project"]))
        yield root


def test_version_flag_of_the_console_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harbourmaster", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"harbourmaster {harbourmaster.__version__}"


def test_data_paths_are_read_from_the_current_directory(workspace: Path) -> None:
    assert not (workspace / "project" / "elsewhere.csv").exists()  # only the current directory has it
    trained = ok(invoke(["train", "project", "--data", "elsewhere.csv", "--json"]))
    result = json.loads(trained.out)
    assert result["run"]["status"] == "succeeded"
    assert result["version"]["lineage"]["data"]["source"] == str(workspace / "elsewhere.csv")


def test_identical_trainings_have_identical_lineage_and_equal_metrics(workspace: Path) -> None:
    first = json.loads(ok(invoke(["show", PROJECT, "1", "--json"])).out)["lineage"]
    second = json.loads(ok(invoke(["show", PROJECT, "2", "--json"])).out)["lineage"]
    assert "0x" not in json.dumps(first["parameters"]), first["parameters"]  # no memory address
    assert first["parameters"] == second["parameters"]
    assert first["parameters"]["steps"][0][1]["params"]["func"] == "features:prepare"

    diff = ok(invoke(["diff", PROJECT, "1", "2", "--json"]))
    changes = json.loads(diff.out)
    assert "parameters" not in changes["lineage_changes"]
    assert all(m["delta"] == 0 and m["improved"] is None for m in changes["metric_changes"])
    text = ok(invoke(["diff", PROJECT, "1", "2"])).out
    assert "same" in text and "worse" not in text and "better" not in text


def test_promote_check_exit_code_follows_the_gates(workspace: Path) -> None:
    refused = invoke(["promote", PROJECT, "1", "--to", "test", "--check"])
    assert refused.crash is None
    assert refused.code == 1, refused
    assert "FAIL" in refused.out and "order" in refused.out
    assert "would not enter test" in refused.err

    refused_json = invoke(["promote", PROJECT, "1", "--to", "test", "--check", "--json"])
    assert refused_json.code == 1
    assert any(not verdict["passed"] for verdict in json.loads(refused_json.out))

    ok(invoke(["deploy", PROJECT, "1", "--env", "dev", "--no-wait"]))
    unserved = invoke(["promote", PROJECT, "1", "--to", "test", "--check"])
    assert unserved.code == 1 and "no replica there has answered with it yet" in unserved.out  # deployed only

    platform = Platform(Settings.from_env())
    try:
        assert serve_champion(platform, PROJECT, "dev") == 1  # a real replica in dev answers with v1
    finally:
        platform.close()
    passed = ok(invoke(["promote", PROJECT, "1", "--to", "test", "--check"]))
    assert "FAIL" not in passed.out


def test_lifetimes_accept_minutes_hours_days_and_weeks(workspace: Path) -> None:
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration("90s") == timedelta(seconds=90)

    before = datetime.now(UTC)
    issued = ok(invoke(["replica-tokens", "create", "--env", "dev", "--expires-in", "30m", "--json"]))
    credential = json.loads(issued.out)
    listed = json.loads(ok(invoke(["replica-tokens", "list", "--json"])).out)
    [mine] = [c for c in listed if c["id"] == credential["id"]]
    expires = datetime.fromisoformat(mine["expires_at"])
    assert before + timedelta(minutes=29) < expires < before + timedelta(minutes=31)


def test_a_demo_chapter_that_stops_is_an_error_and_a_hint_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lifecycle chapter's load test can miss the SLA on a busy machine; the newcomer reads why, not a traceback.
    from harbourmaster.demo import story

    def stopped(home: Path | None) -> None:
        raise RuntimeError("case 1 ended failed: the load test failed: p99 641.2 ms is above the SLA of prod")

    monkeypatch.setattr(story, "run_demo", stopped)
    outcome = invoke(["demo", "--home", str(tmp_path)])
    assert outcome.crash is None and outcome.code == 1
    assert "error: the demo stopped: case 1 ended failed: the load test failed" in outcome.err
    assert "run `harbourmaster demo` again when it is quieter" in outcome.err


def test_score_takes_data_as_train_does_and_names_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "orders.csv"
    outcome = invoke(["score", "breast-cancer", "--env", "dev", "--data", str(missing)])
    assert outcome.crash is None and outcome.code == 1, outcome
    assert f"error: {missing} does not exist" in outcome.err
    assert "--input (or --data)" in outcome.err and "FileNotFoundError" not in outcome.err
