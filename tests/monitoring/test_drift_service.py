"""Drift reports of a deployment: the window read from the prediction log, stored per feature (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from harbourmaster.core.drift import PREDICTION, DriftMethod
from harbourmaster.errors import InvalidInputError, NotFoundError
from harbourmaster.services.platform import Platform
from monitoring.helpers import OWNER, PROJECT, current_frame, log_rows, register_and_deploy, training_frame


def test_shifted_window_drifts_and_is_stored_as_a_series(platform: Platform) -> None:
    version = register_and_deploy(platform)
    current = current_frame(800, shift=1.0)
    current.loc[:9, "region"] = "zzz"  # unseen category
    current.loc[10:29, "age"] = np.nan
    log_rows(platform, current, version=version, outputs=[0] * 600 + [1] * 200)
    report = platform.drift.report(OWNER, PROJECT, "dev", window="1h")

    assert report.rows == 800
    assert report.reference == "sample"
    assert report.reference_rows == 3000
    by_name = {f.feature: f for f in report.features}
    assert "email" in by_name and by_name["email"].statistic is None  # sensitive: never read, never measured
    # a reference of 3000 rows: Evidently's large-sample defaults
    assert by_name["income"].method is DriftMethod.WASSERSTEIN
    assert by_name["region"].method is DriftMethod.JENSENSHANNON
    assert by_name["member"].method is DriftMethod.JENSENSHANNON  # two values: categorical
    assert by_name["income"].drifted and by_name["region"].drifted
    assert not by_name["age"].drifted and not by_name["score"].drifted
    assert [f.feature for f in report.features[:2]] == sorted(["income", "region"], key=lambda n: -by_name[n].score)
    # the statistic is scipy's on the same data
    frame, _ = training_frame(3000)
    expected = stats.wasserstein_distance(frame["income"], current["income"]) / np.std(frame["income"])
    assert by_name["income"].statistic == pytest.approx(expected)
    # data quality
    assert by_name["region"].quality.unseen == pytest.approx(10 / 800)
    assert by_name["region"].quality.unseen_values == ["zzz"]
    assert by_name["age"].quality.missing_current == pytest.approx(20 / 800)
    assert by_name["income"].quality.out_of_range is not None and by_name["income"].quality.out_of_range > 0
    # prediction drift against the version's own predictions on its reference sample
    assert report.prediction is not None and report.prediction.feature == PREDICTION
    assert report.prediction.statistic is not None
    # verdict: 2 of 5 measured features drift, below the default share of one half
    assert report.drifted_share == pytest.approx(2 / 5)
    assert not report.drifted

    series = platform.drift.history(OWNER, PROJECT, "dev", feature="income")
    assert [(r.report_id, r.method, r.drifted) for r in series] == [(report.id, "wasserstein", True)]
    verdicts = platform.drift.history(OWNER, PROJECT, "dev", feature="__dataset__")
    assert verdicts[0].statistic == pytest.approx(0.4) and verdicts[0].details["drifted_features"] == [
        f.feature for f in report.features if f.drifted
    ]


def test_configured_methods_share_and_last_rows(platform: Platform) -> None:
    version = register_and_deploy(platform)
    log_rows(platform, current_frame(300), version=version, ts=datetime.now(UTC) - timedelta(days=3))
    log_rows(platform, current_frame(200, shift=1.0), version=version)
    options = {
        "drift_share": 0.2,
        "features": {"income": {"method": "ks", "threshold": 0.01}, "age": {"method": "psi", "threshold": 0.5}},
    }
    report = platform.drift.report(OWNER, PROJECT, "dev", window="200", options=options)
    by_name = {f.feature: f for f in report.features}
    assert report.rows == 200
    assert by_name["income"].method is DriftMethod.KS and by_name["income"].threshold == 0.01
    assert by_name["age"].method is DriftMethod.PSI and not by_name["age"].drifted
    assert report.drifted  # 2 of 5 >= 0.2
    # the older rows only: nothing drifts
    old = platform.drift.report(OWNER, PROJECT, "dev", window="7d", options={"drift_share": 0.9})
    assert old.rows == 500


def test_empty_window_and_other_versions_rows(platform: Platform) -> None:
    version = register_and_deploy(platform)
    log_rows(platform, current_frame(50), version=version + 1)  # another version's rows are not this window's
    report = platform.drift.report(OWNER, PROJECT, "dev", window="1h")
    assert report.rows == 0
    assert not report.drifted and report.drifted_share == 0.0
    assert all(f.statistic is None for f in report.features)
    assert {f.note for f in report.features if f.feature != "email"} == {"no rows in the window"}
    assert "holds no logged prediction" in report.notes[0]


def test_bundle_without_sample_falls_back_to_the_profile(platform: Platform) -> None:
    version = register_and_deploy(platform, sample_rows=0)
    log_rows(platform, current_frame(500, shift=1.0), version=version)
    report = platform.drift.report(OWNER, PROJECT, "dev", window="1h")
    by_name = {f.feature: f for f in report.features}
    assert report.reference == "profile"
    assert by_name["income"].method is DriftMethod.JENSENSHANNON and by_name["income"].drifted
    assert "histogram" in (by_name["income"].note or "")
    assert report.prediction is not None and report.prediction.statistic is None
    exact = platform.drift.report(OWNER, PROJECT, "dev", window="1h", options={"method": "ks"})
    assert all(
        f.statistic is None and "needs reference rows" in (f.note or "")
        for f in exact.features
        if f.kind == "numeric" and f.feature != "email"
    )


def test_bad_requests_are_clear(platform: Platform) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        platform.drift.report(OWNER, "nope", "dev")
    register_and_deploy(platform)
    with pytest.raises(NotFoundError, match="not deployed in test"):
        platform.drift.report(OWNER, PROJECT, "test")
    with pytest.raises(InvalidInputError, match="unknown drift method 'kss'"):
        platform.drift.report(OWNER, PROJECT, "dev", options={"method": "kss"})
    with pytest.raises(InvalidInputError, match=r"features\.income\.method"):
        platform.drift.report(OWNER, PROJECT, "dev", options={"features": {"income": {"method": "kss"}}})
    with pytest.raises(InvalidInputError, match="does not have: salary"):
        platform.drift.report(OWNER, PROJECT, "dev", options={"features": {"salary": {"method": "ks"}}})
    with pytest.raises(InvalidInputError, match="is not a window"):
        platform.drift.report(OWNER, PROJECT, "dev", window="yesterday")
    assert platform.drift.history(OWNER, PROJECT, "dev") == []  # nothing stored by a refused request


def test_a_candidate_measured_on_the_champions_window(platform: Platform) -> None:
    champion = register_and_deploy(platform)
    frame, target = training_frame(3000, seed=9)
    frame["income"] = frame["income"] + 10.0  # a candidate trained on the shifted data
    from harbourmaster.services.packaging import package_version
    from monitoring.helpers import fitted

    bundle = package_version(
        fitted(frame, target),
        features=frame,
        target=target,
        metrics={},
        lineage={},
        created_by="t",
        sensitive=["email"],
    )
    candidate = platform.registry.register_bundle(OWNER, PROJECT, bundle).number
    log_rows(platform, current_frame(600, shift=1.0), version=champion)
    mine = platform.drift.report(OWNER, PROJECT, "dev", window="1h")
    theirs = platform.drift.report(OWNER, PROJECT, "dev", window="1h", reference_version=candidate)
    assert (theirs.version, theirs.served_version, theirs.rows) == (candidate, champion, 600)
    income = {r.version: next(f for f in r.features if f.feature == "income") for r in (mine, theirs)}
    assert income[champion].drifted and not income[candidate].drifted
    assert theirs.prediction is None and "against the reference of" in theirs.notes[-1]
    with pytest.raises(NotFoundError, match="has no version 99"):
        platform.drift.report(OWNER, PROJECT, "dev", reference_version=99)
