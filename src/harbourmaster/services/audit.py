"""The tamper-evident audit log: append (signed) in the caller's transaction, anchor, verify, export.

Three layers, each for a stronger attacker (see docs/governance.md, "Threat model"):
the hash chain names careless edits; the database triggers keep the application's
own role from updating or deleting entries; the Ed25519 signatures and the signed
anchors, made with a key only the control plane holds, name what an attacker with
owner rights on the database did after dropping the triggers.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from harbourmaster.core.audit_chain import (
    GENESIS,
    HASHED_FIELDS,
    ChainReport,
    check_anchors,
    document_signature_valid,
    entry_hash,
    entry_signature_valid,
    key_id,
    public_key_pem,
    sign,
    signed_document,
    unsigned_prefix,
    verify_chain,
)
from harbourmaster.core.permissions import Permission
from harbourmaster.core.progress import SILENT, Progress, counted
from harbourmaster.errors import InvalidInputError
from harbourmaster.services.actors import Actor
from harbourmaster.services.audit_links import LinkedRow, link_problem, row_label
from harbourmaster.store.audit_anchors import AnchorStore
from harbourmaster.store.audit_keys import load_or_create_signing_key
from harbourmaster.store.tables import ApprovalRow, AuditEventRow, DeploymentEventRow, PromotionRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

log = logging.getLogger(__name__)

# Any constant: every appender takes this PostgreSQL advisory lock, so seq and prev_hash stay a chain.
AUDIT_LOCK_KEY = 4242002
EXPORT_FORMATS = ("jsonl", "csv")
ENTRY_FIELDS = (*HASHED_FIELDS, "hash", "signature")
_PENDING = "harbourmaster.audit.pending"
Row = TypeVar("Row", bound=LinkedRow)


def row_entry(row: AuditEventRow) -> dict[str, Any]:
    return {field: getattr(row, field) for field in ENTRY_FIELDS}


def _json_ready(value: Any) -> Any:
    # Stored JSON must hash the same after a round trip through the database.
    return json.loads(json.dumps(value, default=str)) if value is not None else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class AuditService:
    """Appends signed audit entries inside the transaction of the change they record."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._lock = threading.Lock()
        self._key: Ed25519PrivateKey | None = None
        self._unsigned_upto: int | None = None
        # The newest entry this process signed and saw committed: a head no one can cut off unseen.
        self._mark: tuple[int, str, str] | None = None
        settings = platform.settings
        self.anchors = AnchorStore(settings.audit_anchors_location, settings.storage_options)

    # -- the key ----------------------------------------------------------------------

    def _signing_key(self) -> Ed25519PrivateKey:
        if self._key is not None:
            return self._key
        with self._lock:
            if self._key is None:
                settings = self._platform.settings
                key, created = load_or_create_signing_key(
                    settings.audit_key_path, create=settings.audit_key_file is None
                )
                self._key = key
                if created:
                    self._adopt_unsigned_entries()
        return self._key

    def public_key(self) -> Ed25519PublicKey:
        return self._signing_key().public_key()

    def public_key_pem(self, actor: Actor) -> str:
        """The PEM public key that verifies entries, anchors and exports (auditors and admins)."""
        self._platform.access.require(actor, Permission.AUDIT, target="audit log")
        return public_key_pem(self.public_key())

    def _adopt_unsigned_entries(self) -> None:
        """A store that had entries before it had a key: anchor them, so they stay vouched for."""
        head = self._head()
        if head is None:
            return
        assert self._key is not None
        document = {
            "seq": head[0],
            "hash": head[1],
            "at": _now(),
            "count": head[3],
            "reason": "key created: entries up to here predate signing",
            "key_id": key_id(self._key.public_key()),
            "unsigned_upto": head[0],
        }
        self.anchors.write(signed_document(self._key, document))

    # -- appending ----------------------------------------------------------------------

    def record(
        self,
        session: Session,
        actor: Actor,
        action: str,
        target: str,
        *,
        outcome: str = "allowed",
        environment: str | None = None,
        before: Any = None,
        after: Any = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one signed entry in ``session``'s transaction; returns its seq."""
        key = self._signing_key()
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(AUDIT_LOCK_KEY)))
        last = session.execute(
            select(AuditEventRow.seq, AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)
        ).first()
        entry = {
            "seq": (last.seq + 1) if last else 1,
            "at": _now(),
            "actor": actor.name,
            "address": actor.address,
            "action": action,
            "target": target,
            "environment": environment,
            "outcome": outcome,
            "before": _json_ready(before),
            "after": _json_ready(after),
            "details": _json_ready(details or {}),
            "prev_hash": last.hash if last else GENESIS,
        }
        entry["hash"] = entry_hash(entry)
        entry["signature"] = sign(key, entry["hash"].encode())
        session.add(AuditEventRow(**entry))
        session.flush()
        changes_guarded = (
            environment is not None
            and outcome == "allowed"
            and (before is not None or after is not None)
            and self._platform.access.is_guarded(environment, session)
        )
        self._after_commit(session, entry["seq"], entry["hash"], anchor=changes_guarded)
        return entry["seq"]

    def record_alone(self, actor: Actor, action: str, target: str, **kwargs: Any) -> int:
        """Append in a transaction of its own (for refusals: the change itself never happened)."""
        with self._platform.db.transaction() as session:
            return self.record(session, actor, action, target, **kwargs)

    def _after_commit(self, session: Session, seq: int, hash_: str, *, anchor: bool) -> None:
        pending = session.info.get(_PENDING)
        if pending is None:
            pending = session.info[_PENDING] = {"seq": 0, "hash": "", "anchor": False}
            event.listen(session, "after_commit", self._committed)
            event.listen(session, "after_rollback", lambda s: s.info.pop(_PENDING, None))
        if seq > pending["seq"]:
            pending.update(seq=seq, hash=hash_)
        pending["anchor"] = pending["anchor"] or anchor

    def _committed(self, session: Session) -> None:
        pending = session.info.pop(_PENDING, None)
        if not pending or not pending["seq"]:
            return
        with self._lock:
            if self._mark is None or pending["seq"] > self._mark[0]:
                self._mark = (pending["seq"], pending["hash"], _now())
        if pending["anchor"]:
            try:
                self.anchor("state change in a guarded environment")
            except Exception:  # the change is committed; a missing anchor must not fail it
                log.exception("could not write an audit anchor after a guarded change")

    # -- anchoring ---------------------------------------------------------------------

    def anchor(self, reason: str) -> dict[str, Any] | None:
        """Write a signed anchor of the newest entry this control plane can vouch for.

        That is the table's head if it carries a valid signature and does not fall short of
        what this process signed itself; else this process's own newest entry. Returns the
        anchor (None when there is nothing to anchor, or that head is anchored already).
        """
        key = self._signing_key()
        head = self._head()
        mark = self._mark
        chosen: tuple[int, str] | None = None
        if head is not None:
            seq, hash_, signature, _count = head
            authentic = entry_signature_valid(key.public_key(), {"hash": hash_, "signature": signature})
            if authentic and (mark is None or seq > mark[0] or (seq, hash_) == mark[:2]):
                chosen = (seq, hash_)
        if chosen is None and mark is not None:
            chosen = mark[:2]
        if chosen is None:
            return None
        document = signed_document(
            key,
            {
                "seq": chosen[0],
                "hash": chosen[1],
                "at": _now(),
                "count": head[3] if head else 0,
                "reason": reason,
                "key_id": key_id(key.public_key()),
                "unsigned_upto": 0,
            },
        )
        return document if self.anchors.write(document) else None

    def start_anchoring(self, interval: float | None = None) -> AnchorScheduler:
        """Anchor every ``interval`` seconds (default: the settings') in a background thread."""
        self._signing_key()  # generated on the control plane's first start, not on its first write
        scheduler = AnchorScheduler(self, interval or self._platform.settings.audit_anchor_interval)
        scheduler.start()
        return scheduler

    def _head(self) -> tuple[int, str, str | None, int] | None:
        """The newest entry's seq, hash and signature, and the number of rows."""
        with self._platform.db.reader() as session:
            last = session.execute(
                select(AuditEventRow.seq, AuditEventRow.hash, AuditEventRow.signature)
                .order_by(AuditEventRow.seq.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            count = session.scalar(select(func.count()).select_from(AuditEventRow)) or 0
        return last.seq, last.hash, last.signature, count

    # -- verification --------------------------------------------------------------------

    def verify(self, actor: Actor, progress: Progress = SILENT) -> ChainReport:
        """Check chain, signatures, anchors and the rows that claim an entry; anchor the head if all hold."""
        self._platform.access.require(actor, Permission.AUDIT, target="audit log")
        progress.stage("reading the audit log")
        report = self._verify(list(self._entries()), progress)
        if report.ok:
            self.anchor("verified")
        return report

    def _verify(self, entries: list[dict[str, Any]], progress: Progress = SILENT) -> ChainReport:
        key = self.public_key()
        anchors = self.anchors.read_all()
        mark = self._mark
        if mark is not None:  # what this very process signed counts as an anchor of its own
            anchors.append(
                {
                    **signed_document(
                        self._signing_key(),
                        {"seq": mark[0], "hash": mark[1], "at": mark[2], "reason": "signed by this control plane"},
                    ),
                    "_name": "in memory",
                }
            )
        progress.stage(f"verifying {len(entries)} entries")
        report = verify_chain(counted(entries, progress), public_key=key, unsigned_upto=unsigned_prefix(key, anchors))
        last_seq = entries[-1]["seq"] if entries else 0
        anchored = check_anchors(key, anchors, {e["seq"]: e["hash"] for e in entries}, last_seq)
        report = report.with_problems(anchored.problems, anchored.bad_seq)
        report = report.with_problems(self._link_problems(entries, anchored.unsigned_upto))
        return ChainReport(**{**report.__dict__, "anchored_seq": anchored.anchored_seq})

    def _link_problems(self, entries: list[dict[str, Any]], unsigned_upto: int) -> list[str]:
        """Approvals, promotions and deployment events must each match the audit entry they name."""
        by_seq = {entry["seq"]: entry for entry in entries}
        problems = []
        linked: dict[str, set[int]] = {}
        with self._platform.db.reader() as session:
            for model in (ApprovalRow, PromotionRow, DeploymentEventRow):
                for row in session.scalars(select(model).order_by(model.id)):
                    linked.setdefault(model.__tablename__, set()).add(row.audit_seq)
                    problem = link_problem(row, self._authentic(by_seq.get(row.audit_seq), unsigned_upto))
                    if problem:
                        problems.append(f"{row_label(row)} {problem}")
        # And the other way round: each signed entry that recorded such a row must still have it.
        for entry in entries:
            table = _linked_table(entry)
            if table and entry["seq"] not in linked.get(table, set()) and self._authentic(entry, 0):
                problems.append(
                    f"entry {entry['seq']} ({entry['action']} by {entry['actor']}, {entry['target']} in "
                    f"{entry['environment']}) has no row in {table}: the row was deleted behind the platform's back"
                )
        return problems

    def _authentic(self, entry: dict[str, Any] | None, unsigned_upto: int) -> dict[str, Any] | None:
        if entry is None or entry_hash(entry) != entry["hash"]:
            return None
        if entry.get("signature") is None and entry["seq"] <= unsigned_upto:
            return entry
        return entry if entry_signature_valid(self.public_key(), entry) else None

    def confirmed(self, session: Session, rows: Iterable[Row]) -> list[Row]:
        """The rows that match their signed audit entry (what gates and history may count)."""
        rows = list(rows)
        seqs = {row.audit_seq for row in rows if row.audit_seq is not None}
        if not seqs:
            return []
        found = session.scalars(select(AuditEventRow).where(AuditEventRow.seq.in_(seqs)))
        by_seq = {row.seq: row_entry(row) for row in found}
        unsigned_upto = self._vouched_unsigned()
        return [
            row for row in rows if link_problem(row, self._authentic(by_seq.get(row.audit_seq), unsigned_upto)) is None
        ]

    def _vouched_unsigned(self) -> int:
        if self._unsigned_upto is None:
            self._unsigned_upto = unsigned_prefix(self.public_key(), self.anchors.read_all())
        return self._unsigned_upto

    # -- reading and exporting -------------------------------------------------------------

    def entries(self, actor: Actor, since: datetime | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        self._platform.access.require(actor, Permission.AUDIT, target="audit log")
        selected = [entry for entry in self._entries() if since is None or _parse_at(entry["at"]) >= since]
        return selected[-limit:] if limit else selected

    def search(
        self,
        actor: Actor,
        *,
        action: str | None = None,
        by: str | None = None,
        target: str | None = None,
        environment: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of entries, newest first, and how many match: ``action`` is a prefix (``version.``),
        ``target`` a substring, the others exact; ``since``/``until`` bound the time. For the console.

        Keyset paging: with ``before_seq`` the page is the ``limit`` newest matching entries older than
        that entry, with ``after_seq`` the ``limit`` oldest newer than it (``offset`` is then ignored), so
        that the last pages of a long log cost what the first does."""
        self._platform.access.require(actor, Permission.AUDIT, target="audit log")
        conditions = []
        if action:
            conditions.append(AuditEventRow.action.startswith(action, autoescape=True))
        if by:
            conditions.append(AuditEventRow.actor == by)
        if target:
            conditions.append(AuditEventRow.target.contains(target, autoescape=True))
        if environment:
            conditions.append(AuditEventRow.environment == environment)
        if outcome:
            conditions.append(AuditEventRow.outcome == outcome)
        if since is not None:  # ``at`` is ISO 8601 in UTC with microseconds: ordered as text
            conditions.append(AuditEventRow.at >= since.astimezone(UTC).isoformat(timespec="microseconds"))
        if until is not None:
            conditions.append(AuditEventRow.at < until.astimezone(UTC).isoformat(timespec="microseconds"))
        with self._platform.db.reader() as session:
            total = session.scalar(select(func.count()).select_from(AuditEventRow).where(*conditions)) or 0
            query = select(AuditEventRow).where(*conditions).limit(max(1, limit))
            if after_seq is not None:
                query = query.where(AuditEventRow.seq > after_seq).order_by(AuditEventRow.seq.asc())
                return [row_entry(row) for row in reversed(list(session.scalars(query)))], total
            if before_seq is not None:
                query = query.where(AuditEventRow.seq < before_seq)
            else:
                query = query.offset(max(0, offset))
            rows = session.scalars(query.order_by(AuditEventRow.seq.desc()))
            return [row_entry(row) for row in rows], total

    def export(
        self, actor: Actor, since: datetime | None = None, format: str = "jsonl", progress: Progress = SILENT
    ) -> str:
        """Entries since a time with their signatures, plus a signed trailer (head, anchors, key id):
        verifiable offline with the public key alone (stages and entry counts to ``progress``)."""
        if format not in EXPORT_FORMATS:
            raise InvalidInputError(f"export format {format!r} is unknown", "use jsonl or csv")
        self._platform.access.require(actor, Permission.AUDIT, target="audit log")
        details = {"since": str(since), "format": format}
        try:
            # One read for both: the trailer's head must be the last exported entry, even with writers running.
            progress.stage("reading the audit log")
            everything = list(self._entries())
            whole = self._verify(everything, progress)
            entries = [entry for entry in everything if since is None or _parse_at(entry["at"]) >= since]
            key = self._signing_key()
            anchors = [
                {name: value for name, value in anchor.items() if not name.startswith("_")}
                for anchor in self.anchors.read_all()
                if document_signature_valid(key.public_key(), anchor) and int(anchor["seq"]) <= whole.head_seq
            ]
        except Exception as exc:  # a failed export is logged as failed, never as allowed
            self.record_alone(
                actor, "audit.export", "audit log", outcome="failed", details={**details, "error": repr(exc)[:500]}
            )
            raise
        self.record_alone(actor, "audit.export", "audit log", details={**details, "exported": len(entries)})
        trailer = signed_document(
            key,
            {
                "chain_head": {"seq": whole.head_seq, "hash": whole.head_hash},
                "chain_verified": whole.ok,
                "chain_problem": whole.problem,
                "exported": len(entries),
                "first_seq": entries[0]["seq"] if entries else None,
                "exported_at": _now(),
                "exported_by": actor.name,
                "key_id": key_id(key.public_key()),
                "anchors": anchors,
            },
        )
        progress.stage(f"writing {len(entries)} entries as {format}")
        if format == "jsonl":
            lines = [json.dumps(entry, sort_keys=True) for entry in counted(entries, progress)]
            lines.append(json.dumps({"_trailer": trailer}, sort_keys=True))
            return "\n".join(lines) + "\n"
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        columns = list(ENTRY_FIELDS)
        writer.writerow(columns)
        for entry in counted(entries, progress):
            writer.writerow(
                [
                    json.dumps(entry[c], sort_keys=True) if c in ("before", "after", "details") else entry[c]
                    for c in columns
                ]
            )
        writer.writerow(["#trailer", json.dumps(trailer, sort_keys=True)])
        return buffer.getvalue()

    def _entries(self) -> Iterator[dict[str, Any]]:
        with self._platform.db.reader() as session:
            for row in session.scalars(select(AuditEventRow).order_by(AuditEventRow.seq)):
                yield row_entry(row)


class AnchorScheduler(threading.Thread):
    """Writes an anchor every ``interval`` seconds until stopped, then one last one."""

    def __init__(self, audit: AuditService, interval: float) -> None:
        super().__init__(name="audit-anchoring", daemon=True)
        self._audit = audit
        self._interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            self._anchor("scheduled")

    def stop(self, timeout: float = 30.0) -> None:
        self._stopped.set()
        self.join(timeout)
        self._anchor("control plane stopped")

    def _anchor(self, reason: str) -> None:
        try:
            self._audit.anchor(reason)
        except Exception:  # a database or storage hiccup: try again next round
            log.exception("could not write a scheduled audit anchor")


def _linked_table(entry: dict[str, Any]) -> str | None:
    """The table in which this (allowed) entry's change was also written with its ``audit_seq``, if any."""
    action, after, details = entry["action"], entry.get("after") or {}, entry.get("details") or {}
    if entry.get("signature") is None:
        return None  # from before the store signed entries (and linked rows)
    if action in ("version.approve", "version.reject") and entry["outcome"] == "allowed" and "digest" in after:
        return ApprovalRow.__tablename__
    if action == "version.promote" and "promotion_id" in details:
        return PromotionRow.__tablename__
    if action.startswith("deployment.") and entry["outcome"] == "allowed" and "revision" in after:
        return DeploymentEventRow.__tablename__
    return None


def _parse_export(text: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    text = text.strip()
    entries: list[dict[str, Any]] = []
    trailer: dict[str, Any] | None = None
    if text.startswith("{"):
        for line in text.splitlines():
            item = json.loads(line)
            if "_trailer" in item:
                trailer = item["_trailer"]
            else:
                entries.append(item)
        return entries, trailer
    reader = csv.reader(io.StringIO(text))
    columns = next(reader)
    for record in reader:
        if record and record[0] == "#trailer":
            trailer = json.loads(record[1])
            continue
        entry: dict[str, Any] = dict(zip(columns, record, strict=True))
        for key in ("before", "after", "details"):
            entry[key] = json.loads(entry[key])
        entry["seq"] = int(entry["seq"])
        for key in ("address", "environment", "signature"):
            entry[key] = entry.get(key) or None
        entries.append(entry)
    return entries, trailer


def verify_export(text: str, public_key: Ed25519PublicKey | None = None) -> ChainReport:
    """Verify an exported file (JSONL or CSV) on its own: the segment must chain and end at the head.

    With the control plane's ``public_key`` (``harbourmaster audit public-key``) the check is
    complete offline: every entry's signature, the trailer's signature and the anchors in it.
    Without it only the hash chain is checked, which whoever made the file could recompute.
    """
    entries, trailer = _parse_export(text)
    if trailer is None:
        return ChainReport(False, 0, 0, GENESIS, "the export has no trailer with the chain head", None)
    if public_key is not None and not document_signature_valid(public_key, trailer):
        problem = (
            "the export's trailer has no valid signature: the trailer was altered, or the file was not made by "
            f"the control plane whose key is {key_id(public_key)} (it names key {trailer.get('key_id')})"
        )
        return ChainReport(False, 0, 0, GENESIS, problem, None, (problem,), signed=True)
    if not entries:
        if trailer.get("exported"):
            first = trailer.get("first_seq")
            return ChainReport(False, 0, 0, GENESIS, f"entries from entry {first} on removed from the export", first)
        return ChainReport(True, 0, 0, GENESIS, signed=public_key is not None)
    if trailer.get("first_seq") is not None and entries[0]["seq"] != trailer["first_seq"]:
        first = trailer["first_seq"]
        return ChainReport(
            False, 0, 0, GENESIS, f"the export should start at entry {first} but starts at {entries[0]['seq']}", first
        )
    anchors = list(trailer.get("anchors") or [])
    report = verify_chain(
        entries,
        start_seq=entries[0]["seq"],
        start_prev_hash=entries[0]["prev_hash"],
        public_key=public_key,
        unsigned_upto=unsigned_prefix(public_key, anchors) if public_key else 0,
    )
    if not report.ok:
        return report
    head = trailer["chain_head"]
    if head["seq"] != report.head_seq:
        return ChainReport(
            False,
            report.checked,
            report.head_seq,
            report.head_hash,
            f"the export ends at entry {report.head_seq} but the chain head in the trailer is entry {head['seq']}",
            report.head_seq + 1,
        )
    if head["hash"] != report.head_hash:
        return ChainReport(
            False,
            report.checked,
            report.head_seq,
            report.head_hash,
            "the last exported entry does not match the chain head in the trailer",
            report.head_seq,
        )
    if public_key is not None:
        anchored = check_anchors(public_key, anchors, {e["seq"]: e["hash"] for e in entries}, report.head_seq)
        report = report.with_problems(anchored.problems, anchored.bad_seq)
        report = ChainReport(**{**report.__dict__, "anchored_seq": anchored.anchored_seq})
    if trailer.get("chain_verified") is False:  # the whole chain failed when exported, maybe outside this segment
        report = report.with_problems(
            [f"the control plane found its chain broken when it made this export: {trailer.get('chain_problem')}"]
        )
    return report


def _parse_at(value: str) -> datetime:
    return datetime.fromisoformat(value)
