"""Rows of other tables that the audit chain vouches for: sign-offs, promotions, deployment events.

Each such row carries the ``audit_seq`` of the entry that recorded it, written in the same
transaction. The approvals gate, the order gate and ``history`` count a row only if that
entry exists, is authentic (hash and signature) and says the same thing as the row; a row
inserted or edited behind the platform's back does not, and ``audit verify`` names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from harbourmaster.store.tables import ApprovalRow, DeploymentEventRow, PromotionRow


class LinkedRow(Protocol):
    id: int
    audit_seq: int | None


def row_label(row: Any) -> str:
    if isinstance(row, ApprovalRow):
        return (
            f"approval {row.id} ({row.actor} {row.decision}s {row.project} v{row.version_number} for {row.environment})"
        )
    if isinstance(row, PromotionRow):
        return (
            f"promotion {row.id} ({row.actor}: {row.project} v{row.version_number} to {row.to_environment}, "
            f"{row.outcome})"
        )
    if isinstance(row, DeploymentEventRow):
        return (
            f"deployment event {row.id} ({row.actor}: {row.action} {row.project} in {row.environment}, "
            f"revision {row.revision})"
        )
    return f"row {row.id}"


def link_problem(row: Any, entry: Mapping[str, Any] | None) -> str | None:
    """Why ``row`` is not vouched for by ``entry`` (its authentic audit entry, or None), or None if it is."""
    if row.audit_seq is None:
        return "has no audit entry: it was written behind the platform's back and does not count"
    if entry is None:
        return f"names audit entry {row.audit_seq}, which is missing or not authentic: it does not count"
    differences = [name for name, (stored, recorded) in _compare(row, entry).items() if stored != recorded]
    if differences:
        return (
            f"does not match its audit entry {row.audit_seq} ({', '.join(differences)} differ): "
            f"it was edited or inserted behind the platform's back and does not count"
        )
    return None


def _compare(row: Any, entry: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    after = entry.get("after") or {}
    details = entry.get("details") or {}
    common = {"actor": (row.actor, entry.get("actor"))}
    if isinstance(row, ApprovalRow):
        pairs = {
            "action": (f"version.{row.decision}", entry.get("action")),
            "outcome": ("allowed", entry.get("outcome")),
            "target": (f"{row.project}:v{row.version_number}", entry.get("target")),
            "environment": (row.environment, entry.get("environment")),
            "digest": (row.digest, after.get("digest")),
        }
        if "comment" in after:
            pairs["comment"] = (row.comment, after.get("comment"))
        if "expires_at" in after:
            pairs["expires_at"] = (row.expires_at, _time(after.get("expires_at")))
        return {**common, **pairs}
    if isinstance(row, PromotionRow):
        return {
            **common,
            "action": ("version.promote", entry.get("action")),
            "outcome": ("allowed" if row.outcome == "promoted" else "denied", entry.get("outcome")),
            "target": (f"{row.project}:v{row.version_number}", entry.get("target")),
            "environment": (row.to_environment, entry.get("environment")),
            "promotion": (row.id, details.get("promotion_id")),
        }
    if isinstance(row, DeploymentEventRow):
        return {
            **common,
            "action": (f"deployment.{row.action}", entry.get("action")),
            "target": (row.project, entry.get("target")),
            "environment": (row.environment, entry.get("environment")),
            "revision": (row.revision, after.get("revision")),
            "champion": ((row.state or {}).get("champion"), after.get("champion")),
        }
    raise TypeError(f"{type(row).__name__} is not linked to the audit log")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
