"""Model quality: captured predictions joined to feedback, scored like scikit-learn, stored, and watched
by the model_quality monitor (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from harbourmaster.core.project_spec import parse_project_spec
from harbourmaster.core.quality import QualitySettings, compute_quality
from harbourmaster.errors import InvalidInputError, NotFoundError, ProjectFileError
from harbourmaster.services.platform import Platform
from harbourmaster.services.quality import quality_settings
from harbourmaster.store.tables import GateEvidenceRow
from monitoring.helpers import OWNER, PROJECT, current_frame, fitted, log_rows, register_and_deploy, training_frame


def _answers(frame: pd.DataFrame) -> tuple[list[int], list[dict[str, float]], np.ndarray]:
    model = fitted(*training_frame(3000))
    labels = model.predict(frame)
    proba = model.predict_proba(frame)
    return [int(v) for v in labels], [{"0": float(p[0]), "1": float(p[1])} for p in proba], proba[:, 1]


def _truth(frame: pd.DataFrame, seed: int, flip: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = (frame["income"].to_numpy() + rng.normal(0, 5, len(frame)) > 50).astype(int)
    flipped = rng.random(len(frame)) < flip
    return np.where(flipped, 1 - truth, truth)


def _feedback(platform: Platform, truth: np.ndarray, rows: range, first: int = 0) -> None:
    items = [(f"req-{(first + i) // 10}", (first + i) % 10, int(truth[i])) for i in rows]
    platform.feedback.record(OWNER, PROJECT, "dev", items, classes=[0, 1])


def test_quality_figures_equal_sklearns_and_are_stored(platform: Platform) -> None:
    held_out = {"accuracy": 0.9, "f1": 0.9, "roc_auc": 0.95}
    version = register_and_deploy(platform, metrics=held_out, quality={"min_labelled_rows": 50})
    current = current_frame(400)
    labels, probabilities, positive = _answers(current)
    log_rows(platform, current, version=version, outputs=labels, probabilities=probabilities)

    # no ground truth yet: a defined answer, nothing judged
    empty = platform.quality.report(OWNER, PROJECT, "dev", window="1h")
    assert (empty.rows, empty.labelled, empty.unlabelled, empty.judged) == (400, 0, 400, False)
    assert empty.values == {} and "has ground truth yet" in empty.notes[0]

    truth = _truth(current, seed=3)
    _feedback(platform, truth, range(300))
    platform.feedback.record(OWNER, PROJECT, "dev", [("req-30", 0, 7)])  # a class v1 does not have
    report = platform.quality.report(OWNER, PROJECT, "dev", window="1h")
    assert (report.rows, report.labelled, report.unlabelled, report.unknown_labels) == (400, 300, 99, 1)
    y, p, s = truth[:300], np.array(labels[:300]), positive[:300]
    assert report.values["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert report.values["f1"] == pytest.approx(skm.f1_score(y, p))
    assert report.values["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    by_name = {m.metric: m for m in report.metrics}
    assert by_name["accuracy"].baseline == 0.9
    assert by_name["accuracy"].drop == pytest.approx((0.9 - report.values["accuracy"]) / 0.9)
    assert report.judged and report.degraded == any(m.drop > 0.05 for m in report.metrics)
    assert any("class v1 does not have" in note for note in report.notes)
    assert [r.id for r in platform.quality.history(OWNER, PROJECT, "dev")] == [report.id, empty.id]

    # the last N rows: 100 answers, each labelled, unlabelled or of an unknown class
    latest = platform.quality.report(OWNER, PROJECT, "dev", window="100")
    assert latest.rows == 100 and latest.labelled + latest.unlabelled + latest.unknown_labels == 100
    # a window with no rows, and bad requests
    old = platform.quality.report(OWNER, PROJECT, "dev", window=f"2020-01-01..{datetime(2020, 2, 1).date()}")
    assert old.rows == 0 and "holds no logged prediction" in old.notes[0]
    with pytest.raises(InvalidInputError, match="is not a window"):
        platform.quality.report(OWNER, PROJECT, "dev", window="yesterday")
    with pytest.raises(NotFoundError, match="no champion in test"):
        platform.quality.report(OWNER, PROJECT, "test")


def test_monitor_alerts_on_a_drop_and_resolves(platform: Platform) -> None:
    version = register_and_deploy(
        platform, metrics={"accuracy": 0.85}, quality={"window": "200", "min_labelled_rows": 100, "tolerance": 0.1}
    )
    now = datetime.now(UTC)

    def batch(first: int, rows: int, flip: float, minutes_ago: int, seed: int) -> None:
        frame = current_frame(rows, seed=seed)
        labels, probabilities, _ = _answers(frame)
        stamp = now - timedelta(minutes=minutes_ago)
        log_rows(platform, frame, version=version, outputs=labels, probabilities=probabilities, ts=stamp, first=first)
        truth = np.where(np.random.default_rng(seed).random(rows) < flip, 1 - np.array(labels), np.array(labels))
        _feedback(platform, truth, range(rows), first=first)

    def drop_alerts() -> list[tuple[str, str]]:
        return [
            (a.rule, a.status)
            for a in platform.alerts.list(OWNER, include_resolved=True)
            if a.monitor == "model_quality"
        ]

    batch(0, 200, flip=0.0, minutes_ago=30, seed=11)  # every answer right
    old = platform.quality.measure(PROJECT, "dev")
    for stale in (old, old.model_copy(update={"id": "linked"})):  # two reports from 40 days ago
        platform.quality.save(stale.model_copy(update={"computed_at": now - timedelta(days=40)}))
    with platform.db.transaction() as session:  # evidence links to one of them: that one is kept
        session.add(
            GateEvidenceRow(
                project=PROJECT,
                version=version,
                digest="d" * 64,
                environment="dev",
                check="quality",
                passed=True,
                summary="s",
                reports=["quality-report:linked"],
                details={},
                recorded_by="t",
            )
        )
    report = platform.monitoring.run_once()
    stored = platform.quality.history(OWNER, PROJECT, "dev")
    assert "linked" in [r.id for r in stored] and old.id not in [r.id for r in stored]
    drop = [r for r in report.results if r.monitor == "model_quality" and r.metric == "drop"]
    assert [r.status for r in drop] == ["ok"] and drop_alerts() == []
    assert {(r.metric, r.status) for r in report.results if r.monitor == "model_quality"} == {
        ("measurable", "ok"),
        ("labelled-rows", "ok"),
        ("drop", "ok"),
    }

    batch(200, 200, flip=0.4, minutes_ago=20, seed=12)  # 40% wrong: accuracy ~0.6 vs 0.85 held out
    report = platform.monitoring.run_once()
    drop = next(r for r in report.results if r.monitor == "model_quality" and r.metric == "drop")
    assert drop.status == "critical" and "accuracy" in drop.summary and drop.evidence.startswith("quality-report:")
    assert drop_alerts() == [("model_quality.drop", "firing")]

    batch(400, 200, flip=0.0, minutes_ago=10, seed=13)
    platform.monitoring.run_once()
    assert drop_alerts() == [("model_quality.drop", "resolved")]


def test_regression_and_multiclass_metrics_are_sklearns() -> None:
    rng = np.random.default_rng(5)
    truth = rng.normal(10, 3, 200)
    prediction = truth + rng.normal(0, 1, 200)
    frame = pd.DataFrame({"prediction": prediction, "truth": truth})
    frame.loc[0, "truth"] = np.nan  # not labelled
    values, used, _ = compute_quality(frame, "regression", None)
    y, p = truth[1:], prediction[1:]
    assert used == 199
    assert values["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p))
    assert values["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert values["r2"] == pytest.approx(skm.r2_score(y, p))

    classes = ["a", "b", "c"]
    labels = rng.choice(classes, 300)
    guesses = np.where(rng.random(300) < 0.7, labels, rng.choice(classes, 300))
    frame = pd.DataFrame({"prediction": guesses, "truth": labels})
    frame.loc[:4, "truth"] = "zzz"  # unknown class: left out
    values, used, notes = compute_quality(frame, "classification", classes)
    assert used == 295
    assert values["accuracy"] == pytest.approx(skm.accuracy_score(labels[5:], guesses[5:]))
    assert values["f1"] == pytest.approx(skm.f1_score(labels[5:], guesses[5:], average="macro"))
    assert values["roc_auc"] is None and "binary" in notes[0]
    assert compute_quality(frame.iloc[:0], "classification", classes)[:2] == (dict.fromkeys(values), 0)
    with pytest.raises(ValueError, match="unknown quality metric"):
        QualitySettings(metrics=["accuracyy"])


def test_project_file_quality_section() -> None:
    base = {"project": {"name": "p"}, "data": {"source": "d.csv", "target": "y"}, "pipeline": {"train": "t:f"}}
    quality = {"window": "500", "tolerance": 0.1, "min_labelled_rows": 20, "metrics": ["accuracy"]}
    spec = parse_project_spec({**base, "monitoring": {"quality": quality}}, "hm.toml")
    assert quality_settings(spec.monitoring.quality) == QualitySettings(**quality)
    for bad, message in (
        ({"window": "weekly"}, "not a window"),
        ({"tolerance": 0}, "tolerance"),
        ({"min_labeled_rows": 5}, "min_labeled_rows"),
        ({"metrics": ["acc"]}, "unknown quality metric"),
    ):
        with pytest.raises(ProjectFileError, match=message):
            parse_project_spec({**base, "monitoring": {"quality": bad}}, "hm.toml")
