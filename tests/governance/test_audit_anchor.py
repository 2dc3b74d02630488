"""Signed anchors, written automatically to write-once storage outside the database: the chain
must reach the newest one, so cutting entries off its end, or all of them, shows."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbourmaster.core.audit_chain import GENESIS, entry_hash, signed_document
from harbourmaster.services.actors import Actor
from harbourmaster.services.audit import row_entry
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow
from loopback import free_port

from .helpers import PROJECT, actor
from .test_audit_tamper import drop_triggers, make_chain, raw, restarted, verify


def anchor_seqs(platform: Platform) -> list[int]:
    return sorted(int(anchor["seq"]) for anchor in platform.audit.anchors.read_all())


def test_guarded_changes_and_verify_write_signed_read_only_anchors(platform: Platform, demo_project: Path) -> None:
    head = make_chain(platform, demo_project)  # signs off for prod (guarded), then verifies
    with platform.db.reader() as session:
        approval = session.query(AuditEventRow).filter(AuditEventRow.action == "version.approve").one()
    assert approval.seq in anchor_seqs(platform), "a state change in a guarded environment is anchored at once"
    assert head in anchor_seqs(platform), "a verified head is anchored"
    folder = Path(platform.settings.audit_anchors_location)
    for file in folder.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o444
    # Write-once: the same head is never written again, and an existing anchor is never replaced.
    before = {file.name: file.read_bytes() for file in folder.iterdir()}
    assert platform.audit.anchor("again") is None
    assert {file.name: file.read_bytes() for file in folder.iterdir()} == before


def test_entries_cut_off_after_the_last_anchor_are_named(platform: Platform, demo_project: Path) -> None:
    head = make_chain(platform, demo_project)
    dana = actor(platform, "dana")
    for value in ("a", "b", "c"):  # not guarded: no anchor of their own
        platform.registry.set_tag(dana, PROJECT, 1, "note", value)
    assert max(anchor_seqs(platform)) == head
    raw(platform, "DELETE FROM audit_events WHERE seq > :seq", seq=head + 1)

    # The control plane that signed them remembers its newest entry.
    report = verify(platform)
    assert (report.ok, report.bad_seq) == (False, head + 2)
    assert report.problem.startswith(
        f"entries {head + 2}-{head + 3} removed: the chain ends at entry {head + 1}, "
        f"but this control plane signed entry {head + 3}"
    )


def test_the_anchor_written_on_stop_survives_a_restart(platform: Platform, demo_project: Path) -> None:
    head = make_chain(platform, demo_project)
    dana = actor(platform, "dana")
    platform.registry.set_tag(dana, PROJECT, 1, "note", "x")
    platform.registry.set_tag(dana, PROJECT, 1, "note", "y")
    platform.audit.start_anchoring(interval=3600).stop()  # what `harbourmaster server` does on shutdown
    assert max(anchor_seqs(platform)) == head + 2
    raw(platform, "DELETE FROM audit_events WHERE seq > :seq", seq=head)

    fresh = restarted(platform)
    try:
        report = verify(fresh)
    finally:
        fresh.close()
    assert (report.ok, report.bad_seq) == (False, head + 1)
    assert report.problem.startswith(f"entries {head + 1}-{head + 2} removed: the chain ends at entry {head}, ")
    assert f"entry {head + 2} was anchored at" in report.problem


def test_the_scheduler_anchors_the_head_in_the_background(platform: Platform, demo_project: Path) -> None:
    platform.registry.create_project(Actor.local_owner(), "scheduled")
    scheduler = platform.audit.start_anchoring(interval=0.2)
    try:
        deadline = time.monotonic() + 30
        while 1 not in anchor_seqs(platform) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 1 in anchor_seqs(platform)
        [anchor] = platform.audit.anchors.read_all()
        assert anchor["reason"] == "scheduled" and anchor["count"] == 1
    finally:
        scheduler.stop()
    assert not scheduler.is_alive()


def test_all_entries_removed_is_never_an_intact_empty_chain(platform: Platform, demo_project: Path) -> None:
    make_chain(platform, demo_project)
    raw(platform, "DELETE FROM audit_events")
    fresh = restarted(platform)
    try:
        report = verify(fresh)
    finally:
        fresh.close()
    assert not report.ok
    assert report.problem.startswith("all entries removed: the audit table is empty, but entry ")
    assert report.bad_seq == 1


def test_a_rewritten_chain_with_its_anchors_replaced_is_named(platform: Platform, demo_project: Path) -> None:
    make_chain(platform, demo_project)
    # The attacker rewrites the chain consistently (new hashes throughout) and swaps the anchors
    # for ones that match it: unsigned, and signed with a key of their own.
    drop_triggers(platform)
    with platform.db.transaction() as session:
        previous = GENESIS
        for row in session.query(AuditEventRow).order_by(AuditEventRow.seq).all():
            if row.seq == 3:
                row.actor = "mallory"
            row.prev_hash = previous
            row.hash = entry_hash(row_entry(row))
            previous = row.hash
            head = (row.seq, row.hash)
    folder = Path(platform.settings.audit_anchors_location)
    for file in folder.iterdir():
        file.unlink()
    (folder / f"{head[0]:012d}-aaaa.json").write_text(f'{{"seq": {head[0]}, "hash": "{head[1]}", "at": "now"}}')
    forged = signed_document(Ed25519PrivateKey.generate(), {"seq": head[0], "hash": head[1], "at": "now"})
    (folder / f"{head[0]:012d}-bbbb.json").write_text(json.dumps(forged))

    fresh = restarted(platform)
    try:
        report = verify(fresh)
    finally:
        fresh.close()
    assert (report.ok, report.bad_seq) == (False, 3)
    assert report.problem.startswith("entry 3 has no valid signature")
    assert (
        f"anchor {head[0]:012d}-aaaa.json (entry {head[0]}, now) has no valid signature: it was forged or altered"
        in (report.problems)
    )
    assert any(p.startswith(f"anchor {head[0]:012d}-bbbb.json") for p in report.problems)


@pytest.mark.slow
def test_harbourmaster_server_creates_the_key_and_anchors_on_a_schedule_and_on_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update(
        HARBOURMASTER_HOME=str(home),
        HARBOURMASTER_ADMIN_TOKEN="hm_test_bootstrap_token_0123456789",
        HARBOURMASTER_AUDIT_ANCHOR_INTERVAL="0.5",
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "harbourmaster", "server", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    anchors = home / "audit" / "anchors"
    try:
        deadline = time.monotonic() + 60
        while not list(anchors.glob("*.json")) and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.2)
        assert stat.S_IMODE((home / "audit" / "signing-key.pem").stat().st_mode) == 0o600
        [scheduled] = [json.loads(file.read_text()) for file in anchors.glob("*.json")]
        assert scheduled["reason"] == "scheduled" and scheduled["seq"] == 2  # the bootstrap admin and its token
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""
