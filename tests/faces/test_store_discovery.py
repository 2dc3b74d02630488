"""Which store the CLI opens: HARBOURMASTER_HOME, else the nearest ``.harbourmaster`` folder up from
the current directory (as git finds ``.git``), else a new one here; the CLI says which on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harbourmaster.config import HOME_FOUND, HOME_FROM_ENV, HOME_NEW, Settings, find_store


def test_home_is_named_found_upwards_or_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nested = tmp_path / "work" / "project" / "src"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)

    fresh = Settings.from_env({})
    assert (fresh.home, fresh.home_source) == (nested / ".harbourmaster", HOME_NEW)
    assert find_store(nested) is None

    (tmp_path / "work" / ".harbourmaster").mkdir()
    found = Settings.from_env({})
    assert (found.home, found.home_source) == (tmp_path / "work" / ".harbourmaster", HOME_FOUND)
    assert found.database_url == f"sqlite:///{tmp_path / 'work' / '.harbourmaster' / 'harbourmaster.db'}"

    (nested / ".harbourmaster").mkdir()  # the nearest one wins
    assert Settings.from_env({}).home == nested / ".harbourmaster"

    named = Settings.from_env({"HARBOURMASTER_HOME": str(tmp_path / "elsewhere")})
    assert (named.home, named.home_source) == (tmp_path / "elsewhere", HOME_FROM_ENV)


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    return subprocess.run(
        [sys.executable, "-m", "harbourmaster", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_a_command_in_a_project_folder_uses_the_store_above_and_says_so(tmp_path: Path, demo_project: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    created = _cli(top, "train", str(demo_project), "--json")
    assert created.returncode == 0, created.stderr
    assert f"store: {top / '.harbourmaster'} (new:" in created.stderr

    inside = top / ".harbourmaster" / "somewhere" / "deeper"
    inside.mkdir(parents=True)
    listed = _cli(inside, "projects", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [p["name"] for p in json.loads(listed.stdout)] == ["breast-cancer"]  # stdout stays pure JSON
    assert listed.stderr.strip() == f"store: {top / '.harbourmaster'}"
    assert not (inside / ".harbourmaster").exists()  # no second, empty store

    whoami = _cli(inside, "whoami")
    assert str(top / ".harbourmaster") in whoami.stdout
