"""The registry on both metadata backends: projects, numbered versions, tags, diffs,
loading back, runs, concurrent numbering, and migrations that match the tables."""

from __future__ import annotations

import importlib
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sqlalchemy import inspect, text

from harbourmaster.bundle.builder import Bundle
from harbourmaster.bundle.code import code_modules, project_imports, snapshot_project_code
from harbourmaster.config import Settings
from harbourmaster.demo.story import set_param
from harbourmaster.errors import InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.services.packaging import package_version
from harbourmaster.services.platform import Platform
from harbourmaster.store.db import MIGRATIONS_DIR, Database, migrate
from harbourmaster.store.tables import Base

ACTOR = Actor.local_owner()
PROJECT = "breast-cancer"
TARGET = "malignant"


def _demo_frame(project_dir: Path) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_csv(project_dir / "data" / "train.csv")
    return frame.drop(columns=[TARGET]), frame[TARGET]


def _demo_pipeline(project_dir: Path, features: pd.DataFrame, target: pd.Series, c: float = 0.05) -> Any:
    """The demo's prepare step + model, fitted here (outside the platform)."""
    with project_imports(project_dir, ("features", "model")):
        prepare = importlib.import_module("features").prepare
        model = importlib.import_module("model").train(C=c)
        return Pipeline([("prepare", FunctionTransformer(prepare, validate=False)), ("model", model)]).fit(
            features, target
        )


def _packaged_demo(project_dir: Path) -> tuple[Any, Bundle, pd.DataFrame]:
    """A fitted demo pipeline and its bundle, built as a notebook would."""
    features, target = _demo_frame(project_dir)
    code_files = snapshot_project_code(project_dir)
    with project_imports(project_dir, code_modules(code_files)):
        pipeline = _demo_pipeline(project_dir, features, target)
        bundle = package_version(
            pipeline,
            features=features,
            target=target,
            metrics={"accuracy": float(pipeline.score(features, target))},
            lineage={"parameters": {"C": 0.05}},
            created_by=ACTOR.name,
            code_files=code_files,
            prepare="features:prepare",
        )
    return pipeline, bundle, features


# -- projects ---------------------------------------------------------------------


def test_create_and_list_projects(platform: Platform) -> None:
    assert platform.registry.list_projects(ACTOR) == []

    created = platform.registry.create_project(ACTOR, "churn", "who leaves")
    platform.registry.create_project(ACTOR, "alpha")
    again = platform.registry.create_project(ACTOR, "churn")  # idempotent, keeps the description

    projects = platform.registry.list_projects(ACTOR)
    assert [project.name for project in projects] == ["alpha", "churn"]
    assert created.name == again.name == "churn"
    churn = platform.registry.get_project(ACTOR, "churn")
    assert churn.description == "who leaves"
    assert churn.created_by == ACTOR.name
    assert churn.version_count == 0
    assert churn.latest_version is None
    assert churn.created_at.tzinfo is not None


def test_invalid_project_name_is_refused(platform: Platform) -> None:
    with pytest.raises(InvalidInputError) as caught:
        platform.registry.create_project(ACTOR, "Bad Name!")
    assert "Bad Name!" in caught.value.message
    assert caught.value.hint
    assert platform.registry.list_projects(ACTOR) == []


# -- versions -----------------------------------------------------------------------


def test_training_numbers_versions_1_2_3_and_latest_follows(platform: Platform, demo_project: Path) -> None:
    results = [platform.training.train(ACTOR, demo_project) for _ in range(3)]

    assert [result.version.number for result in results] == [1, 2, 3]
    assert [summary.number for summary in platform.registry.list_versions(ACTOR, PROJECT)] == [1, 2, 3]
    assert platform.registry.get_version(ACTOR, PROJECT, "latest").number == 3
    assert platform.registry.get_version(ACTOR, PROJECT, "v2").number == 2
    assert [result.version.lineage["parent_version"] for result in results] == [None, 1, 2]
    project = platform.registry.get_project(ACTOR, PROJECT)
    assert (project.version_count, project.latest_version) == (3, 3)
    assert project.description.startswith("Malignant or benign")

    detail = platform.registry.get_version(ACTOR, PROJECT, 1)
    assert detail.digest == results[0].version.digest
    assert set(detail.metrics) == {"accuracy", "roc_auc", "f1"}
    assert detail.metrics["accuracy"] > 0.9
    assert detail.lineage["data"]["source"] == "data/train.csv"
    assert detail.lineage["data"]["rows"] == 569  # the data set the profile and fingerprint describe
    assert (detail.lineage["data"]["training_rows"], detail.lineage["data"]["holdout_rows"]) == (426, 143)
    assert len(detail.lineage["data"]["fingerprint"]) == 64
    assert detail.lineage["parameters"]["C"] == 0.05
    assert detail.created_by == ACTOR.name
    assert [column["name"] for column in detail.input_schema["columns"]][:2] == ["mean radius", "mean texture"]
    assert TARGET not in [column["name"] for column in detail.input_schema["columns"]]


def test_registered_bundle_gets_the_next_number_and_loads_back_identically(
    platform: Platform, demo_project: Path
) -> None:
    pipeline, bundle, features = _packaged_demo(demo_project)

    trained = platform.training.train(ACTOR, demo_project)
    first = platform.registry.register_bundle(ACTOR, PROJECT, bundle, "from a notebook")
    second = platform.registry.register_bundle(ACTOR, "other-project", bundle)

    assert trained.version.number == 1
    assert first.number == 2
    assert first.description == "from a notebook"
    assert first.digest == bundle.digest
    assert second.number == 1  # numbering is per project
    assert platform.artifacts.exists(f"bundles/{bundle.digest}.json")

    loaded = platform.registry.load_version(ACTOR, PROJECT, 2)
    assert loaded.digest == bundle.digest
    np.testing.assert_array_equal(loaded.predict(features), pipeline.predict(features))
    np.testing.assert_array_equal(loaded.predict_proba(features), pipeline.predict_proba(features))
    # Column order of the request does not matter: the input schema decides.
    shuffled = features[list(reversed(features.columns))]
    np.testing.assert_array_equal(loaded.predict_proba(shuffled), pipeline.predict_proba(features))


def test_trained_version_predicts_like_the_same_pipeline_fitted_by_hand(platform: Platform, demo_project: Path) -> None:
    result = platform.training.train(ACTOR, demo_project)
    features, target = _demo_frame(demo_project)
    # The project file holds out 25% with seed 7, stratified: do the same by hand.
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=0.25, random_state=7, stratify=target
    )
    by_hand = _demo_pipeline(demo_project, x_train, y_train, c=0.05)

    loaded = platform.registry.load_version(ACTOR, PROJECT, "latest")

    np.testing.assert_allclose(loaded.predict_proba(features), by_hand.predict_proba(features), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(loaded.predict(features), by_hand.predict(features))
    assert result.version.metrics["accuracy"] == pytest.approx(accuracy_score(y_test, by_hand.predict(x_test)))


def test_tags_set_overwrite_and_delete(platform: Platform, demo_project: Path) -> None:
    platform.training.train(ACTOR, demo_project)
    platform.training.train(ACTOR, demo_project)

    tagged = platform.registry.set_tag(ACTOR, PROJECT, 1, "candidate", "first try")
    assert tagged.tags == {"candidate": "first try"}
    platform.registry.set_tag(ACTOR, PROJECT, 1, "candidate", "best logistic model")
    platform.registry.set_tag(ACTOR, PROJECT, "latest", "reviewed")

    versions = {summary.number: summary.tags for summary in platform.registry.list_versions(ACTOR, PROJECT)}
    assert versions == {1: {"candidate": "best logistic model"}, 2: {"reviewed": ""}}

    after = platform.registry.delete_tag(ACTOR, PROJECT, 1, "candidate")
    assert after.tags == {}
    assert platform.registry.get_version(ACTOR, PROJECT, 1).tags == {}
    assert platform.registry.get_version(ACTOR, PROJECT, 2).tags == {"reviewed": ""}

    with pytest.raises(NotFoundError) as caught:
        platform.registry.delete_tag(ACTOR, PROJECT, 1, "candidate")
    assert "candidate" in caught.value.message
    assert caught.value.hint and f"harbourmaster show {PROJECT} 1" in caught.value.hint
    with pytest.raises(InvalidInputError) as invalid:
        platform.registry.set_tag(ACTOR, PROJECT, 1, "has space")
    assert invalid.value.hint
    assert platform.registry.get_version(ACTOR, PROJECT, 1).tags == {}


def test_diff_after_changing_params_shows_metric_and_parameter_changes(platform: Platform, demo_project: Path) -> None:
    first = platform.training.train(ACTOR, demo_project).version
    set_param(demo_project / "harbourmaster.toml", 5.0)
    second = platform.training.train(ACTOR, demo_project).version

    diff = platform.registry.diff_versions(ACTOR, PROJECT, 1, "latest")

    assert (diff.old, diff.new) == (1, 2)
    assert [change.name for change in diff.metric_changes] == ["accuracy", "roc_auc", "f1"]
    for change in diff.metric_changes:
        assert change.before == pytest.approx(first.metrics[change.name])
        assert change.after == pytest.approx(second.metrics[change.name])
        assert change.delta == pytest.approx(change.after - change.before)
    assert any(change.delta != 0 for change in diff.metric_changes)
    assert diff.lineage_changes["parameters"].before["C"] == 0.05
    assert diff.lineage_changes["parameters"].after["C"] == 5.0
    assert "parent_version" not in diff.lineage_changes
    assert diff.input_changes == []
    assert diff.output_changes == []
    assert not diff.breaking


def test_unknown_project_or_version_is_not_found_with_a_hint(platform: Platform, demo_project: Path) -> None:
    with pytest.raises(NotFoundError) as no_projects:
        platform.registry.get_version(ACTOR, "nope", 1)
    assert "'nope'" in no_projects.value.message
    assert no_projects.value.hint and "harbourmaster train" in no_projects.value.hint

    platform.training.train(ACTOR, demo_project)

    with pytest.raises(NotFoundError) as unknown_project:
        platform.registry.list_versions(ACTOR, "nope")
    assert unknown_project.value.hint and PROJECT in unknown_project.value.hint  # names the known projects

    for call in (
        lambda: platform.registry.get_version(ACTOR, PROJECT, 7),
        lambda: platform.registry.load_version(ACTOR, PROJECT, 7),
        lambda: platform.registry.diff_versions(ACTOR, PROJECT, 1, 7),
        lambda: platform.registry.set_tag(ACTOR, PROJECT, 7, "x"),
    ):
        with pytest.raises(NotFoundError) as unknown_version:
            call()
        assert "no version 7" in unknown_version.value.message
        assert unknown_version.value.hint == f"list its versions with: harbourmaster versions {PROJECT}"

    with pytest.raises(InvalidInputError) as bad_ref:
        platform.registry.get_version(ACTOR, PROJECT, "newest")
    assert bad_ref.value.hint and "latest" in bad_ref.value.hint
    with pytest.raises(InvalidInputError):
        platform.registry.get_version(ACTOR, PROJECT, 0)


def test_training_records_a_succeeded_run(platform: Platform, demo_project: Path) -> None:
    result = platform.training.train(ACTOR, demo_project)
    platform.training.train(ACTOR, demo_project)

    runs = platform.training.list_runs(ACTOR, PROJECT)
    assert [run.version_number for run in runs] == [2, 1]  # newest first
    run = runs[-1]
    assert run.id == result.run.id
    assert run.status == "succeeded"
    assert run.kind == "train"
    assert run.error is None
    assert run.rows_in == 569
    assert run.created_by == ACTOR.name
    assert run.finished_at is not None and run.duration_seconds is not None and run.duration_seconds >= 0
    assert run.details["training_rows"] == 426
    assert run.details["holdout_rows"] == 143
    assert run.details["metrics"] == pytest.approx(result.version.metrics)
    assert run.details["project_dir"] == str(demo_project.absolute())
    with pytest.raises(NotFoundError) as unknown:  # a mistyped project is named, not an empty list
        platform.training.list_runs(ACTOR, "other")
    assert "breast-cancer" in (unknown.value.hint or "")


# -- concurrency ------------------------------------------------------------------------


def test_concurrent_registrations_number_versions_without_gaps_or_duplicates(
    platform: Platform, demo_project: Path
) -> None:
    writers = 6
    _, bundle, _ = _packaged_demo(demo_project)
    start = threading.Barrier(writers)

    def register(_: int) -> int:
        start.wait(timeout=30)
        return platform.registry.register_bundle(ACTOR, "race", bundle).number

    with ThreadPoolExecutor(max_workers=writers) as pool:
        numbers = list(pool.map(register, range(writers), timeout=120))

    assert sorted(numbers) == list(range(1, writers + 1))
    stored = platform.registry.list_versions(ACTOR, "race")
    assert [version.number for version in stored] == list(range(1, writers + 1))
    assert {version.digest for version in stored} == {bundle.digest}
    assert [project.name for project in platform.registry.list_projects(ACTOR)] == ["race"]
    assert platform.registry.get_project(ACTOR, "race").version_count == writers


def test_concurrent_registrations_from_separate_platforms_on_postgresql(
    postgres_url: str, tmp_path: Path, demo_project: Path
) -> None:
    """Replicas share only the database: here each writer has its own Platform (engine and pool)."""
    writers = 6
    _, bundle, _ = _packaged_demo(demo_project)
    start = threading.Barrier(writers)

    def register(index: int) -> int:
        settings = Settings.from_env(
            {"HARBOURMASTER_HOME": str(tmp_path / f"replica-{index}"), "HARBOURMASTER_DATABASE_URL": postgres_url}
        )
        settings = replace(settings, artifacts_url=str(tmp_path / "shared-artifacts"))
        replica = Platform(settings)  # applies migrations: all replicas start at once
        try:
            start.wait(timeout=60)
            return replica.registry.register_bundle(ACTOR, "race", bundle).number
        finally:
            replica.close()

    with ThreadPoolExecutor(max_workers=writers) as pool:
        numbers = list(pool.map(register, range(writers), timeout=180))

    assert sorted(numbers) == list(range(1, writers + 1))
    settings = Settings.from_env(
        {"HARBOURMASTER_HOME": str(tmp_path / "reader"), "HARBOURMASTER_DATABASE_URL": postgres_url}
    )
    reader = Platform(replace(settings, artifacts_url=str(tmp_path / "shared-artifacts")))
    try:
        assert [version.number for version in reader.registry.list_versions(ACTOR, "race")] == list(
            range(1, writers + 1)
        )
        assert reader.registry.load_version(ACTOR, "race", writers).digest == bundle.digest
    finally:
        reader.close()


# -- the schema -----------------------------------------------------------------------------


def _schema_diff(database: Database) -> list[Any]:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": False})
        return compare_metadata(context, Base.metadata)


def test_migrated_schema_matches_the_table_definitions(platform: Platform) -> None:
    assert _schema_diff(platform.db) == []


def test_migrating_twice_is_idempotent(platform: Platform, settings: Settings) -> None:
    platform.registry.create_project(ACTOR, "kept")
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with platform.db.engine.connect() as connection:
        tables_before = sorted(inspect(connection).get_table_names())

    migrate(platform.db.engine)
    second = Database(settings.database_url)  # what another replica starting up does
    try:
        with second.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
            assert sorted(inspect(connection).get_table_names()) == tables_before
        assert _schema_diff(second) == []
    finally:
        second.dispose()
    assert [project.name for project in platform.registry.list_projects(ACTOR)] == ["kept"]


def test_sqlite_runs_in_wal_mode(sqlite_settings: Settings) -> None:
    platform = Platform(sqlite_settings)
    try:
        with platform.db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        database_file = sqlite_settings.home / "harbourmaster.db"
        assert database_file.is_file()
    finally:
        platform.close()
    # WAL is a property of the database file: a plain connection sees it too.
    raw = sqlite3.connect(database_file)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
