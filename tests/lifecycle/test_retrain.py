"""Retraining on production data (the project's own code on the labelled production rows) and proving the
fix (the retrained version against the champion on the held-out rows, drift against both references), on a
real store with real training; the refusals register nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from harbourmaster.client import Client
from harbourmaster.errors import DataProblemError, InvalidInputError
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import RunRow

from .projects import PROJECT, SYSTEM, TOML, frame, log_traffic, write_project

GATES = {"gates": [{"kind": "evidence", "check": "beats_champion"}, {"kind": "evidence", "check": "drift_fixed"}]}


def _champion(platform: Platform, folder: Path) -> int:
    number = platform.training.train(SYSTEM, folder).version.number
    platform.deployments.deploy(SYSTEM, PROJECT, number, "dev")
    return number


def _runs(platform: Platform, kind: str) -> list[RunRow]:
    with platform.db.reader() as session:
        return list(session.scalars(select(RunRow).where(RunRow.kind == kind)))


def test_retrain_on_shifted_production_data_beats_the_champion_and_fixes_the_drift(
    platform: Platform, tmp_path: Path
) -> None:
    champion = _champion(platform, write_project(tmp_path / "shifty"))
    ids = log_traffic(platform, frame(400, seed=5, shifted=True), version=champion, environment="dev")
    with Client(settings=platform.settings) as hm:
        result = hm.retrain(PROJECT, "dev")
        version, run = result.version, result.run
        assert version.number == champion + 1
        record = version.lineage["retrain"]
        assert record["environment"] == "dev" and record["champion"]["version"] == champion
        assert record["champion"]["digest"] == hm.version(PROJECT, champion).digest
        assert record["rows"] == {
            "answered": 400,
            "production_labelled": 400,
            "production_training": 300,
            "training_source_mixed": 0,
            "held_out": 100,
        }
        # the newest quarter is held out: the requests logged from the 301st on
        assert record["holdout"]["rows"] == 100 and record["holdout"]["fraction"] == 0.25
        assert record["window"]["to"] < record["holdout"]["from"] <= record["holdout"]["to"]
        assert record["run_by"] == hm.actor.name
        assert record["code"].startswith(f"champion v{champion}'s bundle")
        assert version.lineage["data"]["training_rows"] + version.lineage["data"]["holdout_rows"] == 300
        assert version.lineage["code"] == hm.version(PROJECT, champion).lineage["code"]  # the same code, new data
        assert run.kind == "retrain" and run.environment == "dev" and run.status == "succeeded"
        assert run.version_number == version.number and run.details["retrain"] == record

        proof = hm.evaluate(PROJECT, version.number, "dev")
    report = proof.report
    assert report.verdict == "beats" and report.rows == 100 and report.p_value < 1e-6
    assert report.candidate == version.number and report.champion == champion
    by_metric = {m.metric: m for m in report.metrics}
    assert by_metric["accuracy"].candidate > 0.9 > 0.7 > by_metric["accuracy"].champion
    assert by_metric["accuracy"].better is True
    assert report.interval[0] > 0  # the whole confidence interval of the improvement is above zero
    assert report.candidate_wins > report.champion_wins
    assert proof.drift is not None and proof.drift.passed and proof.drift.fixed == ["x1"] and proof.drift.new == []
    evidence = {e.check: e for e in proof.evidence}
    assert evidence["beats_champion"].passed and evidence["drift_fixed"].passed
    assert evidence["beats_champion"].reports == [f"challenger-report:{report.id}"]
    assert [link.split(":")[0] for link in evidence["drift_fixed"].reports] == ["drift-report", "drift-report"]
    stored = platform.retraining.report(SYSTEM, report.id)
    assert stored.verdict == "beats" and stored.summary == report.summary
    assert set(ids[300:]) and report.window_start is not None  # held-out rows only

    platform.environments.configure(SYSTEM, "dev", GATES)
    verdicts = {v.gate: v for v in platform.promotions.check(SYSTEM, PROJECT, version.number, "dev")}
    assert verdicts["evidence beats_champion"].passed and verdicts["evidence drift_fixed"].passed, verdicts


def test_the_same_model_on_the_same_data_is_a_tie_and_the_gate_refuses(sqlite_settings, tmp_path: Path) -> None:
    platform = Platform(sqlite_settings)
    try:
        champion = _champion(platform, write_project(tmp_path / "shifty"))
        log_traffic(platform, frame(400, seed=7), version=champion, environment="dev")  # no shift at all
        with Client(settings=platform.settings) as hm:
            retrained = hm.retrain(PROJECT, "dev").version.number
            proof = hm.evaluate(PROJECT, retrained, "dev")
        assert proof.report.verdict == "tie", proof.report.summary
        assert proof.report.p_value >= 0.05 and "does not beat" in proof.report.summary
        assert proof.report.interval[0] <= 0 <= proof.report.interval[1]
        evidence = {e.check: e for e in proof.evidence}
        assert not evidence["beats_champion"].passed
        assert evidence["drift_fixed"].passed and "no feature drifts" in evidence["drift_fixed"].summary
        platform.environments.configure(SYSTEM, "dev", GATES)
        verdicts = {v.gate: v for v in platform.promotions.check(SYSTEM, PROJECT, retrained, "dev")}
        assert not verdicts["evidence beats_champion"].passed
        assert "does not beat" in verdicts["evidence beats_champion"].reason
        with pytest.raises(InvalidInputError, match="harbourmaster evaluate"):
            platform.evidence.record(SYSTEM, PROJECT, retrained, "dev", checks=["beats_champion"])
    finally:
        platform.close()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no feedback", "no ground truth has arrived for shifty in dev"),
        ("too few", "only 40 labelled production row"),
        ("schema", "x1"),
        ("mix without data", "needs the original training source"),
    ],
)
def test_refusals_say_what_is_missing_and_register_nothing(
    sqlite_settings, tmp_path: Path, case: str, message: str
) -> None:
    platform = Platform(sqlite_settings)
    try:
        champion = _champion(platform, write_project(tmp_path / "shifty"))
        data = frame(200, seed=3, shifted=True)
        labelled = {"no feedback": 0, "too few": 40}.get(case)
        if case == "schema":
            data["x1"] = data["x1"].astype(object)
            data.loc[data.index[:20], "x1"] = "unknown"  # text where v1 was trained on numbers
        log_traffic(platform, data, version=champion, environment="dev", labelled=labelled)
        with Client(settings=platform.settings) as hm, pytest.raises(DataProblemError) as refused:
            hm.retrain(PROJECT, "dev", mix_training=0.5 if case == "mix without data" else 0.0)
        assert message in refused.value.message, refused.value.message
        assert refused.value.hint
        if case == "no feedback":
            assert f"POST /v1/projects/{PROJECT}/feedback" in refused.value.hint
        assert [v.number for v in platform.registry.list_versions(SYSTEM, PROJECT)] == [champion]
        assert _runs(platform, "retrain") == []
    finally:
        platform.close()


def test_mixing_the_training_source_and_a_window(sqlite_settings, tmp_path: Path) -> None:
    platform = Platform(sqlite_settings)
    try:
        folder = write_project(tmp_path / "shifty")
        champion = _champion(platform, folder)
        log_traffic(platform, frame(300, seed=4, shifted=True), version=champion, environment="dev")
        with Client(settings=platform.settings) as hm:
            record = hm.retrain(PROJECT, "dev", last=200, mix_training=0.1, project_dir=folder).version.lineage[
                "retrain"
            ]
        assert record["rows"]["production_labelled"] == 200 and record["rows"]["held_out"] == 50
        assert record["rows"]["training_source_mixed"] == 60  # 10 % of the 600 training rows
        assert record["mix_source"] == "data/train.csv" and record["code"] == f"project folder {folder}"
        assert record["window"]["last"] == 200
    finally:
        platform.close()


def test_retrain_settings_are_checked_in_the_project_file(tmp_path: Path) -> None:
    from harbourmaster.errors import ProjectFileError
    from harbourmaster.services.training import read_project_spec

    folder = write_project(
        tmp_path / "shifty", TOML.replace("holdout = 0.25\n", "holdout = 2\n").replace("min_rows = 60", "min_rows = 0")
    )
    with pytest.raises(ProjectFileError, match="retrain"):
        read_project_spec(folder)
