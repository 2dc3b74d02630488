"""The signing key, append-only rows, forged and re-signed entries, rows the chain does not vouch
for, and exports checked offline with the public key alone; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from harbourmaster.core.audit_chain import GENESIS, entry_hash, parse_public_key, signed_document
from harbourmaster.errors import InvalidInputError, PromotionRefusedError
from harbourmaster.services.actors import Actor
from harbourmaster.services.audit import row_entry, verify_export
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import ApprovalRow, AuditEventRow, DeploymentEventRow, PromotionRow
from served import serve_champion

from .helpers import PROJECT, SYSTEM, actor, create_users, train
from .test_audit_tamper import drop_triggers, make_chain, raw, restarted, verify

OWNER = Actor.local_owner()


def head_entry(platform: Platform) -> dict:
    with platform.db.reader() as session:
        return row_entry(session.query(AuditEventRow).order_by(AuditEventRow.seq.desc()).first())


def rewrite(platform: Platform, *, edit_seq: int | None = None, key: Ed25519PrivateKey | None = None) -> None:
    """Recompute every hash (and, with ``key``, every signature) after an edit, as an attacker would."""
    drop_triggers(platform)
    with platform.db.transaction() as session:
        previous = GENESIS
        for row in session.query(AuditEventRow).order_by(AuditEventRow.seq).all():
            if row.seq == edit_seq:
                row.actor = "mallory"
            row.prev_hash = previous
            row.hash = entry_hash(row_entry(row))
            if key is not None:
                row.signature = key.sign(row.hash.encode()).hex()
            previous = row.hash


# -- the key ---------------------------------------------------------------------------------


def test_the_key_is_made_once_readable_by_the_owner_only(platform: Platform) -> None:
    platform.registry.create_project(OWNER, "keyed")
    path = platform.settings.audit_key_path
    assert path == platform.settings.home / "audit" / "signing-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = platform.audit.public_key_pem(OWNER)
    key = parse_public_key(pem.encode())
    newest = head_entry(platform)
    key.verify(bytes.fromhex(newest["signature"]), newest["hash"].encode())  # raises unless signed by it
    other = restarted(platform)  # a second process on the same home signs with the same key
    try:
        assert other.audit.public_key_pem(OWNER) == pem
    finally:
        other.close()


def test_a_configured_key_file_must_exist_and_be_private(tmp_path: Path, sqlite_settings) -> None:
    missing = Platform(replace(sqlite_settings, audit_key_file=tmp_path / "nowhere.pem"))
    try:
        with pytest.raises(InvalidInputError, match=r"nowhere\.pem does not exist"):
            missing.registry.create_project(OWNER, "p")
    finally:
        missing.close()
    shared = tmp_path / "shared.pem"
    shared.write_bytes(b"whatever it holds, it is exposed")
    os.chmod(shared, 0o644)
    exposed = Platform(replace(sqlite_settings, audit_key_file=shared))
    try:
        with pytest.raises(InvalidInputError, match="readable by others") as raised:
            exposed.registry.create_project(OWNER, "p")
        assert "chmod 600" in raised.value.hint
    finally:
        exposed.close()


# -- append-only rows -----------------------------------------------------------------------------


def test_the_application_role_cannot_update_or_delete_entries(platform: Platform) -> None:
    platform.registry.create_project(OWNER, "kept")
    statements = ["UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"]
    if platform.db.dialect == "postgresql":
        statements.append("TRUNCATE audit_events")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), platform.db.engine.begin() as connection:
            connection.execute(text(statement))
    assert platform.audit.verify(OWNER).ok and head_entry(platform)["actor"] == OWNER.name


# -- forged, rehashed and re-signed entries ------------------------------------------------------------


def test_a_forged_entry_appended_with_a_correct_hash_is_named(platform: Platform, demo_project: Path) -> None:
    head = make_chain(platform, demo_project)
    last = head_entry(platform)
    forged = {
        **{field: None for field in ("address", "environment", "before")},
        "seq": head + 1,
        "at": datetime.now(UTC).isoformat(),
        "actor": "abe",
        "action": "version.approve",
        "target": f"{PROJECT}:v1",
        "outcome": "allowed",
        "after": {"digest": "x"},
        "details": {},
        "prev_hash": last["hash"],
    }
    forged["hash"] = entry_hash(forged)
    with platform.db.transaction() as session:
        session.add(AuditEventRow(**forged))
    report = verify(platform)
    assert (report.ok, report.bad_seq) == (False, head + 1)
    assert report.problem.startswith(f"entry {head + 1} is not signed: it was not written by the control plane")

    raw(
        platform,
        "UPDATE audit_events SET signature = :signature WHERE seq = :seq",
        signature=Ed25519PrivateKey.generate().sign(forged["hash"].encode()).hex(),
        seq=head + 1,
    )
    report = verify(platform)
    assert (report.ok, report.bad_seq) == (False, head + 1)
    assert report.problem.startswith(f"entry {head + 1} has no valid signature")


def test_an_edit_with_the_rest_of_the_chain_rehashed_is_named(platform: Platform, demo_project: Path) -> None:
    head = make_chain(platform, demo_project)
    rewrite(platform, edit_seq=head - 5)
    report = verify(platform)
    assert (report.ok, report.bad_seq) == (False, head - 5)
    assert report.problem.startswith(f"entry {head - 5} has no valid signature: it was rewritten and rehashed")


def test_signatures_replaced_with_a_key_of_the_attackers_own_are_named(platform: Platform, demo_project: Path) -> None:
    make_chain(platform, demo_project)
    rewrite(platform, edit_seq=4, key=Ed25519PrivateKey.generate())
    fresh = restarted(platform)
    try:
        report = verify(fresh)
    finally:
        fresh.close()
    assert (report.ok, report.bad_seq) == (False, 1)
    assert report.problem.startswith("entry 1 has no valid signature")


def test_entries_from_before_the_key_are_vouched_for_by_an_anchor(platform: Platform) -> None:
    for name in ("old-1", "old-2"):
        platform.registry.create_project(OWNER, name)
    # A store that predates signing: no signatures, no key, no anchors yet.
    raw(platform, "UPDATE audit_events SET signature = NULL")
    settings = platform.settings
    platform.close()
    settings.audit_key_path.unlink()
    for anchor in Path(settings.audit_anchors_location).glob("*.json"):
        anchor.unlink()
    upgraded = Platform(settings)
    try:
        upgraded.registry.create_project(OWNER, "new")  # creates the key, anchoring entries 1-2 as they are
        report = upgraded.audit.verify(OWNER)
        assert report.ok, report.problem
        assert report.head_seq == 3
        drop_triggers(upgraded)
        with upgraded.db.engine.begin() as connection:
            connection.execute(text("UPDATE audit_events SET signature = NULL WHERE seq = 3"))
        report = upgraded.audit.verify(OWNER)
        assert (report.ok, report.bad_seq) == (False, 3)
        assert report.problem.startswith("entry 3 is not signed")
    finally:
        upgraded.close()


# -- rows the chain must vouch for ----------------------------------------------------------------------


def _to_test(platform: Platform, demo_project: Path) -> None:
    dana = actor(platform, "dana")
    train(platform, demo_project)
    platform.deployments.deploy(dana, PROJECT, 1, "dev")
    serve_champion(platform, PROJECT, "dev")
    platform.promotions.promote(dana, PROJECT, 1, "test")


def test_a_sign_off_inserted_without_an_audit_entry_does_not_count(platform: Platform, demo_project: Path) -> None:
    create_users(platform)
    _to_test(platform, demo_project)
    platform.approvals.decide(actor(platform, "abe"), PROJECT, 1, "prod", "approve", "fine")
    with platform.db.reader() as session:
        genuine = session.query(ApprovalRow).one()
        digest, genuine_seq = genuine.digest, genuine.audit_seq
    now = datetime.now(UTC)
    fields = {
        "project": PROJECT,
        "version_number": 1,
        "digest": digest,
        "environment": "prod",
        "decision": "approve",
        "actor": "amy",
        "actor_roles": ["approver"],
        "comment": "",
        "created_at": now,
    }
    with platform.db.transaction() as session:
        session.add(ApprovalRow(**fields))  # no audit entry at all
        session.add(ApprovalRow(**fields, audit_seq=genuine_seq))  # borrows abe's entry

    with pytest.raises(PromotionRefusedError, match="approvals: v1 has 1 valid approval"):
        platform.promotions.promote(actor(platform, "olga"), PROJECT, 1, "prod")
    report = verify(platform)
    assert not report.ok
    problems = [p for p in report.problems if p.startswith("approval ")]
    assert problems == [
        "approval 2 (amy approves breast-cancer v1 for prod) has no audit entry: it was written behind the "
        "platform's back and does not count",
        f"approval 3 (amy approves breast-cancer v1 for prod) does not match its audit entry {genuine_seq} "
        "(actor, comment, expires_at differ): it was edited or inserted behind the platform's back and does not count",
    ]


def test_history_and_promotion_rows_without_an_audit_entry_are_named(platform: Platform, demo_project: Path) -> None:
    create_users(platform)
    dana = actor(platform, "dana")
    train(platform, demo_project)
    platform.deployments.deploy(dana, PROJECT, 1, "dev")
    with platform.db.reader() as session:
        dev_event = session.query(DeploymentEventRow).one()
        deployment_id, state = dev_event.deployment_id, dev_event.state
    # The attacker claims v1 served in test and was promoted to prod.
    with platform.db.transaction() as session:
        session.add(
            DeploymentEventRow(
                deployment_id=deployment_id,
                project=PROJECT,
                environment="test",
                revision=1,
                action="deploy",
                champion=1,
                state=state,
                details={},
                actor="dana",
            )
        )
        session.add(
            PromotionRow(
                project=PROJECT,
                version_number=1,
                digest=state["champion"]["digest"],
                from_environment="test",
                to_environment="prod",
                outcome="promoted",
                gates=[],
                actor="olga",
            )
        )
    assert [entry.environment for entry in platform.history.history(SYSTEM, PROJECT)] == ["dev"]
    with pytest.raises(PromotionRefusedError, match="order: v1 has never served in test"):
        platform.promotions.promote(actor(platform, "olga"), PROJECT, 1, "prod")
    report = verify(platform)
    assert not report.ok
    assert any(
        p.startswith("deployment event 2 (dana: deploy breast-cancer in test, revision 1) has no audit entry")
        for p in report.problems
    )
    assert any(
        p.startswith("promotion 1 (olga: breast-cancer v1 to prod, promoted) has no audit entry")
        for p in report.problems
    )


# -- exports, offline ------------------------------------------------------------------------


def test_an_export_is_verified_offline_with_the_public_key_alone(platform: Platform, demo_project: Path) -> None:
    head = make_chain(platform, demo_project)
    audrey = actor(platform, "audrey")
    key = parse_public_key(platform.audit.public_key_pem(audrey).encode())
    export = platform.audit.export(audrey, format="jsonl")
    report = verify_export(export, key)
    assert report.ok and report.signed, report.problem
    assert report.anchored_seq == head
    assert verify_export(platform.audit.export(audrey, format="csv"), key).ok

    lines = export.splitlines()
    trailer = json.loads(lines[-1])["_trailer"]

    # The trailer edited to match an export cut short: its signature no longer holds.
    edited = {**trailer, "chain_head": {"seq": head - 1, "hash": json.loads(lines[-3])["hash"]}}
    cut = [*lines[:-2], json.dumps({"_trailer": edited})]
    report = verify_export("\n".join(cut), key)
    assert not report.ok and report.problem.startswith("the export's trailer has no valid signature")
    assert verify_export("\n".join(cut)).ok, "without the key, only the hash chain is checked"

    # Cut short with the signed trailer kept: named.
    report = verify_export("\n".join(lines[:-2] + lines[-1:]), key)
    assert (report.ok, report.bad_seq) == (False, head)

    # An entry edited and rehashed in the file: its signature fails.
    entry = json.loads(lines[2])
    entry["actor"] = "mallory"
    entry["hash"] = entry_hash(entry)
    report = verify_export("\n".join([*lines[:2], json.dumps(entry), *lines[3:]]), key)
    assert (report.ok, report.bad_seq) == (False, 3)

    # The whole file re-made and re-signed with another key: the right public key refuses it.
    impostor = Ed25519PrivateKey.generate()
    resigned = [
        json.dumps({**json.loads(line), "signature": impostor.sign(json.loads(line)["hash"].encode()).hex()})
        for line in lines[:-1]
    ]
    resigned.append(json.dumps({"_trailer": signed_document(impostor, trailer)}))
    report = verify_export("\n".join(resigned), key)
    assert not report.ok and f"it names key {trailer['key_id']}" in report.problem


@pytest.mark.slow
def test_cli_public_key_and_verify_export(sqlite_settings, demo_project) -> None:
    platform = Platform(sqlite_settings)
    try:
        make_chain(platform, demo_project)
    finally:
        platform.close()
    home = sqlite_settings.home
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(home)
    # The store has users (it is shared): an embedded CLI reads it only through the audited break glass.
    env["HARBOURMASTER_BREAK_GLASS"] = "auditor checks an export offline"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "harbourmaster", "audit", *args],
            env=env,
            cwd=home.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )

    key_file, export = home.parent / "audit.pub", home.parent / "audit.jsonl"
    assert cli("public-key", "-o", str(key_file)).returncode == 0
    assert cli("export", "-o", str(export)).returncode == 0
    checked = cli("verify-export", str(export), "--public-key", str(key_file))
    assert checked.returncode == 0, checked.stderr
    assert "Export intact" in checked.stdout and "signed by the key given" in checked.stdout
    lines = export.read_text().splitlines()
    export.write_text("\n".join(lines[:-2] + lines[-1:]) + "\n")
    broken = cli("verify-export", str(export), "--public-key", str(key_file))
    output = " ".join((broken.stdout + broken.stderr).split())
    assert broken.returncode == 1 and "export broken: the export ends at entry" in output, output
    assert "Traceback" not in output


def test_tables_created_without_migrations_are_append_only_too(settings) -> None:
    from harbourmaster.store.db import create_database_engine
    from harbourmaster.store.tables import Base

    engine = create_database_engine(settings.database_url)
    try:
        Base.metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO audit_events (seq, at, actor, action, target, outcome, details, prev_hash, hash) "
                    "VALUES (1, 'now', 'a', 'b', 'c', 'allowed', '{}', 'p', 'h')"
                )
            )
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_events"))
    finally:
        engine.dispose()


def test_audit_settings_are_read_and_checked(tmp_path: Path) -> None:
    from harbourmaster.config import Settings

    settings = Settings.from_env(
        {
            "HARBOURMASTER_HOME": str(tmp_path),
            "HARBOURMASTER_AUDIT_KEY_FILE": str(tmp_path / "k.pem"),
            "HARBOURMASTER_AUDIT_ANCHORS_URL": "s3://bucket/anchors",
            "HARBOURMASTER_AUDIT_ANCHOR_INTERVAL": "15",
        }
    )
    assert (settings.audit_key_path, settings.audit_anchors_location) == (tmp_path / "k.pem", "s3://bucket/anchors")
    assert settings.audit_anchor_interval == 15.0
    defaults = Settings.from_env({"HARBOURMASTER_HOME": str(tmp_path)})
    assert defaults.audit_key_path == tmp_path / "audit" / "signing-key.pem"
    assert defaults.audit_anchors_location == str(tmp_path / "audit" / "anchors")
    for bad in ("soon", "0", "-5"):
        with pytest.raises(InvalidInputError, match="HARBOURMASTER_AUDIT_ANCHOR_INTERVAL"):
            Settings.from_env({"HARBOURMASTER_HOME": str(tmp_path), "HARBOURMASTER_AUDIT_ANCHOR_INTERVAL": bad})


def test_a_store_from_before_signing_upgrades_intact(platform: Platform, demo_project: Path) -> None:
    """Taken back to revision 0004 (no signatures, links, key or anchors), a store upgrades on start:
    its old rows are linked to their entries, a signed anchor vouches for the unsigned entries."""
    from alembic import command
    from alembic.config import Config

    from harbourmaster.store.db import MIGRATIONS_DIR, create_database_engine

    create_users(platform)
    _to_test(platform, demo_project)
    platform.approvals.decide(actor(platform, "abe"), PROJECT, 1, "prod", "approve", "fine")
    settings = platform.settings
    platform.close()
    engine = create_database_engine(settings.database_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0004")
    finally:
        engine.dispose()
    settings.audit_key_path.unlink()
    for anchor in Path(settings.audit_anchors_location).glob("*.json"):
        anchor.unlink()

    upgraded = Platform(settings)
    try:
        report = verify(upgraded)
        assert report.ok, report.problems
        with upgraded.db.reader() as session:
            for model in (ApprovalRow, PromotionRow, DeploymentEventRow):
                assert all(row.audit_seq for row in session.query(model)), model.__tablename__
        [gate] = [v for v in upgraded.promotions.check(SYSTEM, PROJECT, 1, "prod") if v.gate == "approvals"]
        assert "1 valid approval" in gate.reason
        assert [entry.environment for entry in upgraded.history.history(SYSTEM, PROJECT)] == ["test", "dev"]
    finally:
        upgraded.close()
