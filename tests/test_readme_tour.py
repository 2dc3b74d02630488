"""The README's five-minute tour, run as a newcomer runs it: ``harbourmaster demo`` in a fresh folder (and a
fresh HOME), then every shell line of the tour's ``bash`` blocks, in order, in one real shell.

The lines are read from README.md, never copied here. Each must exit 0; a line the README marks
``pending`` (a step waiting for a second admin) exits 3, the CLI's code for that. The tour reads its
ports from ``SERVE_PORT``, ``CONTROL_PORT`` and ``TEST_PORT`` as the README says; the test sets them to free ones.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from loopback import free_port
from shared_demo import newcomer_env, shared_demo

README = Path(__file__).resolve().parents[1] / "README.md"
TOUR_HEADING = "## A five-minute tour"
PENDING_EXIT_CODE = 3  # cli.main.PENDING_EXIT_CODE: recorded, waiting for a second admin
TOUR_SECONDS = 600


def tour_lines(readme: str) -> list[str]:
    """The shell lines of the tour section's ``bash`` blocks, in order (blank and comment-only lines dropped)."""
    section = readme.split(TOUR_HEADING, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _allowed_codes(line: str) -> tuple[int, ...]:
    comment = line.split("  #", 1)[1] if "  #" in line else ""
    return (0, PENDING_EXIT_CODE) if "pending" in comment else (0,)


def tour_script(lines: list[str]) -> str:
    """One shell that runs the lines one by one and stops at the first that fails, naming it."""
    out = ["trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT"]  # background servers end with the shell
    for number, line in enumerate(lines, 1):
        allowed = " ".join(str(code) for code in _allowed_codes(line))
        out += [
            f"printf '[%s] %s\\n' \"$(date +%T)\" {shlex.quote(f'$ {line}')} >&2",  # timed, for a slow line
            line,
            "rc=$?",
            f'case " {allowed} " in *" $rc "*) ;; '
            f'*) echo "TOUR FAILED at line {number} (exit $rc)" >&2; exit 97;; esac',
        ]
    out.append("echo TOUR-DONE")
    return "\n".join(out) + "\n"


def _run(command: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a timeout can end the servers the tour started, too
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"timed out after {timeout}s:\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_the_tour_is_read_from_the_readme() -> None:
    lines = tour_lines(README.read_text())
    assert lines[0].startswith("harbourmaster train"), lines[:3]
    assert any(line.startswith("harbourmaster init") for line in lines)
    assert any("harbourmaster audit verify-export" in line for line in lines)
    assert all("hm_..." not in line and "@row.json" not in line for line in lines)  # nothing a reader must invent
    pending = [line for line in lines if PENDING_EXIT_CODE in _allowed_codes(line)]
    assert pending and all(line.startswith("harbourmaster ") for line in pending)


@pytest.mark.slow
def test_readme_tour_runs_line_by_line_after_the_demo(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    demo = shared_demo(tmp_path_factory)  # `harbourmaster demo` in a fresh folder, as the README's first command
    assert "Demo finished" in demo.stdout
    assert f"Your sandbox is {demo.store}: every command you run in this folder" in demo.stdout
    folder, home = tmp_path / "newcomer", tmp_path / "home"
    folder.mkdir()
    home.mkdir()
    demo.copy_store(folder / ".harbourmaster")  # the newcomer's folder, as the demo left it
    env = newcomer_env(home)
    env.update(SERVE_PORT=str(free_port()), CONTROL_PORT=str(free_port()), TEST_PORT=str(free_port()))

    tour = _run(tour_script(tour_lines(README.read_text())), folder, env, TOUR_SECONDS)
    assert tour.returncode == 0 and "TOUR-DONE" in tour.stdout, f"{tour.stderr[-6000:]}\n{tour.stdout[-3000:]}"
    assert "Traceback" not in tour.stdout + tour.stderr, tour.stderr[-6000:]
    # A few outcomes beyond exit codes: the replica answered, v2 reached prod, the export verifies.
    assert '"prediction"' in tour.stdout and '"path":"champion"' in tour.stdout
    # deploy right after `serve ... &` waits for the replica that is starting, and says what it did.
    assert "no replica of dev is running" not in tour.stdout and "loaded it (serving revision" in tour.stdout
    assert "Promoted breast-cancer v2 to prod" in tour.stdout
    assert "Export intact" in tour.stdout
    # One store all along: the one the demo made here, never a second one elsewhere.
    assert f"store: {folder / '.harbourmaster'}" in tour.stderr
    assert [path.parent for path in tmp_path.rglob(".harbourmaster")] == [folder]
