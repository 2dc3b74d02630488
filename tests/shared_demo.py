"""``harbourmaster demo`` once per test session, shared by the tests that need a store the demo filled.

The demo runs as a newcomer runs it: a subprocess in a new folder, no ``HARBOURMASTER_*`` variables, its
own ``HOME``, so its store is ``<folder>/.harbourmaster``. The xdist workers share that one run through a
lock file in the session's temporary root (the first to ask runs it, the others wait for it). Each test
gets its own copy of the store: the store keeps paths relative to its home, so a copy is a working store,
and no test sees what another did to it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

DEMO_SECONDS = 300


@dataclass(frozen=True)
class DemoRun:
    """What one demo run printed, and the folder it ran in (its store is ``folder / ".harbourmaster"``)."""

    folder: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def store(self) -> Path:
        return self.folder / ".harbourmaster"

    def copy_store(self, destination: Path) -> Path:
        """A copy of the demo's store at ``destination`` (which must not exist yet)."""
        shutil.copytree(self.store, destination, symlinks=True)
        return destination


def newcomer_env(home: Path) -> dict[str, str]:
    """This process's environment without ``HARBOURMASTER_*``, with ``HOME`` at ``home`` and the virtual
    environment's ``bin`` first on ``PATH`` (as after activating it), plain and wide output."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        NO_COLOR="1",
        COLUMNS="200",
    )
    return env


def _session_root(factory: pytest.TempPathFactory) -> Path:
    # Under xdist each worker's base temp is <session root>/popen-gwN; alone, the base temp is the root.
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_demo(factory: pytest.TempPathFactory) -> DemoRun:
    """The session's demo run (run now by the first caller of any worker, then read from disk)."""
    root = _session_root(factory) / "shared-demo"
    root.mkdir(exist_ok=True)
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        record = root / "run.json"
        if not record.exists():
            folder, home = root / "newcomer", root / "home"
            folder.mkdir()
            home.mkdir()
            done = subprocess.run(
                [sys.executable, "-m", "harbourmaster", "demo"],
                cwd=folder,
                env=newcomer_env(home),
                capture_output=True,
                text=True,
                timeout=DEMO_SECONDS,
                check=False,
            )
            record.write_text(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}))
        facts = json.loads(record.read_text())
    run = DemoRun(root / "newcomer", facts["returncode"], facts["stdout"], facts["stderr"])
    assert run.returncode == 0, f"the demo exited {run.returncode}:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    return run
