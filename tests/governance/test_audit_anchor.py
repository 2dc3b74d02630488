"""Cutting the newest entries off the audit table shows, because verified heads are
anchored outside the database (in the artifact store)."""

from __future__ import annotations

from pathlib import Path

from harbourmaster.services.audit import ANCHOR_PREFIX
from harbourmaster.services.platform import Platform

from .helpers import actor
from .test_audit_tamper import make_chain, raw, verify


def test_truncating_the_newest_entries_is_named(platform: Platform, demo_project: Path) -> None:
    head = make_chain(platform, demo_project)  # verifies, which anchors the head
    assert platform.artifacts.list(ANCHOR_PREFIX), "a verified head is anchored in the artifact store"
    raw(platform, "DELETE FROM audit_events WHERE seq >= :first", first=head - 1)

    report = verify(platform)

    assert not report.ok
    assert report.problem.startswith(f"entries {head - 1}-{head} removed")
    assert report.bad_seq == head - 1


def test_a_chain_rewritten_up_to_the_anchor_is_named(platform: Platform, demo_project: Path) -> None:
    head = make_chain(platform, demo_project)
    # Someone with database access rewrites the whole chain consistently (new hashes throughout):
    # it verifies on its own, but no longer meets the anchored head.
    from harbourmaster.core.audit_chain import GENESIS, entry_hash
    from harbourmaster.services.audit import row_entry
    from harbourmaster.store.tables import AuditEventRow

    with platform.db.transaction() as session:
        rows = session.query(AuditEventRow).order_by(AuditEventRow.seq).all()
        previous = GENESIS
        for row in rows:
            if row.seq == 3:
                row.actor = "mallory"
            row.prev_hash = previous
            row.hash = entry_hash(row_entry(row))
            previous = row.hash

    report = verify(platform)

    assert not report.ok
    assert f"entry {head} differs from its anchor" in report.problem


def test_verify_and_export_keep_the_anchor_current(platform: Platform, demo_project: Path) -> None:
    head = make_chain(platform, demo_project)
    auditor = actor(platform, "audrey")
    platform.audit.export(auditor)  # anchors the head it exported, then records the export itself
    assert max(platform.artifacts.list(ANCHOR_PREFIX)).startswith(f"{ANCHOR_PREFIX}{head:012d}-")
    assert verify(platform).ok  # reaches the anchor, and anchors the export entry too
    assert max(platform.artifacts.list(ANCHOR_PREFIX)).startswith(f"{ANCHOR_PREFIX}{head + 1:012d}-")
