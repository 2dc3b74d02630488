"""Long commands draw rich progress on a terminal (a real pseudo-terminal here) and stay quiet when piped."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import make_settings

from cli_inprocess import invoke
from harbourmaster.core.audit_chain import parse_public_key
from harbourmaster.demo.story import write_demo_project
from harbourmaster.services.actors import Actor
from harbourmaster.services.audit import verify_export
from harbourmaster.services.platform import Platform
from harbourmaster.services.scoring import SCORE_CHUNK_ROWS

pytestmark = pytest.mark.slow

PROJECT = "breast-cancer"
ESCAPE = "\x1b["


def cli_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update({"HARBOURMASTER_HOME": str(home), "TERM": "xterm-256color", "COLUMNS": "160"})
    env.pop("NO_COLOR", None)
    return env


def in_terminal(home: Path, cwd: Path, *args: str, timeout: float = 120) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; (exit code, everything it drew)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "harbourmaster", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=cli_env(home),
        cwd=cwd,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    return code, b"".join(chunks).decode(errors="replace")


def piped(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harbourmaster", *args],
        env=cli_env(home),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A trained, deployed project and an input file of more rows than one scoring chunk."""
    root = tmp_path_factory.mktemp("progress")
    home = root / "home"
    frame = write_demo_project(root / "project")
    repeats = SCORE_CHUNK_ROWS // len(frame) + 2
    pd.concat([frame.drop(columns=["malignant"])] * repeats).to_csv(root / "many.csv", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARBOURMASTER_HOME", str(home))
        patch.delenv("HARBOURMASTER_DATABASE_URL", raising=False)
        patch.chdir(root)
        assert invoke(["train", "project"]).code == 0
        assert invoke(["deploy", PROJECT, "1", "--env", "dev", "--no-wait"]).code == 0
    yield home, root


def test_training_shows_its_stages_on_a_terminal_and_nothing_when_piped(workspace):
    home, root = workspace
    code, drawn = in_terminal(home, root, "train", "project")
    assert code == 0, drawn
    for stage in ("reading data/train.csv", "fitting model:train on 426 rows", "evaluating on 143 held-out rows"):
        assert stage in drawn, drawn
    assert "\x1b[2K" in drawn  # the line is redrawn in place, rich's live display
    assert "Registered breast-cancer v2" in drawn

    done = piped(home, root, "train", "project")
    assert done.returncode == 0, done.stderr
    assert "Registered breast-cancer v3" in done.stdout
    assert "fitting" not in done.stdout + done.stderr
    assert ESCAPE not in done.stdout + done.stderr  # no spinner frames, no control codes in a log file


def test_scoring_counts_rows_on_a_terminal_and_is_quiet_when_piped(workspace):
    home, root = workspace
    rows = len(pd.read_csv(root / "many.csv"))
    code, drawn = in_terminal(home, root, "score", PROJECT, "--input", "many.csv", "--output", "scored.csv")
    assert code == 0, drawn
    assert f"{SCORE_CHUNK_ROWS}/{rows} rows" in drawn, drawn  # a bar with counts after the first chunk
    assert f"scored {rows} rows" in drawn

    done = piped(home, root, "score", PROJECT, "--input", "many.csv", "--output", "scored-again.csv")
    assert done.returncode == 0, done.stderr
    assert f"scored {rows} rows" in done.stdout
    assert " rows" not in done.stderr and ESCAPE not in done.stdout + done.stderr
    first, again = pd.read_csv(root / "scored.csv"), pd.read_csv(root / "scored-again.csv")
    assert len(first) == rows and first["prediction"].equals(again["prediction"])


AUDIT_ENTRIES = 1200  # a few hundred more than one progress step of the export (every 500 entries)


@pytest.fixture(scope="module")
def audit_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A store whose audit log holds over a thousand signed entries, and its public key."""
    root = tmp_path_factory.mktemp("audit-progress")
    home = root / "home"
    platform = Platform(make_settings(home))
    try:
        with platform.db.transaction() as session:
            for number in range(AUDIT_ENTRIES):
                platform.audit.record(session, Actor.local_owner(), "note.added", f"note {number}")
        key = platform.audit.public_key_pem(Actor.local_owner()).encode()
    finally:
        platform.close()
    return home, root, key


def exported_entries(text: str, key: bytes) -> int:
    """How many entries an intact export holds (it verifies, signatures included, and matches its trailer)."""
    report = verify_export(text, parse_public_key(key))
    assert report.ok, report.problem
    return report.checked


def test_audit_export_counts_entries_on_a_terminal_and_is_quiet_when_piped(audit_store):
    home, root, key = audit_store
    code, drawn = in_terminal(home, root, "audit", "export", "-o", "on-terminal.jsonl")
    assert code == 0, drawn
    assert "Exporting the audit log: verifying" in drawn, drawn
    assert re.search(r"500/\d{4} entries", drawn), drawn  # a bar with counts, redrawn as entries are checked
    assert "\x1b[2K" in drawn and "Wrote on-terminal.jsonl" in drawn

    done = piped(home, root, "audit", "export")
    assert done.returncode == 0 and done.stderr == ""  # no progress line, no control codes
    # stdout holds the export alone, nothing mixed in; the export of the terminal run is whole too.
    assert exported_entries((root / "on-terminal.jsonl").read_text(), key) == AUDIT_ENTRIES
    assert exported_entries(done.stdout, key) == AUDIT_ENTRIES + 1  # plus the first export's own entry
