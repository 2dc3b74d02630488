"""The CLI starts without the data libraries: only commands that compute with data import them, when they run.

pandas, numpy, scikit-learn and scipy alone take seconds to import; ``harbourmaster --help`` or ``whoami``
must not pay for them. Checked in a fresh interpreter (this test process has them loaded already).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import harbourmaster

HEAVY = ("pandas", "numpy", "sklearn", "scipy", "pyarrow", "duckdb", "onnxruntime")
REPORT = f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"


def _loaded_after(code: str, home: Path) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running ``code`` (then printing them)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    # The same harbourmaster as this test imported (a worktree's src comes before an installed copy).
    env["PYTHONPATH"] = os.pathsep.join([str(Path(harbourmaster.__file__).parents[1]), env.get("PYTHONPATH", "")])
    env["HARBOURMASTER_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\n{REPORT}"],
        cwd=home.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_data_library(tmp_path: Path) -> None:
    assert _loaded_after("import harbourmaster.cli.main", tmp_path / ".harbourmaster") == []


@pytest.mark.parametrize("command", [["whoami"], ["versions", "churn"], ["alerts"]])
def test_commands_that_do_not_compute_load_no_data_library(tmp_path: Path, command: list[str]) -> None:
    # On a new embedded store: the command opens it (migrations and all) and answers, without the data stack.
    code = f"from harbourmaster.cli.main import run\ntry:\n    run({command!r})\nexcept SystemExit:\n    pass"
    assert _loaded_after(code, tmp_path / ".harbourmaster") == []
