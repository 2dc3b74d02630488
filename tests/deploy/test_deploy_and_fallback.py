"""A refused deploy or fallback changes nothing; fallback merges into the chain and must fit the versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from harbourmaster.errors import InvalidInputError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow, DeploymentEventRow

PROJECT = "breast-cancer"
OWNER = Actor.local_owner()
RULE = {"when": {"feature": "worst area", "op": ">", "value": 1000}, "output": 1}


def counts(platform: Platform) -> tuple[int, int]:
    """(deployment events, audit entries): what a refused change must leave as it was."""
    with platform.db.reader() as session:
        events = session.scalar(select(func.count()).select_from(DeploymentEventRow))
        audits = session.scalar(
            select(func.count()).select_from(AuditEventRow).where(AuditEventRow.action.like("deployment.%"))
        )
    return events, audits


@pytest.fixture
def two_versions(platform: Platform, demo_project: Path) -> Platform:
    for _ in range(2):
        platform.training.train(OWNER, demo_project)
    return platform


def test_a_deploy_with_a_bad_option_changes_nothing(two_versions: Platform) -> None:
    platform = two_versions
    first = platform.deployments.deploy(OWNER, PROJECT, 1, "dev", options={"latency_budget_ms": 150})
    assert first.options["latency_budget_ms"] == 150
    before = counts(platform)
    for bad in ({"unknown_fields": "maybe"}, {"microbatch": {"max_batch": 0}}, {"colour": "blue"}):
        with pytest.raises(InvalidInputError, match="invalid deployment options"):
            platform.deployments.deploy(OWNER, PROJECT, 2, "dev", options=bad)
        state = platform.deployments.get(OWNER, PROJECT, "dev")
        assert (state.champion.number, state.revision, state.options) == (1, first.revision, first.options)
    assert counts(platform) == before

    both = platform.deployments.deploy(OWNER, PROJECT, 2, "dev", options={"microbatch": {"enabled": True}})
    assert both.champion.number == 2 and both.revision == first.revision + 1  # one change, one revision
    assert both.options["latency_budget_ms"] == 150 and both.options["microbatch"]["enabled"] is True
    assert both.options["microbatch"]["max_batch"] == 32  # a nested option keeps what was not named


def test_fallback_merges_into_the_chain_and_must_fit_the_version(two_versions: Platform) -> None:
    platform = two_versions
    platform.deployments.deploy(OWNER, PROJECT, 2, "dev")
    chain = platform.deployments.set_fallback(OWNER, PROJECT, "dev", failover=1)
    chain = platform.deployments.set_fallback(OWNER, PROJECT, "dev", fallback={"rules": [RULE]})
    assert chain.failover.number == 1 and len(chain.fallback["rules"]) == 1  # the failover stays
    chain = platform.deployments.set_fallback(OWNER, PROJECT, "dev", fallback={"default": 0})
    assert chain.failover.number == 1 and len(chain.fallback["rules"]) == 1 and chain.fallback["default"] == 0

    before = counts(platform)
    refusals = {
        "purple": ({"default": "purple"}, "the default 'purple' is not one of the classes [0, 1]"),
        "true": ({"default": True}, "the default True is not one of the classes [0, 1]"),
        "output": ({"rules": [{**RULE, "output": 7}]}, "rule 1's output 7 is not one of the classes"),
        "feature": (
            {"rules": [{"when": {"feature": "shoe size", "op": ">", "value": 40}, "output": 1}]},
            "rule 1 tests 'shoe size', which is not an input of the version",
        ),
        "kind": (
            {"rules": [{"when": {"feature": "worst area", "op": ">", "value": "big"}, "output": 1}]},
            "worst area is float, compare it with a number",
        ),
    }
    for given, expected in refusals.values():
        with pytest.raises(InvalidInputError) as raised:
            platform.deployments.set_fallback(OWNER, PROJECT, "dev", fallback=given)
        assert expected in raised.value.message and "champion v2" in raised.value.message
        assert "--clear" in (raised.value.hint or "")
    assert counts(platform) == before
    assert platform.deployments.get(OWNER, PROJECT, "dev").fallback == chain.fallback

    cleared = platform.deployments.set_fallback(OWNER, PROJECT, "dev", clear_failover=True)
    assert cleared.failover is None and cleared.fallback["default"] == 0
    emptied = platform.deployments.set_fallback(OWNER, PROJECT, "dev", failover=1, replace=True)
    assert emptied.failover.number == 1 and emptied.fallback["rules"] == [] and emptied.fallback["default"] is None


def cli(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARBOURMASTER_")}
    env.update(HARBOURMASTER_HOME=str(home), COLUMNS="250", NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-m", "harbourmaster", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def test_the_cli_refuses_bad_deploys_and_fallbacks_and_prints_the_chain(tmp_path: Path, demo_project: Path) -> None:
    home = tmp_path / "home"
    assert cli(home, "train", str(demo_project), cwd=tmp_path).returncode == 0
    deployed = cli(home, "deploy", PROJECT, "1", "--no-wait", "--json", cwd=tmp_path)
    revision = json.loads(deployed.stdout)["revision"]

    bad = cli(home, "deploy", PROJECT, "1", "--unknown-fields", "maybe", "--no-wait", cwd=tmp_path)
    assert bad.returncode == 1 and "unknown_fields" in bad.stderr and "hint:" in bad.stderr
    listed = json.loads(cli(home, "deployments", "--json", cwd=tmp_path).stdout)
    assert [item["revision"] for item in listed] == [revision]  # nothing changed

    late = cli(home, "fallback", PROJECT, "--default", "late", cwd=tmp_path)
    assert late.returncode == 1 and "the default 'late' is not one of the classes [0, 1]" in late.stderr
    missing = cli(home, "fallback", PROJECT, "--rules", "rules.json", cwd=tmp_path)
    assert missing.returncode == 1 and "rules.json does not exist" in missing.stderr
    assert "hint: give the path of a JSON file with fallback rules" in missing.stderr

    (tmp_path / "rules.json").write_text(json.dumps({"rules": [RULE]}))
    ruled = cli(home, "fallback", PROJECT, "--rules", "rules.json", cwd=tmp_path)
    assert ruled.returncode == 0 and "fallback chain: champion v1 -> 1 rule(s) (on: error" in ruled.stdout
    both = cli(home, "fallback", PROJECT, "--failover", "1", "--default", "0", cwd=tmp_path)
    assert "fallback chain: champion v1 -> failover v1 -> 1 rule(s) -> default 0" in both.stdout  # merged
    cleared = cli(home, "fallback", PROJECT, "--clear", cwd=tmp_path)
    assert "fallback chain: champion v1 -> nothing" in cleared.stdout
