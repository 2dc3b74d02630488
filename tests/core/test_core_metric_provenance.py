"""The metric gate judges computed numbers on enough rows (pure: core/gates.py, core/provenance.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harbourmaster.core.environments import ApprovalPolicy
from harbourmaster.core.gates import CandidateVersion, GateContext, MetricThresholdGate
from harbourmaster.core.provenance import COMPUTED, REPORTED, MetricsProvenance


def verdict(source: str, rows: int | None, value: float = 0.99999, **context: object):
    candidate = CandidateVersion(
        project="p",
        number=3,
        digest="d" * 64,
        created_by="dana",
        metrics={"accuracy": value},
        input_schema={},
        output_schema={},
        metrics_source=source,
        evaluation_rows=rows,
    )
    ctx = GateContext(
        candidate=candidate,
        environment="prod",
        approval_policy=ApprovalPolicy(),
        champion=None,
        approvals=(),
        now=datetime.now(UTC),
        **context,
    )
    return MetricThresholdGate(metric="accuracy", min=0.999).evaluate(ctx)


def test_reported_numbers_fail_unless_the_environment_allows_them():
    refused = verdict(REPORTED, 500)
    assert not refused.passed and "is reported by its registrant" in refused.reason
    assert "allow_reported_metrics" in refused.fix
    assert verdict(REPORTED, 500, allow_reported_metrics=True).passed
    assert verdict(COMPUTED, 500).passed
    judged = verdict(COMPUTED, 500, value=0.958)
    assert not judged.passed and judged.reason == "accuracy = 0.9580 (needs >= 0.999)"


@pytest.mark.parametrize("rows", [None, 0, 5, 29])
def test_too_few_rows_are_unfit(rows):
    unfit = verdict(COMPUTED, rows)
    assert not unfit.passed and "unfit for metric gates" in unfit.reason and "at least 30" in unfit.reason
    assert verdict(COMPUTED, 5, min_evaluation_rows=5).passed


def test_reported_provenance_takes_only_a_sane_claimed_row_count():
    assert MetricsProvenance.reported({"evaluation": {"rows": 120}}) == MetricsProvenance(REPORTED, 120)
    for claim in ({"evaluation": {"rows": "many"}}, {"evaluation": {"rows": True}}, {"evaluation": 3}, {}, None):
        assert MetricsProvenance.reported(claim) == MetricsProvenance(REPORTED, None)
    assert MetricsProvenance.reported({"evaluation": {"rows": 2**40}}).rows is None
    assert MetricsProvenance.computed(143) == MetricsProvenance(COMPUTED, 143)
