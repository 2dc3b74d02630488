"""Which engine serves a version, and why: the exact ONNX copy of the pipeline, or scikit-learn itself.

One decision, made the same way at registration (recorded in the version's lineage under ``serving``, so
``harbourmaster show`` can say it without loading model code) and when a replica or batch scorer loads the
version: a pipeline made only of scikit-learn classes (and XGBoost or LightGBM estimators, through the
onnxmltools converters, see ``bundle.libraries``) over numeric inputs is converted to ONNX in double
precision (``skl2onnx``; float32 where the converter only makes float32 graphs) and kept only if it gives
the same labels, and probabilities or values within ``EXACT_TOLERANCE``, as the pipeline on a sample drawn
from the reference profile. Anything else, with the
reason, is served by scikit-learn through ``SklearnPlan``: the pipeline's steps called directly, on a numpy
matrix when the fitted pipeline does not need column names, with labels derived from ``predict_proba`` where
that is exactly what ``predict`` does; each shortcut is checked against the pipeline itself at load.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harbourmaster.bundle.libraries import for_conversion, is_library_estimator, register_onnx_converters

log = logging.getLogger("harbourmaster.bundle")

EXACT_TOLERANCE = 1e-9
SAMPLE_ROWS = 256
_NUMERIC = ("integer", "float")
# Final estimators whose ``predict`` is exactly ``classes_[argmax(predict_proba)]`` (single output): one
# call gives both. Checked on the sample at load all the same.
_PROBA_ARGMAX = frozenset(
    {
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._logistic.LogisticRegressionCV",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.naive_bayes.GaussianNB",
    }
)


@dataclass(frozen=True)
class EngineChoice:
    """The engine that serves a version (``onnx`` or ``sklearn``) and why ONNX was not taken, if it was not."""

    engine: str
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "reason": self.reason}

    def describe(self) -> str:
        return self.engine if self.reason is None else f"{self.engine} ({self.reason})"


class OnnxRunner:
    """An onnxruntime session over the float64 matrix of a batch: labels (or values) and probabilities."""

    __slots__ = ("input_name", "input_type", "output_names", "session")

    def __init__(self, session: Any) -> None:
        self.session = session
        first = session.get_inputs()[0]
        self.input_name: str = first.name
        # float32 for graphs whose converter makes no other (XGBoost, LightGBM); float64 otherwise
        self.input_type: Any = np.float32 if first.type == "tensor(float)" else None
        # Named once: with None, onnxruntime lists the outputs again on every call.
        self.output_names: list[str] = [output.name for output in session.get_outputs()]

    def run(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.input_type is not None:
            matrix = matrix.astype(self.input_type)
        outputs = self.session.run(self.output_names, {self.input_name: matrix})
        labels = np.asarray(outputs[0]).reshape(len(matrix), -1)
        if labels.shape[1] == 1:
            labels = labels.reshape(-1)
        return labels, (np.asarray(outputs[1]) if len(outputs) > 1 else None)


def _name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def components(model: Any) -> Iterator[Any]:
    """``model`` and every estimator nested in it (pipeline steps, column transformers, feature unions)."""
    yield model
    nested: list[Any] = []
    if isinstance(getattr(model, "steps", None), list):
        nested = [step for _, step in model.steps]
    elif isinstance(getattr(model, "transformers_", None), list):
        nested = [item[1] for item in model.transformers_]
    elif isinstance(getattr(model, "transformer_list", None), list):
        nested = [item[1] for item in model.transformer_list]
    for item in nested:
        if item is not None and not isinstance(item, str):
            yield from components(item)


def _project_code(model: Any) -> str | None:
    """The first piece of project code in ``model`` (a custom class or a function transformer), described."""
    for part in components(model):
        if is_library_estimator(part):
            continue
        if not type(part).__module__.startswith("sklearn."):
            kind = "transformer" if hasattr(part, "transform") and not hasattr(part, "predict") else "estimator"
            return f"custom {kind} {_name(part)} has no ONNX converter"
        function = getattr(part, "func", None) if type(part).__name__ == "FunctionTransformer" else None
        if function is not None:
            where = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"
            return f"function transformer {where} is project code (no ONNX converter)"
    return None


_LIBRARY_MODULES = ("sklearn.", "numpy", "scipy.", "xgboost.", "lightgbm.")


def _library_object(value: Any) -> bool:
    module = getattr(value, "__module__", None) if callable(value) else None
    module = module or type(value).__module__ or ""
    return module.startswith(_LIBRARY_MODULES) or module in ("builtins", "math", "operator")


def library_only(model: Any) -> bool:
    """Whether scoring ``model`` runs library code only: scikit-learn's own classes (and the supported XGBoost
    and LightGBM estimators), with no project function or estimator among their parameters either.

    Library code's cost depends on the batch, not on a sleep or a lock in someone's code: such a version may
    run small batches on the event loop (``serving.lanes.InlineGate``), unless it scores in worker threads
    or processes (``n_jobs``), whose work the calling thread's CPU time would not show. Anything unsure is
    answered False.
    """
    if _project_code(model) is not None:
        return False
    try:
        for part in components(model):
            get_params = getattr(part, "get_params", None)
            for key, value in (get_params(deep=True) if callable(get_params) else {}).items():
                if key.endswith("n_jobs") and value not in (None, 1):
                    return False
                code = callable(value) or any(hasattr(value, name) for name in ("fit", "predict", "transform"))
                if code and not isinstance(value, type) and not _library_object(value):
                    return False
    except Exception:  # parameters that cannot be listed: assume the worst
        return False
    return True


def reference_sample(
    profile: dict[str, Any] | None,
    reference_row: dict[str, Any] | None,
    columns: list[str],
    rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> np.ndarray:
    """Numeric rows spread over the training range of each feature (for exactness checks)."""
    rng = np.random.default_rng(seed)
    features = (profile or {}).get("features", {})
    out = np.zeros((rows, len(columns)), dtype=np.float64)
    reference = reference_row or {}
    for j, name in enumerate(columns):
        feature = features.get(name) or {}
        low, high = feature.get("minimum"), feature.get("maximum")
        quantiles = list((feature.get("quantiles") or {}).values())
        if low is None or high is None:
            value = reference.get(name)
            out[:, j] = float(value) if isinstance(value, int | float) else 0.0
            continue
        points = rng.uniform(low, high, rows)
        if quantiles:
            points[: len(quantiles)] = quantiles
        out[:, j] = points
    return out


def _differ(labels: np.ndarray, expected: np.ndarray) -> bool:
    expected = np.asarray(expected)
    if labels.size != expected.size:
        return True
    labels = labels.reshape(expected.shape)
    if expected.dtype.kind == "f":
        return not np.allclose(labels, expected, rtol=EXACT_TOLERANCE, atol=EXACT_TOLERANCE, equal_nan=True)
    return not np.array_equal(labels, expected)


def _convert(model: Any, sample: np.ndarray, frame: pd.DataFrame, classifier: bool) -> OnnxRunner | str:
    """An exact ONNX runner for ``model``, or why there is none."""
    try:
        import onnxruntime as ort
        from skl2onnx import to_onnx
    except ImportError as exc:  # a regular dependency: only a broken install gets here
        return f"the ONNX converter is not installed ({exc.name})"
    boosted = any(is_library_estimator(part) for part in components(model))
    if boosted:
        missing = register_onnx_converters()
        if missing is not None:
            return missing
    try:
        session = _session(ort, to_onnx, model, sample, classifier, boosted)
    except Exception as exc:  # the converter's refusal, whatever its type, is the reason
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"skl2onnx cannot convert it ({type(exc).__name__}: {text[:160]})"
    runner = OnnxRunner(session)
    labels, proba = runner.run(sample)
    expected = np.asarray(model.predict(frame))
    if _differ(labels, expected):
        return "ONNX answers differ from scikit-learn's (labels or values on the reference sample)"
    expected_proba = model.predict_proba(frame) if classifier else None
    if (expected_proba is None) != (proba is None):
        return "ONNX answers differ from scikit-learn's (probabilities missing or extra)"
    if proba is not None and expected_proba is not None:
        gap = float(np.abs(proba - np.asarray(expected_proba)).max())
        if not gap <= EXACT_TOLERANCE:
            return f"ONNX answers differ from scikit-learn's (probabilities by up to {gap:.1e})"
    return runner


def _session(ort: Any, to_onnx: Any, model: Any, sample: np.ndarray, classifier: bool, boosted: bool) -> Any:
    """An onnxruntime session over the converted pipeline (raises the converter's or runtime's refusal)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    convert_options = {"zipmap": False} if classifier else None
    if not boosted:
        proto = to_onnx(model, sample[:1], options=convert_options)
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    # onnxmltools writes ai.onnx.ml opset 3 trees; its graphs are consistent in float32 only.
    from skl2onnx import get_latest_tested_opset_version

    opsets = {"": get_latest_tested_opset_version(), "ai.onnx.ml": 3}
    converted = for_conversion(model)
    try:
        proto = to_onnx(converted, sample[:1], options=convert_options, target_opset=opsets)
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # a double graph the runtime refuses: try the converter's float32 graph
        proto = to_onnx(converted, sample[:1].astype(np.float32), options=convert_options, target_opset=opsets)
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def choose_engine(
    model: Any,
    *,
    format: str,
    input_schema: dict[str, Any],
    profile: dict[str, Any] | None,
    reference_row: dict[str, Any] | None,
    prepare: str | None,
    use_onnx: bool = True,
) -> tuple[EngineChoice, OnnxRunner | None]:
    """The engine for a fitted model and, when it is ONNX, the runner that serves it."""
    if format == "onnx":
        return EngineChoice("onnx", None), None
    if not use_onnx:
        return EngineChoice("sklearn", "ONNX turned off by the replica's options (use_onnx = false)"), None
    if prepare:
        return EngineChoice("sklearn", f"prepare step {prepare} is project code (no ONNX converter)"), None
    blocker = _project_code(model)
    if blocker is not None:
        return EngineChoice("sklearn", blocker), None
    schema_columns = input_schema.get("columns") or []
    other = [str(c["name"]) for c in schema_columns if c.get("dtype") not in _NUMERIC]
    if other or not schema_columns:
        shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
        return EngineChoice("sklearn", f"non-numeric input columns ({shown}): the ONNX path takes numbers only"), None
    columns = [str(c["name"]) for c in schema_columns]
    sample = reference_sample(profile, reference_row, columns)
    frame = pd.DataFrame(sample, columns=columns)
    classifier = hasattr(model, "predict_proba") and getattr(model, "classes_", None) is not None
    try:
        found = _convert(model, sample, frame, classifier)
    except Exception as exc:  # the pipeline itself failed on the sample: let scikit-learn serve it
        found = f"the pipeline failed on the reference sample ({type(exc).__name__}: {exc})"
    if isinstance(found, str):
        log.info("ONNX not taken: %s", found)
        return EngineChoice("sklearn", found), None
    return EngineChoice("onnx", None), found


def _without_feature_names(model: Any) -> Any:
    """A shallow copy of ``model`` that does not check column names (same fitted arrays, no copy of them).

    scikit-learn records ``feature_names_in_`` when fitted on a frame and warns (costly, on every call) when
    given a matrix; for a pipeline that does not select columns by name the names are only that check.
    """
    steps = getattr(model, "steps", None)
    if "feature_names_in_" not in vars(model) and not isinstance(steps, list):
        return model
    clone = copy.copy(model)
    if isinstance(steps, list):
        clone.steps = [
            (name, step if step is None or isinstance(step, str) else _without_feature_names(step))
            for name, step in steps
        ]
    vars(clone).pop("feature_names_in_", None)
    return clone


class SklearnPlan:
    """Calls the fitted pipeline's steps directly: what ``Pipeline.predict`` does, once for both answers."""

    __slots__ = ("_final", "_one_call", "_proba", "_transforms", "classes", "classification", "takes_matrix")

    def __init__(self, model: Any, *, classification: bool, matrix_ok: bool) -> None:
        self.classification = classification
        self._setup(model, matrix_ok and self._matrix_safe(model), one_call=True)

    def _setup(self, model: Any, takes_matrix: bool, *, one_call: bool, unroll: bool = True) -> None:
        self.takes_matrix = takes_matrix
        fitted = _without_feature_names(model) if takes_matrix else model
        steps = getattr(fitted, "steps", None)
        if unroll and isinstance(steps, list) and steps and not isinstance(steps[-1][1], str | type(None)):
            self._transforms = [s for _, s in steps[:-1] if s is not None and not isinstance(s, str)]
            self._final = steps[-1][1]
        else:
            self._transforms, self._final = [], fitted
        self._proba = getattr(self._final, "predict_proba", None) if self.classification else None
        classes = getattr(self._final, "classes_", None)
        self.classes = None if classes is None else np.asarray(classes)
        self._one_call = (
            one_call
            and self._proba is not None
            and self.classes is not None
            and self.classes.ndim == 1
            and _name(self._final) in _PROBA_ARGMAX
        )

    @staticmethod
    def _matrix_safe(model: Any) -> bool:
        """A pure scikit-learn pipeline that selects no column by name (then names are only a check)."""
        return all(
            type(part).__module__.startswith("sklearn.")
            and type(part).__name__ not in ("ColumnTransformer", "FunctionTransformer")
            for part in components(model)
        )

    @property
    def one_call(self) -> bool:
        return self._one_call

    def run(self, features: Any, *, finite: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (or values) and class probabilities for a matrix (when ``takes_matrix``) or a frame.

        ``finite``: the inputs are known to be finite, so scikit-learn's own check of each step's input is
        skipped (``assume_finite``: 10-15 % of a 1-row call of a scaler + logistic regression)."""
        if finite:
            from sklearn import config_context  # imported already: the plan is over a fitted pipeline

            with config_context(assume_finite=True):
                return self._run(features)
        return self._run(features)

    def _run(self, features: Any) -> tuple[np.ndarray, np.ndarray | None]:
        for transform in self._transforms:
            features = transform.transform(features)
        if self._one_call:
            proba = np.asarray(self._proba(features))  # type: ignore[misc]
            return self.classes.take(proba.argmax(axis=1)), proba  # type: ignore[union-attr]
        labels = np.asarray(self._final.predict(features))
        rows = labels.shape[0] if labels.ndim else 1
        labels = labels.reshape(rows, -1)
        if labels.shape[1] == 1:
            labels = labels.reshape(-1)
        proba = self._proba(features) if self._proba is not None else None
        return labels, (None if proba is None else np.asarray(proba))

    def check(self, model: Any, frame: pd.DataFrame, matrix: np.ndarray | None) -> None:
        """Drop each shortcut that does not give the pipeline's own answers on ``frame`` (``matrix``: the same)."""
        expected = np.asarray(model.predict(frame))
        expected_proba = model.predict_proba(frame) if self._proba is not None else None

        def same() -> bool:
            labels, proba = self.run(matrix if self.takes_matrix and matrix is not None else frame)
            if _differ(labels, expected):
                return False
            if proba is None or expected_proba is None:
                return (proba is None) == (expected_proba is None)
            return float(np.abs(proba - np.asarray(expected_proba)).max()) <= EXACT_TOLERANCE

        if same():
            return
        for takes_matrix, one_call, unroll in ((self.takes_matrix, False, True), (False, False, True)):
            log.info("scikit-learn fast path: a shortcut differs from the pipeline; dropping it")
            self._setup(model, takes_matrix, one_call=one_call, unroll=unroll)
            if same():
                return
        self._setup(model, False, one_call=False, unroll=False)  # the pipeline's own calls
