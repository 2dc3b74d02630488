"""Evidence for the evidence gate: drift and quality checks of a candidate against the champion's
window, stored per digest; a promotion is blocked without them and passes with them (both backends)."""

from __future__ import annotations

import pytest

from harbourmaster.errors import InvalidInputError, PromotionRefusedError
from harbourmaster.services.packaging import package_version
from harbourmaster.services.platform import Platform
from monitoring.helpers import OWNER, PROJECT, current_frame, fitted, log_rows, register_and_deploy, training_frame

GATES = {
    "gates": [{"kind": "evidence", "check": "drift"}, {"kind": "evidence", "check": "quality", "max_age_hours": 1}]
}


def test_evidence_gate_blocks_without_evidence_and_passes_with_it(platform: Platform) -> None:
    champion = register_and_deploy(platform, metrics={"accuracy": 0.80, "f1": 0.78})
    frame, target = training_frame(3000, seed=9)
    frame["income"] = frame["income"] + 10.0  # trained on the data production now sends
    bundle = package_version(
        fitted(frame, target),
        features=frame,
        target=target,
        metrics={"accuracy": 0.82, "f1": 0.78},
        lineage={},
        created_by="someone",
        sensitive=["email"],
    )
    candidate = platform.registry.register_bundle(OWNER, PROJECT, bundle).number
    log_rows(platform, current_frame(600, shift=1.0), version=champion)
    platform.environments.configure(OWNER, "dev", GATES)

    verdicts = {v.gate: v for v in platform.promotions.check(OWNER, PROJECT, candidate, "dev")}
    assert not verdicts["evidence drift"].passed and "no drift evidence recorded" in verdicts["evidence drift"].reason
    assert f"harbourmaster evidence {PROJECT} {candidate} --to dev --check drift" in verdicts["evidence drift"].fix
    with pytest.raises(PromotionRefusedError, match="refused by 2 gate"):
        platform.promotions.promote(OWNER, PROJECT, candidate, "dev")

    # a window without traffic: the drift check fails (nothing to measure on); quality falls back to held out
    empty = platform.evidence.record(OWNER, PROJECT, candidate, "dev", window="2020-01-01..2020-01-02")
    by_check = {e.check: e for e in empty}
    assert not by_check["drift"].passed and "holds no answer" in by_check["drift"].summary
    assert by_check["quality"].passed and "held-out metrics" in by_check["quality"].summary
    verdicts = {v.gate: v for v in platform.promotions.check(OWNER, PROJECT, candidate, "dev")}
    assert not verdicts["evidence drift"].passed and verdicts["evidence quality"].passed

    recorded = {e.check: e for e in platform.evidence.record(OWNER, PROJECT, candidate, "dev", checks=["drift"])}
    drift = recorded["drift"]
    assert drift.passed and "drifts less than champion" in drift.summary
    assert drift.details["champion"]["drifted"] == ["income", "region"]
    assert drift.details["candidate"]["drifted"] == ["region"]  # trained on the shifted income
    assert [link.split(":")[0] for link in drift.reports] == ["drift-report", "drift-report"]
    verdicts = {v.gate: v for v in platform.promotions.check(OWNER, PROJECT, candidate, "dev")}
    assert all(v.passed for v in verdicts.values()), verdicts
    assert drift.reports[0] in verdicts["evidence drift"].reason  # the link to the report behind it

    platform.promotions.promote(OWNER, PROJECT, candidate, "dev")
    assert platform.deployments.get(OWNER, PROJECT, "dev").champion.number == candidate
    listed = platform.evidence.list(OWNER, PROJECT, version=candidate, environment="dev")
    assert [e.check for e in listed] == ["drift", "quality", "drift"]
    with pytest.raises(InvalidInputError, match="unknown evidence check"):
        platform.evidence.record(OWNER, PROJECT, candidate, "dev", checks=["vibes"])
