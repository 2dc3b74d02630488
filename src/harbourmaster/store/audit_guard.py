"""Append-only audit rows: triggers that refuse UPDATE, DELETE (and TRUNCATE) on ``audit_events``.

The application's database role can append entries and nothing else. Whoever owns the
tables can still drop the triggers; what they change then is caught by ``audit verify``
(signatures and anchors), which is why both exist.
"""

from __future__ import annotations

from sqlalchemy import DDL, Table, event

MESSAGE = "audit_events is append-only: entries are never updated or deleted"

SQLITE = [
    f"CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    f"CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
]
POSTGRESQL = [
    "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege'; END $$",
    "DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events",
    "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()",
]
DROP = {
    "sqlite": ["DROP TRIGGER IF EXISTS audit_events_no_update", "DROP TRIGGER IF EXISTS audit_events_no_delete"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events",
        "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
        "DROP FUNCTION IF EXISTS audit_events_append_only()",
    ],
}


def append_only_statements(dialect: str) -> list[str]:
    """The DDL that makes ``audit_events`` append-only on ``dialect`` (idempotent)."""
    return {"sqlite": SQLITE, "postgresql": POSTGRESQL}.get(dialect, [])


def install_on_create(table: Table) -> None:
    """Create the triggers whenever ``table`` itself is created (``metadata.create_all``), not only by migration."""
    for dialect in ("sqlite", "postgresql"):
        for statement in append_only_statements(dialect):
            event.listen(table, "after_create", DDL(statement).execute_if(dialect=dialect))
