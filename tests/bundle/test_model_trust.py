"""What a model file may contain is the platform's decision: forbidden names, derived code modules.

Each attack builds a real file (skops' own API, or a real pickle) and shows that it is refused
before anything it names can run.
"""

from __future__ import annotations

import builtins
import dataclasses
import os
import pickle
import subprocess

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from harbourmaster.bundle import TrustPolicy, format_for, load_bundle, save_bundle
from harbourmaster.bundle.code import check_code_modules, module_owner
from harbourmaster.bundle.formats import forbidden_type, pickle_globals, referenced_types
from harbourmaster.errors import UntrustedContentError

FRAME = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
TARGET = pd.Series([0, 0, 0, 1, 1, 1])


def _with_step(function: object) -> Pipeline:
    """A pipeline whose first step calls ``function`` on the input (never fitted or run here)."""
    return Pipeline([("step", FunctionTransformer(function)), ("model", LogisticRegression())])


@pytest.mark.parametrize(
    ("function", "name"),
    [(os.system, "posix.system"), (builtins.eval, "builtins.eval"), (subprocess.Popen, "subprocess.Popen")],
)
def test_a_model_file_naming_a_dangerous_callable_is_refused_whatever_is_trusted(function, name):
    data = skops.io.dumps(_with_step(function))  # dumping runs nothing
    assert name in referenced_types(data, "skops")
    everything = TrustPolicy(("posix.", "builtins.", "subprocess."), trusted_types=(name,), code_modules=("posix",))
    with pytest.raises(UntrustedContentError, match="never loads") as caught:
        format_for("skops").load(data, everything)
    assert name in caught.value.message


def test_forbidden_names_cover_modules_and_exact_callables():
    for name in ("posix.system", "os.popen", "subprocess.run", "builtins.exec", "numpy.load", "_operator.attrgetter"):
        assert forbidden_type(name), name
    for name in ("numpy.ndarray", "sklearn.pipeline.Pipeline", "features.Clip", "osmium.Thing", "builtins.slice"):
        assert not forbidden_type(name), name


def test_pickle_globals_are_read_without_unpickling():
    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch /nonexistent/never",))

    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        assert "posix.system" in pickle_globals(pickle.dumps([Exploit()], protocol=protocol))
    data = pickle.dumps(Exploit())
    with pytest.raises(UntrustedContentError, match=r"posix\.system"):
        format_for("pickle").load(data, TrustPolicy((), trust_pickle=True))


@pytest.mark.parametrize(
    ("module", "owner"),
    [("json", "standard library"), ("os", "standard library"), ("sklearn", "scikit-learn")],
)
def test_a_project_module_named_like_python_or_an_installed_package_is_refused(module, owner):
    assert owner in (module_owner(module) or "")
    with pytest.raises(UntrustedContentError, match=f"'{module}'") as caught:
        check_code_modules([module])
    assert "rename your module" in (caught.value.hint or "")
    assert check_code_modules(["features", "my_pipeline"]) == ("features", "my_pipeline")


def test_load_derives_code_modules_from_the_files_and_refuses_a_shadowing_module(store, settings, make_bundle):
    pipeline = Pipeline([("model", LogisticRegression())]).fit(FRAME, TARGET)
    # A bundle whose code shadows the standard library json: loading refuses before importing it.
    shadow = make_bundle(pipeline, FRAME, code_files={"json.py": b"raise SystemExit('shadowed')\n"})
    digest = save_bundle(store, shadow)
    with pytest.raises(UntrustedContentError, match="'json'"):
        load_bundle(store, digest, settings)
    # A registry record that disagrees with the files is an integrity error, not trust.
    good = save_bundle(store, make_bundle(pipeline, FRAME, code_files={"features.py": b"X = 1\n"}))
    with pytest.raises(Exception, match="registry recorded"):
        load_bundle(store, good, settings, code_modules=["features", "os"])
    loaded = load_bundle(store, good, settings, code_modules=["features"])
    np.testing.assert_array_equal(loaded.predict(FRAME), pipeline.predict(FRAME))


def test_build_refuses_what_load_would_refuse(make_bundle):
    with pytest.raises(UntrustedContentError, match=r"posix\.system"):
        make_bundle(_with_step(os.system), FRAME)
    trusting = dataclasses.replace(TrustPolicy.default(), trusted_types=("posix.system",))
    with pytest.raises(UntrustedContentError, match="never loads"):
        make_bundle(_with_step(os.system), FRAME, policy=trusting)


def test_a_column_selector_for_text_columns_loads_under_the_default_policy() -> None:
    # make_column_selector(dtype_include=object), the usual way to pick text columns, names builtins.object
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"region": ["north", "south", "north"], "qty": [1, 2, 3]})
    columns = ColumnTransformer(
        [("text", OneHotEncoder(), make_column_selector(dtype_include=object))], remainder="passthrough"
    )
    fitted = Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(frame, [0, 1, 0])
    skops_format = format_for("skops")
    loaded = skops_format.load(skops_format.dump(fitted), TrustPolicy.default())
    assert list(loaded.predict(frame)) == list(fitted.predict(frame))
    assert TrustPolicy.default().refused(["builtins.object", "builtins.eval"]) == ["builtins.eval"]
