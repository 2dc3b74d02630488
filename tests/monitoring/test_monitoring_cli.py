"""``harbourmaster monitor``, ``alerts`` and ``notifiers`` run for real as subprocesses (embedded mode),
as a newcomer would: results printed, secrets masked, bad input answered with a message and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from faces.test_cli import hm

SECRET_URL = "https://hooks.example.com/services/T000/B000/very-secret-token"


@pytest.mark.slow
def test_monitor_alerts_and_notifiers_from_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    once = hm(home, "monitor", "--once", "--json")
    assert once.code == 0, once.both
    report = once.json()
    assert {(r["monitor"], r["metric"]) for r in report["results"]} >= {
        ("database", "reachable"),
        ("database", "latency"),
        ("artifact-store", "reachable"),
        ("artifact-store", "free-space"),
    }
    assert {run["status"] for run in report["runs"]} == {"succeeded"}

    bare = hm(home, "monitor")
    assert bare.code == 1 and "harbourmaster monitor --once" in bare.err

    listed = hm(home, "alerts")
    assert listed.code == 0 and "No firing alerts" in listed.out

    added = hm(home, "notifiers", "add", "ops", "--kind", "webhook", "--webhook", SECRET_URL)
    assert added.code == 0 and "very-secret-token" not in added.both and "hooks.example.com" in added.out
    shown = hm(home, "notifiers", "list", "--json")
    assert [n["name"] for n in shown.json()] == ["ops"] and "very-secret-token" not in shown.out

    for args, message in (
        (("alerts", "silence", "1", "--for", "2x"), "'2x' is not a duration"),
        (("alerts", "ack", "7"), "no alert 7"),
        (("notifiers", "add", "pager", "--kind", "sms"), "unknown notifier kind 'sms'"),
    ):
        refused = hm(home, *args)
        assert refused.code == 1 and message in refused.err and "hint:" in refused.err, refused.both


@pytest.mark.slow
def test_log_compact_and_retention_from_the_command_line(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from harbourmaster.core.log_layout import LogLayout
    from harbourmaster.serving.capture import Captured, encode
    from harbourmaster.store.artifacts import ArtifactStore
    from harbourmaster.store.prediction_log import PredictionLog, prediction_key, table_bytes

    home = tmp_path / "home"
    assert hm(home, "monitor", "--once").code == 0  # the home exists
    store = ArtifactStore(str(home / "artifacts"))
    layout = LogLayout.from_schemas(1, {"columns": [{"name": "x", "dtype": "float"}]}, {"task": "regression"})
    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    for i in range(3):
        ts = int((hour + timedelta(minutes=i)).timestamp() * 1_000_000)
        entry = Captured(ts, f"r{i}", "p", 1, "champion", None, 200, 1.0, [{"x": i / 3}], [0.5], None)
        for (project, day, version), table in encode([entry], "dev", "r", {("p", 1): layout}).items():
            store.put_bytes(prediction_key("dev", project, day, f"{i:016x}", version), table_bytes(table))

    compacted = hm(home, "log", "compact", "--env", "dev", "--json")
    assert compacted.code == 0, compacted.both
    assert compacted.json()["files_in"] == 3 and compacted.json()["rows"] == 3
    assert len(PredictionLog(store).files("predictions", "dev", "p")) == 1
    shown = hm(home, "log", "compact", "--env", "dev")
    assert shown.code == 0 and "0 files merged" in shown.out
    kept = hm(home, "log", "retention", "--env", "dev")
    assert kept.code == 0 and "nothing older than its retention" in kept.out
    refused = hm(home, "log", "compact", "--env", "nowhere")
    assert refused.code == 1 and "nowhere" in refused.err and "hint:" in refused.err, refused.both
