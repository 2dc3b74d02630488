"""Project code travels inside the bundle and imports in isolation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import harbourmaster
from harbourmaster.bundle import (
    code_modules,
    code_revision,
    load_bundle,
    project_imports,
    save_bundle,
    snapshot_project_code,
)
from harbourmaster.errors import InvalidInputError

SRC = Path(harbourmaster.__file__).resolve().parents[1]

CLIP_FEATURES = """
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin


    class ClipOutliers(BaseEstimator, TransformerMixin):
        def __init__(self, quantile=0.95):
            self.quantile = quantile

        def fit(self, X, y=None):
            values = np.asarray(X, dtype=float)
            self.low_ = np.quantile(values, 1 - self.quantile, axis=0)
            self.high_ = np.quantile(values, self.quantile, axis=0)
            self.scale_ = values.std(axis=0) + 1e-9
            return self

        def transform(self, X):
            values = np.clip(np.asarray(X, dtype=float), self.low_, self.high_)
            return values / self.scale_
"""


def _fit_in_project(project: Path, features, target, transformer: str) -> Pipeline:
    files = snapshot_project_code(project)
    with project_imports(project, code_modules(files)):
        import features as project_features

        step = getattr(project_features, transformer)()
        pipeline = Pipeline([("prep", step), ("model", LogisticRegression(max_iter=2000))])
        return pipeline.fit(features, target)


def test_custom_transformer_loads_in_a_fresh_process_without_the_project(
    tmp_path, cancer, store, make_bundle, write_project
):
    features, target = cancer
    project = write_project(
        tmp_path / "proj",
        {"features.py": CLIP_FEATURES, "harbourmaster.toml": "[project]\nname = 'cancer'\n"},
    )
    before = sys.modules.get("features")  # another test of this worker may have loaded a bundle's `features`
    pipeline = _fit_in_project(project, features, target, "ClipOutliers")
    assert sys.modules.get("features") is before

    code = snapshot_project_code(project)
    bundle = make_bundle(pipeline, features, code_files=code)
    assert bundle.manifest.code_modules == ["features"]
    assert set(bundle.manifest.files) == {
        "model.skops",
        "code/features.py",
        "code/harbourmaster.toml",
    }
    digest = save_bundle(store, bundle)
    expected = pipeline.predict_proba(features)[:, 1]

    project.rename(tmp_path / "gone")  # the code must come from the bundle
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = f"""
import json
from pathlib import Path
from harbourmaster.bundle import load_bundle
from harbourmaster.config import Settings
from harbourmaster.store.artifacts import ArtifactStore
from sklearn.datasets import load_breast_cancer

root = Path({str(tmp_path)!r})
store = ArtifactStore(str(root / "artifacts"))
settings = Settings(home=root / "replica", database_url="sqlite://", artifacts_url=store.url)
loaded = load_bundle(store, {digest!r}, settings)
features, _ = load_breast_cancer(return_X_y=True, as_frame=True)
print(json.dumps(loaded.predict_proba(features)[:, 1].tolist()))
print(type(loaded.model.steps[0][1]).__module__)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=elsewhere,
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    probabilities, module = done.stdout.strip().splitlines()
    np.testing.assert_array_equal(np.array(json.loads(probabilities)), expected)
    assert module == "features"
    cached = tmp_path / "replica" / "cache" / "bundles" / digest / "code" / "features.py"
    assert cached.is_file()


def test_two_projects_with_the_same_module_name_load_side_by_side(
    tmp_path, cancer, store, settings, make_bundle, write_project
):
    features, target = cancer
    scale = """
        from sklearn.base import BaseEstimator, TransformerMixin

        class Halve(BaseEstimator, TransformerMixin):
            def fit(self, X, y=None):
                return self

            def transform(self, X):
                return X / 2.0
    """
    shift = """
        import numpy as np
        from sklearn.base import BaseEstimator, TransformerMixin

        class LogShift(BaseEstimator, TransformerMixin):
            def fit(self, X, y=None):
                return self

            def transform(self, X):
                return np.log1p(np.asarray(X, dtype=float))
    """
    project_a = write_project(tmp_path / "a", {"features.py": scale})
    project_b = write_project(tmp_path / "b", {"features.py": shift})
    pipeline_a = _fit_in_project(project_a, features, target, "Halve")
    pipeline_b = _fit_in_project(project_b, features, target, "LogShift")

    digest_a = save_bundle(store, make_bundle(pipeline_a, features, code_files=snapshot_project_code(project_a)))
    digest_b = save_bundle(store, make_bundle(pipeline_b, features, code_files=snapshot_project_code(project_b)))
    # Something else called "features" is imported already; it must survive.
    sentinel = type(sys)("features")
    sys.modules["features"] = sentinel
    try:
        loaded_a = load_bundle(store, digest_a, settings)
        loaded_b = load_bundle(store, digest_b, settings)
        assert sys.modules["features"] is sentinel
    finally:
        del sys.modules["features"]

    step_a = type(loaded_a.model.steps[0][1])
    step_b = type(loaded_b.model.steps[0][1])
    assert (step_a.__module__, step_a.__name__) == ("features", "Halve")
    assert (step_b.__module__, step_b.__name__) == ("features", "LogShift")
    np.testing.assert_array_equal(loaded_a.predict(features), pipeline_a.predict(features))
    np.testing.assert_array_equal(loaded_b.predict(features), pipeline_b.predict(features))
    np.testing.assert_array_equal(loaded_a.predict_proba(features), pipeline_a.predict_proba(features))
    assert str(tmp_path) not in " ".join(sys.path)


def test_project_imports_restores_path_and_modules(tmp_path, write_project):
    project = write_project(tmp_path / "p", {"pkg/__init__.py": "", "pkg/sub.py": "X = 42\n"})
    before_path = list(sys.path)
    with project_imports(project, ["pkg"]):
        from pkg.sub import X

        assert X == 42
        assert "pkg.sub" in sys.modules
    assert "pkg" not in sys.modules
    assert "pkg.sub" not in sys.modules
    assert sys.path == before_path


def test_snapshot_takes_code_and_config_only(tmp_path, write_project):
    project = write_project(
        tmp_path / "proj",
        {
            "features.py": "A = 1\n",
            "harbourmaster.toml": "[project]\n",
            "conf/params.yaml": "c: 1\n",
            "pkg/__init__.py": "",
            "pkg/model.py": "B = 2\n",
            "notes/readme.py": "C = 3\n",
            "data/train.csv": "a,b\n1,2\n",
            ".git/config.json": "{}",
            ".venv/lib/x.py": "",
            "venv/lib/y.py": "",
            ".hidden/z.py": "",
            "__pycache__/features.cpython-311.py": "",
            ".harbourmaster/state.json": "{}",
        },
    )
    files = snapshot_project_code(project)
    assert sorted(files) == [
        "conf/params.yaml",
        "features.py",
        "harbourmaster.toml",
        "notes/readme.py",
        "pkg/__init__.py",
        "pkg/model.py",
    ]
    assert files["features.py"] == b"A = 1\n"
    assert code_modules(files) == ("features", "pkg")
    with pytest.raises(InvalidInputError, match="larger than"):
        snapshot_project_code(project, max_bytes=10)


def test_code_revision_from_files_and_from_git(tmp_path, write_project):
    project = write_project(tmp_path / "proj", {"features.py": "A = 1\n"})
    files = snapshot_project_code(project)
    revision = code_revision(project, files)
    assert revision["kind"] == "files"
    assert revision == code_revision(project, dict(files))
    assert revision != code_revision(project, {"features.py": b"A = 2\n"})

    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    try:
        subprocess.run([*git, "init", "-q"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    subprocess.run([*git, "add", "."], check=True, capture_output=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True, capture_output=True)
    clean = code_revision(project, files)
    assert clean["kind"] == "git"
    assert len(clean["sha"]) == 40
    assert clean["dirty"] is False
    (project / "features.py").write_text("A = 3\n")
    assert code_revision(project, files)["dirty"] is True


def test_an_ignored_project_folder_in_a_git_work_tree_is_described_by_its_files(tmp_path, write_project):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    try:
        subprocess.run([*git, "init", "-q"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    (repo / ".gitignore").write_text("state/\n")
    subprocess.run([*git, "add", "."], check=True, capture_output=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True, capture_output=True)
    project = write_project(repo / "state" / "proj", {"features.py": "A = 1\n"})
    files = snapshot_project_code(project)

    revision = code_revision(project, files)

    # The repository's commit says nothing about an ignored folder: its files' hash does.
    assert revision["kind"] == "files"
    assert revision["sha256"] == code_revision(tmp_path / "elsewhere", files)["sha256"]
