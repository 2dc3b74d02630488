"""Tamper evidence of the audit log, on SQLite and PostgreSQL.

A chain is generated through real service calls; then an attacker with owner rights on
the database (who first drops the append-only triggers) edits, deletes, reorders,
rehashes, forges and re-signs rows behind the platform's back, and ``audit verify``
(service, CLI, export check) must name the entry and what happened to it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from harbourmaster.core.audit_chain import entry_hash, parse_public_key
from harbourmaster.errors import PermissionDeniedError
from harbourmaster.services.audit import row_entry, verify_export
from harbourmaster.services.platform import Platform
from harbourmaster.store.audit_guard import DROP
from harbourmaster.store.tables import AuditEventRow
from served import serve_champion

from .helpers import PROJECT, SYSTEM, actor, create_users, live_server, train


def make_chain(platform: Platform, demo_project: Path) -> int:
    """Users, a trained version, deployments, a promotion, a tag, a sign-off and a refusal; returns the head seq."""
    create_users(platform)
    dana = actor(platform, "dana")
    train(platform, demo_project)
    platform.deployments.deploy(dana, PROJECT, 1, "dev")
    serve_champion(platform, PROJECT, "dev")
    platform.promotions.promote(dana, PROJECT, 1, "test")
    platform.registry.set_tag(dana, PROJECT, 1, "candidate", "yes")
    platform.approvals.decide(actor(platform, "abe"), PROJECT, 1, "prod", "approve", "looks fine")
    with pytest.raises(PermissionDeniedError):
        platform.deployments.deploy(actor(platform, "otto"), PROJECT, 1, "prod")
    report = platform.audit.verify(actor(platform, "audrey"))
    assert report.ok, report.problem
    assert report.checked == report.head_seq >= 25
    return report.head_seq


def drop_triggers(platform: Platform) -> None:
    """What an attacker with owner rights does first: the application's role could not."""
    with platform.db.engine.begin() as connection:
        for statement in DROP[platform.db.dialect]:
            connection.exec_driver_sql(statement)


def raw(platform: Platform, sql: str, **params: object) -> None:
    """Change the database directly, as someone with owner rights on it would."""
    drop_triggers(platform)
    with platform.db.engine.begin() as connection:
        result = connection.execute(text(sql), params)
        assert result.rowcount >= 1, sql


def verify(platform: Platform):
    return platform.audit.verify(actor(platform, "audrey"))


def restarted(platform: Platform) -> Platform:
    """The same store opened by a fresh control-plane process (it remembers nothing it signed)."""
    return Platform(platform.settings)


def test_an_edited_entry_is_named(platform, demo_project):
    head = make_chain(platform, demo_project)
    middle = head // 2
    raw(platform, "UPDATE audit_events SET outcome = 'allowed', actor = 'mallory' WHERE seq = :seq", seq=middle)
    report = verify(platform)
    assert not report.ok
    assert report.bad_seq == middle
    assert report.problem == f"entry {middle} was altered: its content does not match its hash"
    assert report.checked == middle - 1


def test_an_edited_json_field_is_named(platform, demo_project):
    make_chain(platform, demo_project)
    with platform.db.reader() as session:
        row = session.query(AuditEventRow).filter(AuditEventRow.action == "version.approve").one()
        seq = row.seq
    cast = "CAST(:after AS JSON)" if platform.db.dialect == "postgresql" else ":after"
    raw(
        platform, f"UPDATE audit_events SET after = {cast} WHERE seq = :seq", after=json.dumps({"digest": "x"}), seq=seq
    )
    report = verify(platform)
    assert (report.ok, report.bad_seq) == (False, seq)
    assert f"entry {seq} was altered" in report.problem


def test_an_edit_that_rehashes_the_entry_is_named_by_its_signature(platform, demo_project):
    head = make_chain(platform, demo_project)
    seq = head - 3
    with platform.db.reader() as session:
        entry = row_entry(session.query(AuditEventRow).filter(AuditEventRow.seq == seq).one())
    entry["actor"] = "mallory"
    raw(
        platform,
        "UPDATE audit_events SET actor = 'mallory', hash = :hash WHERE seq = :seq",
        hash=entry_hash(entry),
        seq=seq,
    )
    report = verify(platform)
    assert (report.ok, report.bad_seq) == (False, seq)
    assert report.problem.startswith(f"entry {seq} has no valid signature: it was rewritten and rehashed")


def test_a_deleted_entry_is_named(platform, demo_project):
    head = make_chain(platform, demo_project)
    middle = head // 2
    raw(platform, "DELETE FROM audit_events WHERE seq = :seq", seq=middle)
    report = verify(platform)
    assert (report.ok, report.bad_seq) == (False, middle)
    assert report.problem.startswith(f"entry {middle} removed")


def test_reordered_entries_are_named(platform, demo_project):
    head = make_chain(platform, demo_project)
    first, second = head // 2, head // 2 + 1
    # Swap two rows' places in the sequence (seq is unique: go through a free value).
    raw(platform, "UPDATE audit_events SET seq = -1 WHERE seq = :seq", seq=first)
    raw(platform, "UPDATE audit_events SET seq = :new WHERE seq = :old", new=first, old=second)
    raw(platform, "UPDATE audit_events SET seq = :new WHERE seq = -1", new=second)
    report = verify(platform)
    assert (report.ok, report.bad_seq) == (False, first)
    assert f"entry {first} does not follow entry {first - 1}" in report.problem
    assert "reordered" in report.problem


def test_reading_the_audit_log_needs_auditor_or_admin(platform, demo_project):
    make_chain(platform, demo_project)
    for user in ("vera", "dana", "otto", "olga", "abe"):
        with pytest.raises(PermissionDeniedError):
            platform.audit.verify(actor(platform, user))
        with pytest.raises(PermissionDeniedError):
            platform.audit.export(actor(platform, user))
    assert platform.audit.verify(actor(platform, "root")).ok
    assert platform.audit.entries(actor(platform, "audrey"), limit=3)[-1]["action"] == "denied.audit"


def _cli_verify(home: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(home)
    env["HARBOURMASTER_BREAK_GLASS"] = "tests: verify the chain without a server"  # the store has users
    return subprocess.run(
        [sys.executable, "-m", "harbourmaster", "audit", "verify"],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_cli_audit_verify_names_the_entry(sqlite_settings, demo_project):
    platform = Platform(sqlite_settings)
    try:
        head = make_chain(platform, demo_project)
        intact = _cli_verify(sqlite_settings.home)
        assert intact.returncode == 0, intact.stderr
        # head entries, and the audited break-glass opening of the store by the CLI itself
        assert "intact" in intact.stdout and f"{head + 1} entries" in intact.stdout
        raw(platform, "UPDATE audit_events SET target = 'nothing to see' WHERE seq = 7")
    finally:
        platform.close()
    broken = _cli_verify(sqlite_settings.home)
    assert broken.returncode == 1
    output = " ".join((broken.stdout + broken.stderr).split())
    assert "entry 7 was altered" in output, output
    assert "Traceback" not in output


# -------------------------------------------------------------------------- exports


def _jsonl_lines(export: str) -> list[dict]:
    return [json.loads(line) for line in export.strip().splitlines()]


def test_exports_verify_and_name_a_tampered_line(platform, demo_project):
    head = make_chain(platform, demo_project)
    audrey = actor(platform, "audrey")

    jsonl = platform.audit.export(audrey, format="jsonl")
    report = verify_export(jsonl)
    assert report.ok, report.problem
    assert (report.checked, report.head_seq) == (head, head)
    trailer = _jsonl_lines(jsonl)[-1]["_trailer"]
    assert trailer["chain_head"]["seq"] == head and trailer["chain_verified"] is True

    csv_text = platform.audit.export(audrey, format="csv")
    report = verify_export(csv_text)
    assert report.ok, report.problem
    assert report.head_seq == head + 1  # the jsonl export itself was audited

    # A partial export (since a time) verifies on its own, from its first entry.
    entries = platform.audit.entries(audrey)
    since = entries[10]["at"]
    partial = platform.audit.export(audrey, since=datetime.fromisoformat(since), format="jsonl")
    lines = _jsonl_lines(partial)
    assert lines[0]["seq"] == 11
    assert verify_export(partial).ok

    # Edit one line of the JSONL export: named.
    lines = jsonl.splitlines()
    edited = json.loads(lines[4])
    edited["actor"] = "mallory"
    lines[4] = json.dumps(edited, sort_keys=True)
    report = verify_export("\n".join(lines) + "\n")
    assert (report.ok, report.bad_seq) == (False, 5)
    assert "entry 5 was altered" in report.problem

    # Remove a line from the middle: named.
    lines = jsonl.splitlines()
    del lines[8]
    report = verify_export("\n".join(lines) + "\n")
    assert (report.ok, report.bad_seq) == (False, 9)
    assert "entry 9 removed" in report.problem

    # Edit one cell of the CSV export: named.
    rows = list(csv.reader(io.StringIO(csv_text)))
    header = rows[0]
    rows[6][header.index("outcome")] = "denied"
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    report = verify_export(buffer.getvalue())
    assert (report.ok, report.bad_seq) == (False, 6)


def test_an_export_cut_short_is_detected(platform, demo_project):
    head = make_chain(platform, demo_project)
    jsonl = platform.audit.export(actor(platform, "audrey"), format="jsonl")
    lines = jsonl.splitlines()
    without_last = lines[:-2] + lines[-1:]  # drop the newest entry, keep the trailer
    report = verify_export("\n".join(without_last) + "\n")
    assert (report.ok, report.bad_seq) == (False, head)
    assert f"ends at entry {head - 1} but the chain head in the trailer is entry {head}" in report.problem
    without_first = lines[1:]
    report = verify_export("\n".join(without_first) + "\n")
    assert (report.ok, report.bad_seq) == (False, 1)
    assert "should start at entry 1" in report.problem
    nothing = verify_export(lines[-1] + "\n")  # every entry removed, only the trailer left
    assert (nothing.ok, nothing.bad_seq) == (False, 1)


# ---------------------------------------------------------------------- concurrency

WRITERS = 8
ROUNDS = 4


def test_concurrent_writers_on_postgresql_keep_one_gapless_chain(postgres_url, tmp_path):
    from tests.conftest import make_settings

    platform = Platform(make_settings(tmp_path / "home", postgres_url))
    try:
        tokens = create_users(platform)
        before = verify(platform).head_seq
        barrier = threading.Barrier(WRITERS, timeout=30)
        errors: list[str] = []
        with live_server(platform) as live:
            live.tokens = tokens

            def writer(index: int) -> None:
                try:
                    with live.http("root") as http:
                        barrier.wait()
                        for round_ in range(ROUNDS):
                            for response in (
                                http.post("/api/v1/projects", json={"name": f"p-{index}-{round_}"}),
                                http.post("/api/v1/users", json={"name": f"u-{index}-{round_}", "roles": ["viewer"]}),
                                http.post("/api/v1/tokens", json={"name": f"t-{index}-{round_}"}),
                                http.put(
                                    "/api/v1/environments/dev",
                                    json={"config": {"sla": {"p99_ms": 100 + index}}},
                                ),
                            ):
                                if response.status_code not in (200, 201):
                                    errors.append(f"{response.request.method} {response.request.url}: {response.text}")
                except Exception as exc:  # reported below, with the thread's index
                    errors.append(f"writer {index}: {type(exc).__name__}: {exc}")

            started = time.monotonic()
            threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert not any(thread.is_alive() for thread in threads), "a writer did not finish in time"
            elapsed = time.monotonic() - started
        assert errors == []
        report = verify(platform)
        assert report.ok, report.problem
        assert report.head_seq == before + WRITERS * ROUNDS * 4
        with platform.db.engine.connect() as connection:
            seqs = [row[0] for row in connection.execute(text("SELECT seq FROM audit_events ORDER BY seq"))]
        assert seqs == list(range(1, report.head_seq + 1))
        assert elapsed < 60
        # The HTTP writers are named with their address.
        last = platform.audit.entries(actor(platform, "audrey"), limit=2)[0]
        assert last["actor"] == "root" and last["address"] == "127.0.0.1"
    finally:
        platform.close()


def test_http_audit_export_round_trip(platform, demo_project):
    make_chain(platform, demo_project)
    with live_server(platform) as live:
        live.tokens = {"audrey": platform.identity.create_token(SYSTEM, "audrey", "export").secret}
        with live.http("audrey") as http:
            response = http.get("/api/v1/audit/export", params={"format": "csv"})
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/csv")
            assert verify_export(response.text).ok
            public_key = http.get("/api/v1/audit/public-key")
            assert public_key.status_code == 200 and public_key.text.startswith("-----BEGIN PUBLIC KEY-----")
            assert verify_export(response.text, parse_public_key(public_key.content)).ok
            checked = http.get("/api/v1/audit/verify").json()
            assert checked["ok"] is True and checked["problem"] is None
        with httpx.Client(base_url=live.url, timeout=30) as anonymous:
            assert anonymous.get("/api/v1/audit/verify").status_code == 401
