"""Registration loads and warms a new version in a clean process: what no replica could serve gets no number."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from harbourmaster.errors import InvalidInputError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow

from .projects import FORGETFUL, write_forgetful

OWNER = Actor.local_owner()


def refused_registrations(platform: Platform) -> list[AuditEventRow]:
    with platform.db.reader() as session:
        rows = session.scalars(select(AuditEventRow).where(AuditEventRow.action == "version.register"))
        return [row for row in rows if row.outcome == "refused"]


def test_a_version_that_cannot_answer_once_loaded_is_refused_with_the_error(platform: Platform, tmp_path: Path) -> None:
    project = write_forgetful(tmp_path)
    with pytest.raises(InvalidInputError) as raised:
        platform.training.train(OWNER, project)
    message = raised.value.message
    assert "does not load and answer one row" in message and "no replica could serve it" in message
    assert "KeyError" in message and "'model'" in message  # the model's own error, named
    assert FORGETFUL not in {p.name for p in platform.registry.list_projects(OWNER)}  # no version, no project
    refusals = refused_registrations(platform)
    assert len(refusals) == 1 and "does not load and answer" in refusals[0].details["error"]


def test_a_version_that_hangs_once_loaded_is_refused_at_the_deadline(sqlite_settings, tmp_path: Path) -> None:
    platform = Platform(replace(sqlite_settings, warmup_timeout_seconds=3.0))
    try:
        project = write_forgetful(tmp_path, hang=True)
        with pytest.raises(InvalidInputError) as raised:
            platform.training.train(OWNER, project)
        assert "did not load and answer one row within 3 s" in raised.value.message
        assert "HARBOURMASTER_WARMUP_TIMEOUT_SECONDS" in (raised.value.hint or "")
        assert len(refused_registrations(platform)) == 1
    finally:
        platform.close()


def test_a_sound_version_registers_after_its_warm_up(platform: Platform, demo_project: Path) -> None:
    version = platform.training.train(OWNER, demo_project).version
    assert version.number == 1
    assert refused_registrations(platform) == []
