"""``harbourmaster demo`` end to end, as a user runs it: the session's shared run in a fresh folder, then a
second run on a copy of its store named by ``HARBOURMASTER_HOME``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_demo import DEMO_SECONDS, shared_demo


def run_demo(home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env["HARBOURMASTER_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "harbourmaster", "demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_SECONDS,
        check=False,
    )


@pytest.mark.slow
def test_demo_runs_and_reruns(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    first = shared_demo(tmp_path_factory)
    home = first.copy_store(tmp_path / "home")
    for attempt in ("first", "second"):
        done = first if attempt == "first" else run_demo(home, tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{attempt} run exited {done.returncode}:\n{output}"
        assert "Traceback" not in output, output
        assert "identical" in done.stdout
        assert "Demo finished" in done.stdout
        assert "different!" not in done.stdout
        # The sandbox never reaches prod; the governance story runs against a real control plane with tokens:
        # refused in prod, two sign-offs, promoted, audit holds.
        assert "to prod -> refused: prod is a guarded environment: embedded mode" in done.stdout
        assert "dana promotes to prod -> refused" in done.stdout
        assert "approve" in done.stdout and "promoted" in done.stdout
        assert "entries intact" in done.stdout
        assert "was altered" in done.stdout
        # The serving chapter: real requests, a 422, a fallback answering.
        assert "via champion" in done.stdout and "-> 422" in done.stdout and "via rules" in done.stdout
        # The monitoring chapter: drifted traffic raises a drift alert naming the grown features; replica health.
        assert "no data drift" in done.stdout
        assert "drift.dataset (warning) on breast-cancer/dev: breast-cancer: data drift" in done.stdout
        assert "mean radius" in done.stdout.split("data drift,", 1)[1].split("\n", 1)[0]
        assert "heartbeat-age    ok" in done.stdout and "capture-dropped  ok" in done.stdout
        assert "service levels of breast-cancer in dev" in done.stdout and "SLA of dev: p99_ms 100" in done.stdout
        assert "fast burn (14.4x over 1h and 5m): ok" in done.stdout
        # The lifecycle chapter, on the control plane: prod drifts, the alert opens a case, the rules cover the
        # champion, the worker retrains (v2: the control plane's store is new on every run), proves the fix and
        # load-tests; a canary rollout completes under live traffic without one failed request; the case closes.
        assert "drift.dataset (warning) on breast-cancer/prod" in done.stdout
        assert "case 1 opened, state open" in done.stdout
        assert "malignant=1 via rules (humility" in done.stdout
        assert "v2 retrained on production data by olga" in done.stdout
        assert "verdict: beats the champion" in done.stdout
        assert "drift fixed: yes" in done.stdout
        assert "load test in test: passed" in done.stdout
        assert "rollout completed:" in done.stdout
        assert " 0 failed requests (answered by v1: " in done.stdout and ", v2: " in done.stdout
        assert "case 1: done (completed); prod serves v2" in done.stdout
        summary = done.stdout.split("Summary: one model's life", 1)[1].split("What next", 1)[0]
        for step in ("drift alert", "fallback", "retrain", "evaluate", "load test", "canary rollout", "audit"):
            assert f"   {step} " in summary, summary
        assert "beats; drift fixed: yes" in summary and ", 0 failed" in summary and "entries intact" in summary
    # The second run added versions to the same registry rather than starting over (the first registers
    # v1-v3 in the sandbox; dana's version lives in the control plane's own store), says so, and its
    # headings name the versions it registers, not the first run's.
    assert "already holds breast-cancer v1-v3 from an earlier run" in done.stdout
    assert "2. Train v4 with `harbourmaster train`" in done.stdout and "v4 registered" in done.stdout
    assert "Tune a parameter and train again: v5" in done.stdout and "v5 registered" in done.stdout
    assert "Register v6, a model trained interactively" in done.stdout
    assert "Load v5 in a fresh process" in done.stdout and "Deploy v5 to dev" in done.stdout
    assert "Train v1" not in done.stdout and "Load v2" not in done.stdout
    # It ends with where its store is, how commands find it from here, and the tour's next commands.
    assert f"Your sandbox is {home}: from this folder, commands use it with HARBOURMASTER_HOME set" in done.stdout
    assert f"export HARBOURMASTER_HOME={home}" in done.stdout
    assert "harbourmaster diff breast-cancer 4 5" in done.stdout
    assert "-d @home/demo/row.json" in done.stdout  # paths below the current folder are shown relative to it
    assert "harbourmaster train home/demo/breast-cancer --data home/demo/breast-cancer/data/recent.csv" in done.stdout
    assert (home / "demo" / "row.json").is_file()
    assert (home / "demo" / "breast-cancer" / "harbourmaster.toml").is_file()
    assert not (tmp_path / ".harbourmaster").exists()  # state went to HARBOURMASTER_HOME, not the cwd

    # The home stays a sandbox (no users): the README tour goes on embedded; the control plane's store is
    # separate, its admin token readable by its owner only, and opening that store directly is refused.
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    tour = subprocess.run(
        [sys.executable, "-m", "harbourmaster", "whoami"],
        cwd=tmp_path,
        env={**env, "HARBOURMASTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tour.returncode == 0 and "one person's sandbox" in tour.stdout, tour.stderr
    control_plane = home / "demo" / "control-plane"
    assert (control_plane / "admin-token").stat().st_mode & 0o077 == 0
    assert f"HARBOURMASTER_HOME={control_plane} harbourmaster server" in done.stdout
    shared = subprocess.run(
        [sys.executable, "-m", "harbourmaster", "projects"],
        cwd=tmp_path,
        env={**env, "HARBOURMASTER_HOME": str(control_plane)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shared.returncode == 1 and "this store is shared" in shared.stderr and "--url" in shared.stderr
