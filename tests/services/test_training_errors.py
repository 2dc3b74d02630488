"""Every bad training input gets a clear error, and leaves nothing half-written.

On both metadata backends: after a failure there is no project, no version and
no bundle file in the artifact store; a run that got as far as starting is
recorded as failed with the same message.
"""

from __future__ import annotations

import importlib.util
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine

from harbourmaster.errors import (
    DataSourceError,
    EntrypointError,
    HarbourmasterError,
    InvalidInputError,
    ProjectFileError,
)
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.data_sources import DataSource

ACTOR = Actor.local_owner()
PROJECT = "breast-cancer"


def _edit(project_dir: Path, old: str, new: str, file: str = "harbourmaster.toml") -> None:
    path = project_dir / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1))


def _write(project_dir: Path, file: str, source: str) -> None:
    (project_dir / file).write_text(textwrap.dedent(source))


def _assert_nothing_registered(platform: Platform) -> None:
    assert platform.registry.list_projects(ACTOR) == []
    assert platform.artifacts.list("bundles") == []
    assert platform.artifacts.list("blobs") == []


def _assert_runs_failed_with(platform: Platform, error: HarbourmasterError) -> None:
    runs = platform.training.list_runs(ACTOR)
    assert all(run.status == "failed" for run in runs)
    assert all(run.version_number is None and run.finished_at is not None for run in runs)
    assert all(run.error == str(error) for run in runs)


# -- one case per bad input ---------------------------------------------------------


@dataclass(frozen=True)
class Case:
    break_project: Callable[[Path], Path]  # returns the folder to train
    error: type[HarbourmasterError]
    says: tuple[str, ...]  # fragments the message must contain
    hint_says: str
    records_run: bool  # whether the failure comes after the run was started


def _missing_folder(project: Path) -> Path:
    return project.parent / "no-such-project"


def _missing_project_file(project: Path) -> Path:
    (project / "harbourmaster.toml").unlink()
    return project


def _malformed_toml(project: Path) -> Path:
    _edit(project, "[evaluation]", "[evaluation")
    return project


def _unknown_key(project: Path) -> Path:
    _edit(project, "holdout = 0.25", "holdot = 0.25")
    return project


def _missing_target_key(project: Path) -> Path:
    _edit(project, 'target = "malignant"', "")
    return project


def _missing_data_file(project: Path) -> Path:
    _edit(project, 'source = "data/train.csv"', 'source = "data/missing.csv"')
    return project


def _not_a_data_file(project: Path) -> Path:
    (project / "data" / "train.txt").write_text("mean radius,malignant\n1,0\n")
    _edit(project, 'source = "data/train.csv"', 'source = "data/train.txt"')
    return project


def _csv_posing_as_parquet(project: Path) -> Path:
    (project / "data" / "train.parquet").write_bytes((project / "data" / "train.csv").read_bytes())
    _edit(project, 'source = "data/train.csv"', 'source = "data/train.parquet"')
    return project


def _target_not_in_data(project: Path) -> Path:
    _edit(project, 'target = "malignant"', 'target = "diagnosis"')
    return project


def _entrypoint_module_missing(project: Path) -> Path:
    _edit(project, 'train = "model:train"', 'train = "trainer:train"')
    return project


def _entrypoint_function_missing(project: Path) -> Path:
    _edit(project, 'train = "model:train"', 'train = "model:fit_model"')
    return project


def _entrypoint_import_fails(project: Path) -> Path:
    _write(project, "model.py", "import not_an_installed_package_xyz\n\ndef train(C=1.0):\n    return None\n")
    return project


def _entrypoint_raises(project: Path) -> Path:
    _write(
        project,
        "model.py",
        """
        def train(C: float = 1.0):
            raise RuntimeError(f"cannot build a model with C={C}")
        """,
    )
    return project


def _entrypoint_returns_non_estimator(project: Path) -> Path:
    _write(
        project,
        "model.py",
        """
        def train(C: float = 1.0):
            return {"C": C}
        """,
    )
    return project


def _two_argument_train_returns_unfitted(project: Path) -> Path:
    _write(
        project,
        "model.py",
        """
        from sklearn.linear_model import LogisticRegression


        def train(X, y, C: float = 1.0):
            return LogisticRegression(C=C)  # forgot .fit(X, y)
        """,
    )
    return project


def _unknown_metric(project: Path) -> Path:
    _edit(project, 'metrics = ["accuracy", "roc_auc", "f1"]', 'metrics = ["accuracy", "acuracy"]')
    return project


CASES: dict[str, Case] = {
    "missing-folder": Case(_missing_folder, ProjectFileError, ("no-such-project", "does not exist"), "folder", False),
    "missing-project-file": Case(
        _missing_project_file, ProjectFileError, ("harbourmaster.toml", "is missing"), "docs/project-file.md", False
    ),
    "malformed-toml": Case(_malformed_toml, ProjectFileError, ("is not valid TOML", "line"), "syntax", False),
    "unknown-key": Case(
        _unknown_key, ProjectFileError, ("[evaluation] holdot", "unknown key"), "did you mean 'holdout'?", False
    ),
    "missing-target-key": Case(
        _missing_target_key, ProjectFileError, ("[data] target", "field required"), 'add target = "<column>"', False
    ),
    "missing-data-file": Case(
        _missing_data_file, DataSourceError, ("data/missing.csv", "does not exist"), "relative to the project", True
    ),
    "not-a-data-file": Case(
        _not_a_data_file, ProjectFileError, ("data/train.txt", "neither a .csv nor a .parquet"), ".csv", False
    ),
    "csv-posing-as-parquet": Case(
        _csv_posing_as_parquet, DataSourceError, ("train.parquet", "cannot be read as parquet"), "valid parquet", True
    ),
    "target-not-in-data": Case(
        _target_not_in_data, DataSourceError, ("target column 'diagnosis'", "mean radius"), "[data] target", True
    ),
    "entrypoint-module-missing": Case(
        _entrypoint_module_missing, EntrypointError, ("trainer:train", "importing trainer failed"), "trainer.py", True
    ),
    "entrypoint-function-missing": Case(
        _entrypoint_function_missing, EntrypointError, ("model has no function fit_model",), "define fit_model()", True
    ),
    "entrypoint-import-fails": Case(
        _entrypoint_import_fails, EntrypointError, ("importing model failed", "not_an_installed_package_xyz"), "", True
    ),
    "entrypoint-raises": Case(
        _entrypoint_raises,
        EntrypointError,
        ("model:train raised RuntimeError", "cannot build a model with C=0.05"),
        "fix the training code",
        True,
    ),
    "entrypoint-returns-non-estimator": Case(
        _entrypoint_returns_non_estimator,
        EntrypointError,
        ("returned dict, not an estimator",),
        "fit and predict",
        True,
    ),
    "two-argument-train-returns-unfitted": Case(
        _two_argument_train_returns_unfitted,
        EntrypointError,
        ("returned an unfitted LogisticRegression",),
        "return the fitted estimator",
        True,
    ),
    "unknown-metric": Case(_unknown_metric, ProjectFileError, ("unknown metric 'acuracy'",), "'accuracy'", False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error_and_leaves_nothing_behind(
    name: str, platform: Platform, demo_project: Path
) -> None:
    case = CASES[name]
    folder = case.break_project(demo_project)

    with pytest.raises(case.error) as caught:
        platform.training.train(ACTOR, folder)

    error = caught.value
    assert isinstance(error, InvalidInputError)  # a 4xx on the wire, a clean line on the CLI
    for fragment in case.says:
        assert fragment in error.message, f"{fragment!r} not in {error.message!r}"
    assert error.hint, "every error says how to fix it"
    assert case.hint_says in error.hint
    _assert_nothing_registered(platform)
    runs = platform.training.list_runs(ACTOR)
    assert len(runs) == (1 if case.records_run else 0)
    _assert_runs_failed_with(platform, error)


# -- failures do not poison what comes next ------------------------------------------------


def test_after_fixing_the_problem_the_first_version_is_number_1(platform: Platform, demo_project: Path) -> None:
    original = (demo_project / "model.py").read_text()
    _entrypoint_raises(demo_project)
    with pytest.raises(EntrypointError):
        platform.training.train(ACTOR, demo_project)
    _missing_data_file(demo_project)
    with pytest.raises(DataSourceError):
        platform.training.train(ACTOR, demo_project)

    (demo_project / "model.py").write_text(original)
    _edit(demo_project, 'source = "data/missing.csv"', 'source = "data/train.csv"')
    result = platform.training.train(ACTOR, demo_project)

    assert result.version.number == 1
    assert result.version.lineage["parent_version"] is None
    assert [run.status for run in platform.training.list_runs(ACTOR, PROJECT)] == ["succeeded", "failed", "failed"]
    assert len(platform.artifacts.list("bundles")) == 1


def test_a_broken_module_is_not_cached_between_trainings(platform: Platform, demo_project: Path) -> None:
    """The same process (a server, a notebook) retrains after the code was fixed: the new code runs."""
    original = (demo_project / "model.py").read_text()
    _entrypoint_returns_non_estimator(demo_project)
    with pytest.raises(EntrypointError, match="not an estimator"):
        platform.training.train(ACTOR, demo_project)

    (demo_project / "model.py").write_text(original)
    result = platform.training.train(ACTOR, demo_project)

    assert result.version.number == 1
    assert result.version.metrics["accuracy"] > 0.9


def test_swapped_data_source_that_is_missing_or_not_tabular(platform: Platform, demo_project: Path) -> None:
    with pytest.raises(DataSourceError) as missing:
        platform.training.train(ACTOR, demo_project, data=DataSource(path=str(demo_project / "nope.csv")))
    assert "nope.csv" in missing.value.message and missing.value.hint

    (demo_project / "rows.json").write_text("[]")
    with pytest.raises(DataSourceError) as not_tabular:
        platform.training.train(ACTOR, demo_project, data=DataSource(path=str(demo_project / "rows.json")))
    assert "neither CSV nor Parquet" in not_tabular.value.message
    assert not_tabular.value.hint and ".csv" in not_tabular.value.hint

    _assert_nothing_registered(platform)
    assert [run.status for run in platform.training.list_runs(ACTOR)] == ["failed", "failed"]


# -- other data sources ------------------------------------------------------------------------


def _sqlite_copy_of_training_data(project: Path, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'warehouse.db'}"
    engine = create_engine(url)
    try:
        pd.read_csv(project / "data" / "train.csv").to_sql("cancer", engine, index=False)
    finally:
        engine.dispose()
    return url


def test_training_from_a_sql_query(platform: Platform, demo_project: Path, tmp_path: Path) -> None:
    url = _sqlite_copy_of_training_data(demo_project, tmp_path / "warehouse")
    _edit(
        demo_project,
        'source = "data/train.csv"',
        f'url = "{url}"\nquery = "SELECT * FROM cancer WHERE \\"mean radius\\" > 0"',
    )
    (demo_project / "data" / "train.csv").unlink()  # the file is not what is read

    result = platform.training.train(ACTOR, demo_project)

    assert result.version.number == 1
    assert result.run.rows_in == 569
    source = result.version.lineage["data"]["source"]
    assert "SELECT * FROM cancer" in source and url in source
    assert result.version.metrics["accuracy"] > 0.9
    assert platform.registry.load_version(ACTOR, PROJECT, 1).predict(
        pd.read_sql_table("cancer", url).drop(columns=["malignant"]).head(5)
    ).shape == (5,)


def test_a_failing_sql_query_is_a_data_source_error(platform: Platform, demo_project: Path, tmp_path: Path) -> None:
    url = _sqlite_copy_of_training_data(demo_project, tmp_path / "warehouse")
    _edit(demo_project, 'source = "data/train.csv"', f'url = "{url}"\nquery = "SELECT * FROM patients"')

    with pytest.raises(DataSourceError) as caught:
        platform.training.train(ACTOR, demo_project)

    assert "failed" in caught.value.message and "no such table: patients" in caught.value.message
    assert caught.value.hint and "query" in caught.value.hint
    _assert_nothing_registered(platform)


def test_a_database_url_without_its_driver_is_a_data_source_error(platform: Platform, demo_project: Path) -> None:
    if importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("the MySQL driver is installed here")
    _edit(
        demo_project,
        'source = "data/train.csv"',
        'url = "mysql://reader:secret@db.example/warehouse"\nquery = "SELECT 1"',
    )

    with pytest.raises(DataSourceError) as caught:
        platform.training.train(ACTOR, demo_project)

    assert "needs a database driver that is not installed" in caught.value.message
    assert "secret" not in caught.value.message  # the password is redacted
    assert caught.value.hint and "MySQLdb" in caught.value.hint
    _assert_nothing_registered(platform)


def test_swapping_the_data_source_records_it_in_lineage(platform: Platform, demo_project: Path, tmp_path: Path) -> None:
    other = tmp_path / "production" / "recent.csv"
    other.parent.mkdir()
    pd.read_csv(demo_project / "data" / "train.csv").sample(400, random_state=3).to_csv(other, index=False)

    first = platform.training.train(ACTOR, demo_project)
    second = platform.training.train(ACTOR, demo_project, data=DataSource(path=str(other)))

    assert first.version.lineage["data"]["source"] == "data/train.csv"
    assert second.version.lineage["data"]["source"] == str(other)
    assert second.version.lineage["data"]["rows"] == 400
    assert second.version.lineage["parent_version"] == 1
    assert second.run.rows_in == 400
    assert second.run.details["source"] == str(other)
    assert second.version.lineage["data"]["fingerprint"] != first.version.lineage["data"]["fingerprint"]
    diff = platform.registry.diff_versions(ACTOR, PROJECT, 1, 2)
    assert diff.lineage_changes["data"].after["source"] == str(other)
