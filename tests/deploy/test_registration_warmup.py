"""Registration loads and warms a new version in a clean process: what no replica could serve gets no number."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from harbourmaster.errors import InvalidInputError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow

from .projects import FORGETFUL, write_forgetful, write_probe

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


@pytest.fixture(params=["fork-server", "new-interpreter"])
def warm_up_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a warm-up runs: forked from the warm-up server, or a new interpreter (elsewhere than Linux)."""
    if request.param == "new-interpreter":
        monkeypatch.setenv("HARBOURMASTER_WARMUP_FORK_SERVER", "0")
    return request.param


def test_a_version_whose_code_ends_its_process_is_refused(platform: Platform, tmp_path: Path, warm_up_path) -> None:
    with pytest.raises(InvalidInputError) as raised:
        platform.training.train(OWNER, write_probe(tmp_path, "exit"))
    assert "does not load and answer one row" in raised.value.message
    assert len(refused_registrations(platform)) == 1


def test_a_hanging_warm_up_is_killed_at_its_deadline(sqlite_settings, tmp_path: Path, warm_up_path) -> None:
    pidfile = tmp_path / "warm-up.pid"
    # A new interpreter must first import the libraries (several seconds on a loaded machine) to reach the hang.
    deadline = 3 if warm_up_path == "fork-server" else 20
    platform = Platform(replace(sqlite_settings, warmup_timeout_seconds=float(deadline)))
    try:
        with pytest.raises(InvalidInputError, match=f"within {deadline} s"):
            platform.training.train(OWNER, write_probe(tmp_path, "hang", pidfile))
    finally:
        platform.close()
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the hanging warm-up process outlived its deadline"


def test_warm_ups_get_no_credentials_and_share_nothing(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARBOURMASTER_DATABASE_PASSWORD_PROBE", "secret")
    monkeypatch.setenv("PGPASSWORD", "secret")
    assert platform.training.train(OWNER, write_probe(tmp_path / "a", "secrets")).version.number == 1
    # the second warm-up refuses if the first one's change to a library module is still there
    platform.training.train(OWNER, write_probe(tmp_path / "b", "mark"))
    assert platform.training.train(OWNER, write_probe(tmp_path / "c", "mark")).version.number == 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"  # a zombie has ended
