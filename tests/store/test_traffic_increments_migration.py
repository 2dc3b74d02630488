"""Migration 0017 backfills each stored traffic sample's increment (both metadata backends): a store
upgraded with hours of samples shows the same deployment figures as the raw samples give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import column, insert, select
from sqlalchemy import table as sa_table

from harbourmaster.config import Settings
from harbourmaster.core.sla import LATENCY_BUCKETS, Counts, Sample, step_increase
from harbourmaster.store import traffic_samples
from harbourmaster.store.db import MIGRATIONS_DIR, create_database_engine, migrate
from harbourmaster.store.tables import TrafficSampleRow


def test_upgrade_backfills_increments_of_existing_samples(unmigrated_settings: Settings) -> None:
    engine = create_database_engine(unmigrated_settings.database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0016")
    now = datetime.now(UTC)
    rows, total, started = [], 0.0, now - timedelta(hours=2)
    for minute in range(90, -1, -1):
        if minute == 40:  # a restart: counters from zero
            started, total = now - timedelta(minutes=40, seconds=5), 0.0
        total += 100.0 + minute
        counts = Counts(total, total / 100, 0.0, total, total / 1000, tuple(total for _ in LATENCY_BUCKETS))
        rows.append(
            {
                "replica": "r1",
                "environment": "dev",
                "project": "loans",
                "side": None,
                "sampled_at": now - timedelta(minutes=minute),
                "started_at": started,
                "requests": counts.requests,
                "errors": counts.errors,
                "fallbacks": counts.fallbacks,
                "timed": counts.timed,
                "latency_sum": counts.latency_sum,
                "buckets": list(counts.buckets),
            }
        )
    table = TrafficSampleRow.__table__
    before = sa_table(  # the table as revision 0016 has it (no defaults for the columns 0017 adds)
        "traffic_samples", *(column(c.name, c.type) for c in table.columns if not c.name.startswith(("inc_", "at_")))
    )
    with engine.begin() as connection:
        connection.execute(insert(before), rows)
    migrate(engine)

    with engine.connect() as connection:
        stored = connection.execute(select(table).order_by(table.c.sampled_at)).all()
    assert len(stored) == len(rows)
    previous = None
    for row in stored:
        at = row.sampled_at if row.sampled_at.tzinfo else row.sampled_at.replace(tzinfo=UTC)
        begun = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=UTC)
        sample = Sample(
            at.timestamp(),
            begun.timestamp(),
            Counts(row.requests, row.errors, row.fallbacks, row.timed, row.latency_sum, buckets=tuple(row.buckets)),
        )
        want = step_increase(previous, sample)
        assert row.at_us == traffic_samples.micros(at)
        kept = [getattr(row, name) for name in traffic_samples.INCREMENTS]
        assert kept == pytest.approx(
            [want.requests, want.errors, want.fallbacks, want.timed, want.latency_sum, *want.buckets]
        )
        previous = sample
    assert sum(row.inc_requests for row in stored) == pytest.approx(sum(100.0 + m for m in range(91)))
    engine.dispose()
