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
