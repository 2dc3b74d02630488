"""audit signing

Revision ID: 0005
Revises: 0004

The signed audit chain: each entry's Ed25519 signature; approvals, promotions and
deployment events point at the audit entry that recorded them (existing rows are
linked to their matching entry here); and triggers make ``audit_events``
append-only for the application's database role.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

from harbourmaster.store.audit_guard import DROP, append_only_statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LINKED = ("approvals", "promotions", "deployment_events")


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("signature", sa.String(length=128), nullable=True))
    for table in LINKED:
        op.add_column(table, sa.Column("audit_seq", sa.Integer(), nullable=True))
    _link_existing_rows(op.get_bind())
    for statement in append_only_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP.get(op.get_bind().dialect.name, []):
        op.execute(statement)
    for table in LINKED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("audit_seq")
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_column("signature")


def _link_existing_rows(connection: sa.Connection) -> None:
    """Point rows written before this revision at the audit entry that recorded them (each entry used once)."""
    audit = sa.table(
        "audit_events",
        *(sa.column(name) for name in ("seq", "action", "actor", "target", "environment", "outcome")),
        sa.column("after", sa.JSON),
        sa.column("details", sa.JSON),
    )
    entries: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for entry in connection.execute(sa.select(audit).order_by(audit.c.seq)).mappings():
        after, details = entry["after"] or {}, entry["details"] or {}
        if entry["action"] in ("version.approve", "version.reject"):
            key = (entry["action"], entry["actor"], entry["target"], entry["environment"], after.get("digest"))
        elif entry["action"] == "version.promote":
            key = ("version.promote", details.get("promotion_id"))
        elif entry["action"].startswith("deployment."):
            champion = json.dumps(after.get("champion"), sort_keys=True)
            key = (
                entry["action"],
                entry["actor"],
                entry["target"],
                entry["environment"],
                after.get("revision"),
                champion,
            )
        else:
            continue
        entries[key].append(entry["seq"])

    def link(table: str, columns: tuple[str, ...], key_of: Any, json_columns: tuple[str, ...] = ()) -> None:
        rows = sa.table(
            table,
            sa.column("id"),
            *(sa.column(name) for name in columns),
            *(sa.column(name, sa.JSON) for name in json_columns),
        )
        for row in connection.execute(sa.select(rows).order_by(rows.c.id)).mappings():
            seqs = entries.get(key_of(row))
            if seqs:
                connection.execute(
                    sa.text(f"UPDATE {table} SET audit_seq = :seq WHERE id = :id"),
                    {"seq": seqs.pop(0), "id": row["id"]},
                )

    link(
        "approvals",
        ("decision", "actor", "project", "version_number", "environment", "digest"),
        lambda r: (
            f"version.{r['decision']}",
            r["actor"],
            f"{r['project']}:v{r['version_number']}",
            r["environment"],
            r["digest"],
        ),
    )
    link("promotions", (), lambda r: ("version.promote", r["id"]))
    link(
        "deployment_events",
        ("action", "actor", "project", "environment", "revision"),
        lambda r: (
            f"deployment.{r['action']}",
            r["actor"],
            r["project"],
            r["environment"],
            r["revision"],
            json.dumps((r["state"] or {}).get("champion"), sort_keys=True),
        ),
        ("state",),
    )
