"""The tamper-evident audit log: append in the caller's transaction, verify, export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbourmaster.core.audit_chain import GENESIS, HASHED_FIELDS, ChainReport, entry_hash, verify_chain
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import InvalidInputError
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import AuditEventRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

# Any constant: every appender takes this PostgreSQL advisory lock, so seq and prev_hash stay a chain.
AUDIT_LOCK_KEY = 4242002
EXPORT_FORMATS = ("jsonl", "csv")
ANCHOR_PREFIX = "audit/anchors/"


ENTRY_FIELDS = (*HASHED_FIELDS, "hash")


def row_entry(row: AuditEventRow) -> dict[str, Any]:
    return {field: getattr(row, field) for field in ENTRY_FIELDS}


def _json_ready(value: Any) -> Any:
    # Stored JSON must hash the same after a round trip through the database.
    return json.loads(json.dumps(value, default=str)) if value is not None else None


class AuditService:
    """Appends audit entries inside the transaction of the change they record."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

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
        """Append one entry in ``session``'s transaction; returns its seq."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(_advisory_lock(AUDIT_LOCK_KEY)))
        last = session.execute(
            select(AuditEventRow.seq, AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)
        ).first()
        entry = {
            "seq": (last.seq + 1) if last else 1,
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
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
        session.add(AuditEventRow(**entry))
        session.flush()
        return entry["seq"]

    def record_alone(self, actor: Actor, action: str, target: str, **kwargs: Any) -> int:
        """Append in a transaction of its own (for refusals: the change itself never happened)."""
        with self._platform.db.transaction() as session:
            return self.record(session, actor, action, target, **kwargs)

    def verify(self, actor: Actor) -> ChainReport:
        """Check the chain, then check it still reaches every head anchored earlier; anchor the new head."""
        self._platform.access.require(actor, Permission.AUDIT, target="audit log")
        entries = list(self._entries())
        report = verify_chain(entries)
        if not report.ok:
            return report
        anchored = self._check_anchors(entries, report)
        if anchored is not None:
            return anchored
        self._anchor(report, actor)
        return report

    def _anchor(self, report: ChainReport, actor: Actor) -> None:
        """Keep the verified head outside the database (in the artifact store), so that cutting
        the newest entries off the table later shows: the chain no longer reaches the anchor."""
        if report.head_seq == 0:
            return
        key = f"{ANCHOR_PREFIX}{report.head_seq:012d}-{report.head_hash[:16]}.json"
        anchor = {
            "seq": report.head_seq,
            "hash": report.head_hash,
            "at": datetime.now(UTC).isoformat(),
            "by": actor.name,
        }
        self._platform.artifacts.put_bytes(key, json.dumps(anchor, sort_keys=True).encode())

    def _check_anchors(self, entries: list[dict[str, Any]], report: ChainReport) -> ChainReport | None:
        keys = self._platform.artifacts.list(ANCHOR_PREFIX)
        if not keys:
            return None
        anchor = json.loads(self._platform.artifacts.get_bytes(max(keys)))
        seq, expected = int(anchor["seq"]), anchor["hash"]
        if seq > report.head_seq:
            missing = f"entry {seq}" if seq == report.head_seq + 1 else f"entries {report.head_seq + 1}-{seq}"
            return ChainReport(
                False,
                report.checked,
                report.head_seq,
                report.head_hash,
                f"{missing} removed: the chain ends at entry {report.head_seq}, but entry {seq} was anchored "
                f"at {anchor['at']} by {anchor['by']}",
                report.head_seq + 1,
            )
        if entries[seq - 1]["hash"] != expected:
            return ChainReport(
                False,
                report.checked,
                report.head_seq,
                report.head_hash,
                f"entry {seq} differs from its anchor of {anchor['at']}: the chain was rewritten up to there",
                seq,
            )
        return None

    def entries(self, actor: Actor, since: datetime | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        self._platform.access.require(actor, Permission.AUDIT, target="audit log")
        selected = [entry for entry in self._entries() if since is None or _parse_at(entry["at"]) >= since]
        return selected[-limit:] if limit else selected

    def export(self, actor: Actor, since: datetime | None = None, format: str = "jsonl") -> str:
        """Entries since a time, plus the chain head, so the export can be verified on its own."""
        if format not in EXPORT_FORMATS:
            raise InvalidInputError(f"export format {format!r} is unknown", "use jsonl or csv")
        self._platform.access.require(actor, Permission.AUDIT, target="audit log")
        details = {"since": str(since), "format": format}
        try:
            # One read for both: the trailer's head must be the last exported entry, even with writers running.
            everything = list(self._entries())
            whole = verify_chain(everything)
            entries = [entry for entry in everything if since is None or _parse_at(entry["at"]) >= since]
            if whole.ok:
                self._anchor(whole, actor)
        except Exception as exc:  # a failed export is logged as failed, never as allowed
            self.record_alone(
                actor, "audit.export", "audit log", outcome="failed", details={**details, "error": repr(exc)[:500]}
            )
            raise
        self.record_alone(actor, "audit.export", "audit log", details={**details, "exported": len(entries)})
        trailer = {
            "chain_head": {"seq": whole.head_seq, "hash": whole.head_hash},
            "chain_verified": whole.ok,
            "chain_problem": whole.problem,
            "exported": len(entries),
            "first_seq": entries[0]["seq"] if entries else None,
            "exported_at": datetime.now(UTC).isoformat(),
            "exported_by": actor.name,
        }
        if format == "jsonl":
            lines = [json.dumps(entry, sort_keys=True) for entry in entries]
            lines.append(json.dumps({"_trailer": trailer}, sort_keys=True))
            return "\n".join(lines) + "\n"
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        columns = list(ENTRY_FIELDS)
        writer.writerow(columns)
        for entry in entries:
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


def verify_export(text: str) -> ChainReport:
    """Verify an exported file (JSONL or CSV) on its own: the segment must chain and end at the head."""
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
    else:
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
            for key in ("address", "environment"):
                entry[key] = entry[key] or None
            entries.append(entry)
    if trailer is None:
        return ChainReport(False, 0, 0, GENESIS, "the export has no trailer with the chain head", None)
    if not entries:
        if trailer.get("exported"):
            first = trailer.get("first_seq")
            return ChainReport(False, 0, 0, GENESIS, f"entries from entry {first} on removed from the export", first)
        return ChainReport(True, 0, 0, GENESIS)
    if trailer.get("first_seq") is not None and entries[0]["seq"] != trailer["first_seq"]:
        first = trailer["first_seq"]
        return ChainReport(
            False, 0, 0, GENESIS, f"the export should start at entry {first} but starts at {entries[0]['seq']}", first
        )
    report = verify_chain(entries, start_seq=entries[0]["seq"], start_prev_hash=entries[0]["prev_hash"])
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
    return report


def _parse_at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _advisory_lock(key: int) -> Any:
    from sqlalchemy import func

    return func.pg_advisory_xact_lock(key)
