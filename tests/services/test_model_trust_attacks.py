"""Attacks on what a model file may contain, against the registry on SQLite and PostgreSQL.

Each test forges what a hostile uploader would send (a manifest is only a claim) and shows
that the platform refuses it, audits the refusal and records nothing.
"""

from __future__ import annotations

import dataclasses
import operator
import os
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sqlalchemy import select

from harbourmaster.bundle import Bundle, FileEntry, TrustPolicy, build_bundle
from harbourmaster.config import Settings
from harbourmaster.core.digest import sha256_bytes
from harbourmaster.errors import InvalidInputError, PermissionDeniedError, UntrustedContentError
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AuditEventRow, VersionRow

PROJECT = "churn"
OWNER = Actor.local_owner()
FRAME = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
TARGET = pd.Series([0, 0, 0, 1, 1, 1])


def make(model: Any, **overrides: Any) -> Bundle:
    arguments: dict[str, Any] = {
        "format": "skops",
        "code_files": {},
        "prepare": None,
        "input_schema": {"columns": [{"name": c, "dtype": "float64"} for c in FRAME]},
        "output_schema": {"kind": "classification"},
        "profile": {"rows": len(FRAME)},
        "metrics": {"accuracy": 1.0},
        "lineage": {},
        "reference_row": None,
    }
    arguments.update(overrides)
    return build_bundle(model, **arguments)


def forge(bundle: Bundle, files: dict[str, bytes] | None = None, **manifest: Any) -> Bundle:
    """The bundle with other files and manifest claims, hashes made consistent (what an attacker sends)."""
    files = dict(bundle.files if files is None else files)
    entries = {path: FileEntry(sha256=sha256_bytes(data), size=len(data)) for path, data in files.items()}
    return Bundle(manifest=bundle.manifest.model_copy(update={"files": entries, **manifest}), files=files)


@pytest.fixture(scope="module")
def fitted() -> Pipeline:
    return Pipeline([("model", LogisticRegression())]).fit(FRAME, TARGET)


def refusals(platform: Platform, action: str = "version.register") -> list[AuditEventRow]:
    with platform.db.reader() as session:
        query = select(AuditEventRow).where(AuditEventRow.action == action, AuditEventRow.outcome == "refused")
        return list(session.scalars(query))


def version_count(platform: Platform) -> int:
    with platform.db.reader() as session:
        return len(session.scalars(select(VersionRow.id)).all())


def assert_refused(platform: Platform, bundle: Bundle, error: type[Exception], match: str, **kwargs: Any) -> Any:
    before = len(refusals(platform))
    with pytest.raises(error, match=match) as caught:
        platform.registry.register_bundle(OWNER, PROJECT, bundle, **kwargs)
    assert version_count(platform) == 0
    assert len(refusals(platform)) == before + 1
    assert refusals(platform)[-1].details["error"] == caught.value.message
    return caught.value


def test_a_skops_model_naming_os_system_is_refused_and_cannot_be_trusted(platform, fitted):
    evil = Pipeline([("step", FunctionTransformer(os.system)), ("model", LogisticRegression())])
    bundle = forge(make(fitted), {"model.skops": skops.io.dumps(evil)})  # built with skops' own API
    error = assert_refused(platform, bundle, UntrustedContentError, "never loads")
    assert "posix.system" in error.message
    platform.registry.create_project(OWNER, PROJECT)
    with pytest.raises(UntrustedContentError, match="never loads"):
        platform.registry.set_trusted_types(OWNER, PROJECT, add=["posix.system"])
    assert platform.registry.project_trust(OWNER, PROJECT).trusted_types == []
    assert refusals(platform, "project.trust")[-1].details["add"] == ["posix.system"]


def test_a_manifest_claiming_code_module_os_is_refused(platform, fitted):
    honest = make(fitted)
    assert_refused(platform, forge(honest, code_modules=["os"]), UntrustedContentError, "claims code modules")
    with_os = forge(honest, {**honest.files, "code/os.py": b"system = print\n"}, code_modules=["os"])
    error = assert_refused(platform, with_os, UntrustedContentError, "standard library")
    assert "rename your module" in (error.hint or "")


@pytest.mark.parametrize(
    ("path", "owner"), [("json.py", "standard library"), ("sklearn/__init__.py", "'scikit-learn'")]
)
def test_a_project_module_named_like_python_or_an_installed_package_is_refused(platform, fitted, path, owner):
    bundle = make(fitted, code_files={path: b"X = 1\n"})  # an honest manifest: the name itself is the problem
    error = assert_refused(platform, bundle, UntrustedContentError, owner)
    assert "rename your module" in (error.hint or "")


def test_compiled_files_in_the_code_folder_are_refused(platform, fitted):
    honest = make(fitted)
    sneaky = forge(honest, {**honest.files, "code/yaml.cpython-311-x86_64-linux-gnu.so": b"\x7fELF"})
    assert_refused(platform, sneaky, UntrustedContentError, "not project source")


def test_pickle_claiming_trust_is_refused_unless_the_platform_trusts_pickle(platform, settings, fitted):
    bundle = make(fitted, format="pickle", trusted_pickle=True)
    assert bundle.manifest.trusted_pickle is True
    error = assert_refused(platform, bundle, UntrustedContentError, "does not accept pickle")
    assert "HARBOURMASTER_TRUST_PICKLE" in (error.hint or "")

    trusting = Platform(dataclasses.replace(settings, trust_pickle=True))
    try:
        version = trusting.registry.register_bundle(OWNER, PROJECT, bundle)
        assert version.trusted_pickle is True
        loaded = trusting.registry.load_version(OWNER, PROJECT, version.number)
        np.testing.assert_array_equal(loaded.predict(FRAME), fitted.predict(FRAME))
    finally:
        trusting.close()


def test_the_upload_form_cannot_set_trusted_types(platform, fitted):
    bundle = make(fitted)
    settings = {"trusted_types": ["_operator.neg"], "environments": {}}
    error = assert_refused(platform, bundle, InvalidInputError, "cannot set trusted_types", project_settings=settings)
    assert f"harbourmaster trust {PROJECT} --add-type" in (error.hint or "")
    version = platform.registry.register_bundle(OWNER, PROJECT, bundle, project_settings={"environments": {}})
    assert version.code_modules == []
    assert platform.registry.project_trust(OWNER, PROJECT).trusted_types == []


def test_trusted_types_are_an_audited_admin_setting_that_registration_and_loading_honour(platform, fitted):
    negating = Pipeline([("neg", FunctionTransformer(operator.neg)), ("model", LogisticRegression())]).fit(
        FRAME, TARGET
    )
    # What a project file's [serialization] trusted_types allows on the author's machine ...
    bundle = make(negating, policy=dataclasses.replace(TrustPolicy.default(), trusted_types=("_operator.neg",)))
    # ... is not what the platform trusts.
    error = assert_refused(platform, bundle, UntrustedContentError, r"_operator\.neg")
    assert f"harbourmaster trust {PROJECT} --add-type _operator.neg" in (error.hint or "")

    dana = Actor(name="dana", roles=frozenset({"data-scientist"}))
    platform.registry.create_project(OWNER, PROJECT)
    with pytest.raises(PermissionDeniedError):
        platform.registry.set_trusted_types(dana, PROJECT, add=["_operator.neg"])

    trust = platform.registry.set_trusted_types(OWNER, PROJECT, add=["_operator.neg"])
    assert trust.trusted_types == ["_operator.neg"]
    with platform.db.reader() as session:
        entry = session.scalars(select(AuditEventRow).where(AuditEventRow.action == "project.trust")).one()
        assert entry.before == {"trusted_types": []} and entry.after == {"trusted_types": ["_operator.neg"]}
        assert session.scalars(select(AuditEventRow).where(AuditEventRow.action == "denied.administer")).first()

    version = platform.registry.register_bundle(dana, PROJECT, bundle)
    loaded = platform.registry.load_version(dana, PROJECT, version.number)
    np.testing.assert_array_equal(loaded.predict(FRAME), negating.predict(FRAME))

    platform.registry.set_trusted_types(OWNER, PROJECT, remove=["_operator.neg"])
    with pytest.raises(UntrustedContentError, match=r"_operator\.neg"):
        platform.registry.load_version(dana, PROJECT, version.number)


def test_the_platform_wide_setting_named_in_the_hint_is_honoured_at_registration(settings, fitted):
    negating = Pipeline([("neg", FunctionTransformer(operator.neg)), ("model", LogisticRegression())]).fit(
        FRAME, TARGET
    )
    bundle = make(negating, policy=dataclasses.replace(TrustPolicy.default(), trusted_types=("_operator.neg",)))
    env = {"HARBOURMASTER_HOME": str(settings.home), "HARBOURMASTER_DATABASE_URL": settings.database_url}
    widened = Platform(Settings.from_env({**env, "HARBOURMASTER_TRUSTED_TYPES": "_operator.neg"}))
    try:
        version = widened.registry.register_bundle(OWNER, PROJECT, bundle)
        loaded = widened.registry.load_version(OWNER, PROJECT, version.number)
        np.testing.assert_array_equal(loaded.predict(FRAME), negating.predict(FRAME))
    finally:
        widened.close()
