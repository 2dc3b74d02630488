"""``harbourmaster sla`` and ``harbourmaster prometheus-rules`` as a newcomer runs them (embedded store)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from faces.test_cli import assert_fails, assert_ok, hm_many
from harbourmaster.config import Settings
from harbourmaster.services.platform import Platform
from monitoring.helpers import OWNER, PROJECT, promtool, register_and_deploy, store_burst


def test_cli_prints_the_figures_against_the_sla_and_writes_rules_promtool_accepts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = Platform(Settings.from_env({"HARBOURMASTER_HOME": str(home)}))
    try:
        register_and_deploy(platform)
        platform.environments.configure(OWNER, "dev", {"sla": {"p99_ms": 100, "error_rate": 0.001}})
        store_burst(platform, datetime.now(UTC))
    finally:
        platform.close()

    table, as_json, rules, unknown, guarded = hm_many(
        home,
        [
            ("sla", PROJECT, "--env", "dev"),
            ("sla", PROJECT, "--env", "dev", "--json"),
            ("prometheus-rules", "--env", "dev", "--output", "rules.yml"),
            ("sla", PROJECT, "--env", "test"),
            ("sla", PROJECT, "--env", "prod"),
        ],
    )
    out = assert_ok(table).out
    assert "SLA p99_ms=100, error_rate=0.001" in out
    assert "fast burn (14.4x over 1h and 5m): FIRING (critical): errors budget burning 30.0x (1h)" in out
    assert "slow burn (6x over 6h and 30m): ok" in out
    hour = next(line for line in out.splitlines() if line.startswith("│ 1h "))
    assert "36000" in hour and "3.00%" in hour and "30.00x" in hour
    data = assert_ok(as_json).json()
    assert [a["firing"] for a in data["alerts"]] == [True, False] and data["objectives"] == ["errors", "latency"]
    assert "wrote 4 alerting rules to rules.yml" in assert_ok(rules).out
    assert_fails(unknown, "is not deployed in test")
    assert_fails(guarded, "guarded")  # embedded mode is a sandbox: no read of prod

    checked = subprocess.run(
        [promtool(), "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0 and "SUCCESS: 24 rules found" in checked.stdout, checked.stdout + checked.stderr
