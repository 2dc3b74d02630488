"""traffic increments and console sessions

Revision ID: 0017
Revises: 0016

``traffic_samples`` gains each sample's *increase* over the series' previous sample (restart-aware,
``core/sla.py``'s rule), computed once when the heartbeat is recorded, and its time as integer
microseconds: the console sums increments per interval in SQL instead of differencing hours of
samples on every page load. Existing samples are backfilled here.

``console_sessions`` keeps the console's log-ins in the database (the session id's SHA-256, never the
id; the token's SHA-256, as ``tokens`` does), so that several control-plane processes and a restart
share them and a log-out ends the session everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from harbourmaster.store.migration_ops import drop_plain_columns

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BUCKETS = 13  # len(core.sla.LATENCY_BUCKETS) at this revision
COUNTERS = ("requests", "errors", "fallbacks", "timed", "latency_sum")
RESET_TOLERANCE_SECONDS = 5.0  # core.sla's at this revision
INCREMENTS = [f"inc_{name}" for name in COUNTERS] + [f"inc_b{i}" for i in range(BUCKETS)]


def upgrade() -> None:
    with op.batch_alter_table("traffic_samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("at_us", sa.BigInteger(), server_default="0", nullable=False))
        for name in INCREMENTS:
            batch_op.add_column(sa.Column(name, sa.Float(), server_default="0", nullable=False))
    _backfill()
    op.create_index("ix_traffic_samples_increments", "traffic_samples", ["environment", "project", "at_us"])
    op.create_index("ix_traffic_samples_replica", "traffic_samples", ["replica", "environment", "project", "at_us"])
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_console_sessions_token_hash", "console_sessions", ["token_hash"])
    op.create_index("ix_console_sessions_seen_at", "console_sessions", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_seen_at", table_name="console_sessions")
    op.drop_index("ix_console_sessions_token_hash", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_index("ix_traffic_samples_replica", table_name="traffic_samples")
    op.drop_index("ix_traffic_samples_increments", table_name="traffic_samples")
    drop_plain_columns("traffic_samples", "at_us", *INCREMENTS)


def _backfill() -> None:
    """Each existing sample's time and increase over the previous sample of its series (the samples kept
    are hours, not days: a plain pass)."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, replica, environment, project, side, sampled_at, started_at, requests, errors, fallbacks,"
            " timed, latency_sum, buckets FROM traffic_samples ORDER BY sampled_at, id"
        )
    ).all()
    previous: dict[tuple, tuple[float, list[float]]] = {}
    updates = []
    for row in rows:
        buckets = row.buckets if isinstance(row.buckets, list) else _json(row.buckets)
        values = [float(getattr(row, name)) for name in COUNTERS] + [float(b) for b in buckets]
        started = _epoch(row.started_at)
        key = (row.replica, row.environment, row.project, row.side)
        before = previous.get(key)
        if before is None or len(before[1]) != len(values):
            increase = values
        else:
            was_started, was = before
            restarted = any(now < then for now, then in zip(values, was, strict=True))
            restarted = restarted or started > was_started + RESET_TOLERANCE_SECONDS
            increase = values if restarted else [now - then for now, then in zip(values, was, strict=True)]
        previous[key] = (started, values)
        if len(increase) != len(INCREMENTS):
            continue
        updates.append(
            {"row_id": row.id, "at_us": _micros(row.sampled_at), **dict(zip(INCREMENTS, increase, strict=True))}
        )
    if updates:
        assignments = ", ".join(f"{name} = :{name}" for name in ["at_us", *INCREMENTS])
        bind.execute(sa.text(f"UPDATE traffic_samples SET {assignments} WHERE id = :row_id"), updates)


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _epoch(value: datetime | str) -> float:
    return _utc(value).timestamp()


def _micros(value: datetime | str) -> int:
    return (_utc(value) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _json(value: str) -> list[float]:
    import json

    return list(json.loads(value))
