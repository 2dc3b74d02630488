"""Gradient-boosting libraries (XGBoost, LightGBM): how their estimators are stored, loaded and served.

Storage: skops, with the libraries' own classes trusted by exact name (``LIBRARY_TYPES``), not their native
model files. Why: skops already stores what the native formats would, since a booster's state *is* its
library's own model format (XGBoost's serialized buffer, LightGBM's model string) and loading hands it to
the library's parser (``XGBoosterUnserializeFromBuffer``, ``LGBM_BoosterLoadModelFromString``); nothing is
unpickled. skops also keeps the scikit-learn wrapper (classes, label encoder, feature names, parameters)
and the rest of a pipeline (a ``ColumnTransformer`` before the booster) in the same file, checked type by
type like every other bundle, whereas a native file holds the booster alone and the wrapper and pipeline
would need a second format and code of ours to reassemble them. Only these six classes are added: any
other type in the file (a callable metric, a custom objective) is refused as usual.

Serving: ONNX when onnxmltools converts the estimator and the copy is exact (``engine.choose_engine``
checks every version on a sample, as for scikit-learn pipelines); the converters produce float32 graphs,
so in practice the check usually fails and scikit-learn serves the version, with the reason recorded.

Neither library is a dependency of the platform: ``pip install "harbourmaster[boosting]"`` where a version
using one is loaded (replicas, batch scorers, notebooks); without it loading says which package is missing.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from typing import Any

from harbourmaster.errors import MissingLibraryError

# Fully qualified names as skops records them (module of definition, class name).
LIBRARY_TYPES: frozenset[str] = frozenset(
    {
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "xgboost.core.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.basic.Booster",
    }
)
# Top-level module -> the package that installs it.
LIBRARY_PACKAGES: dict[str, str] = {"xgboost": "xgboost", "lightgbm": "lightgbm"}
INSTALL_HINT = 'pip install "harbourmaster[boosting]"'


def is_library_estimator(part: Any) -> bool:
    """Whether ``part`` is one of the supported XGBoost or LightGBM scikit-learn estimators."""
    kind = type(part)
    return f"{kind.__module__}.{kind.__qualname__}" in LIBRARY_TYPES


def require_installed(type_names: Iterable[str], where: str = "the model file") -> None:
    """Raise a clear error when a module the model file's types live in is not installed here.

    Without this, loading fails deep inside skops with a bare ``ModuleNotFoundError``.
    """
    missing = sorted({name.split(".", 1)[0] for name in type_names if "." in name and not _importable(name)})
    if not missing:
        return
    names = [LIBRARY_PACKAGES.get(module, module) for module in missing]
    listed, command, plural = ", ".join(names), "pip install " + " ".join(names), len(names) > 1
    if all(module in LIBRARY_PACKAGES for module in missing):
        hint = f"install {'them' if plural else 'it'} where this version is loaded: {INSTALL_HINT}, or just {command}"
    else:
        hint = f"install what provides {listed} where this version is loaded (usually: {command})"
    raise MissingLibraryError(
        f"{where} needs the Python package{'s' if plural else ''} {listed}, "
        f"which {'are' if plural else 'is'} not installed here",
        hint,
    )


def _importable(type_name: str) -> bool:
    """Whether the top-level module of ``type_name`` can be imported here (nothing is imported)."""
    module = type_name.split(".", 1)[0]
    if sys.modules.get(module) is not None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module blocked with sys.modules[name] = None
        return False


_registered = False


def register_onnx_converters() -> str | None:
    """Teach skl2onnx the XGBoost and LightGBM estimators (onnxmltools' converters); why not, if it cannot."""
    global _registered
    if _registered:
        return None
    try:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )
    except ImportError as exc:
        return f"the ONNX converter for XGBoost/LightGBM is not installed ({exc.name}; pip install onnxmltools)"
    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    xgboost, lightgbm = _installed("xgboost"), _installed("lightgbm")
    if xgboost is not None:
        update_registered_converter(
            xgboost.XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            xgboost.XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
        )
    if lightgbm is not None:
        update_registered_converter(
            lightgbm.LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=classifier_options,
        )
        update_registered_converter(
            lightgbm.LGBMRegressor,
            "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes,
            convert_lightgbm,
            options={"split": None},
        )
    _registered = True
    return None


def _installed(name: str) -> Any:
    """The module ``name``, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def for_conversion(model: Any) -> Any:
    """A copy of ``model`` the XGBoost converter accepts: boosters without feature names (it wants f0, f1, ...).

    The names are only a check on the input columns; the trees refer to features by position.
    """
    from harbourmaster.bundle.engine import components

    converted = copy.deepcopy(model)
    for part in components(converted):
        if is_library_estimator(part) and hasattr(part, "get_booster"):
            part.get_booster().feature_names = None
    return converted
