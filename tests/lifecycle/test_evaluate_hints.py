"""``harbourmaster evaluate`` in embedded mode: every hint it gives names a command that works there."""

from __future__ import annotations

from pathlib import Path

from faces.test_cli import assert_fails, hm
from harbourmaster.config import Settings
from harbourmaster.services.platform import Platform
from monitoring.helpers import PROJECT, register_and_deploy


def test_evaluate_hints_work_in_embedded_mode(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(Settings.from_env({"HARBOURMASTER_HOME": str(home)}))
    try:
        version = register_and_deploy(platform)
    finally:
        platform.close()

    # prod (the default) is guarded: that is said first, with the way to reach it, not "retrain --env prod".
    guarded = assert_fails(hm(home, "evaluate", PROJECT, str(version)), "prod is a guarded environment")
    assert "--env prod" not in guarded.err, guarded.err

    # A version that was not retrained: the hint retrains in the environment asked about ...
    hinted = assert_fails(hm(home, "evaluate", PROJECT, str(version), "--env", "dev"), "was not retrained")
    hint = hinted.err.split("hint:", 1)[1]
    assert f"harbourmaster retrain {PROJECT} --env dev" in hint and "--env prod" not in hint, hint
    assert f"harbourmaster evidence {PROJECT} {version} --to dev" in hint, hint
    # ... and that command runs here: it stops at the data (no ground truth yet), not at a refusal.
    retrain = assert_fails(hm(home, "retrain", PROJECT, "--env", "dev"), "no ground truth has arrived")
    assert "guarded" not in retrain.err, retrain.err
