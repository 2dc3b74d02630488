"""The inference path of one loaded version: the registered pipeline, or an exact ONNX copy of it.

At load (never on the request path) a pure scikit-learn pipeline over numeric
inputs is converted to ONNX in double precision (``skl2onnx``, optional extra
``onnx``) and kept only if it gives the same labels and probabilities (within
1e-9) as the registered pipeline on a sample drawn from the version's reference
profile. Anything else is served by the pipeline itself, fed a DataFrame built
in one block so that the pipeline sees the feature names it was fitted with.
"""

from __future__ import annotations

import logging
import math
import threading
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from harbourmaster.bundle.loaded import LoadedBundle

log = logging.getLogger("harbourmaster.bundle")

EXACT_TOLERANCE = 1e-9


class Batch:
    """Validated records and the frame/matrix built from them, shared by every path."""

    __slots__ = ("_frame", "columns", "matrix", "records")

    def __init__(
        self, records: list[dict[str, Any]], columns: list[str], numeric: bool, matrix: np.ndarray | None = None
    ) -> None:
        self.records = records
        self.columns = columns
        self._frame: pd.DataFrame | None = None
        self.matrix: np.ndarray | None = matrix if numeric else None
        if numeric and matrix is None:  # None becomes NaN in a float64 array
            getter = itemgetter(*columns)
            if len(columns) == 1:
                self.matrix = np.array([[getter(r)] for r in records], dtype=np.float64)
            else:
                self.matrix = np.array([getter(r) for r in records], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            if self.matrix is not None:
                self._frame = pd.DataFrame(self.matrix, columns=self.columns)
            else:
                self._frame = pd.DataFrame.from_records(self.records, columns=self.columns)
        return self._frame


def _pure_sklearn(model: Any) -> bool:
    """Whether every step of ``model`` is a scikit-learn class (skl2onnx knows only those)."""
    steps = getattr(model, "steps", None)
    if steps is not None:
        return all(_pure_sklearn(step) for _, step in steps if step not in (None, "passthrough"))
    return type(model).__module__.startswith("sklearn.")


def reference_sample(bundle: LoadedBundle, columns: list[str], rows: int = 256, seed: int = 0) -> np.ndarray:
    """Numeric rows spread over the training range of each feature (for exactness checks)."""
    rng = np.random.default_rng(seed)
    features = (bundle.manifest.profile or {}).get("features", {})
    out = np.zeros((rows, len(columns)), dtype=np.float64)
    reference = bundle.manifest.reference_row or {}
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


class Predictor:
    """One loaded, verified and warmed version, ready for traffic."""

    def __init__(self, number: int, bundle: LoadedBundle, *, use_onnx: bool = True) -> None:
        self.number = number
        self.bundle = bundle
        self.digest = bundle.digest
        self.columns = [str(c["name"]) for c in bundle.manifest.input_schema.get("columns") or []]
        output = bundle.manifest.output_schema or {}
        self.task: str = output.get("task", "other")
        classes = bundle.classes
        self.classes: list[Any] | None = None if classes is None else [_plain(c) for c in classes]
        self._class_set = None if self.classes is None else set(self.classes)
        self._class_keys = [] if self.classes is None else [str(c) for c in self.classes]
        self.numeric = bool(self.columns) and all(
            c.get("dtype") in ("integer", "float") for c in bundle.manifest.input_schema.get("columns") or []
        )
        self.engine = "sklearn"
        self._session: Any = None
        self._input_name = ""
        self._lock = threading.Lock()
        if use_onnx and self.numeric and _pure_sklearn(bundle.model) and bundle.manifest.format != "onnx":
            self._try_onnx()

    def _try_onnx(self) -> None:
        try:
            from skl2onnx import to_onnx  # optional extra "onnx"
        except ImportError:
            return
        try:
            import onnxruntime as ort

            sample = reference_sample(self.bundle, self.columns)
            proto = to_onnx(self.bundle.model, sample[:1], options={"zipmap": False})
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            outputs = session.run(None, {name: sample})
            frame = pd.DataFrame(sample, columns=self.columns)
            expected = np.asarray(self.bundle.predict(frame))
            if not np.array_equal(np.asarray(outputs[0]).reshape(expected.shape), expected):
                log.info("version %s: ONNX labels differ from the pipeline; serving the pipeline", self.number)
                return
            proba = self.bundle.predict_proba(frame)
            if proba is not None:
                if len(outputs) < 2 or np.abs(np.asarray(outputs[1]) - proba).max() > EXACT_TOLERANCE:
                    log.info("version %s: ONNX probabilities differ; serving the pipeline", self.number)
                    return
            elif len(outputs) > 1:
                return
        except Exception as exc:  # conversion is an optimisation: any failure keeps the pipeline
            log.info("version %s: no exact ONNX conversion (%s); serving the pipeline", self.number, exc)
            return
        self._session, self._input_name, self.engine = session, name, "onnx"

    def batch(self, records: list[dict[str, Any]], matrix: np.ndarray | None = None) -> Batch:
        """The batch of ``records``; ``matrix``, when given, is theirs already (float64, in ``columns`` order)."""
        return Batch(records, self.columns, self.numeric, matrix)

    def predict(self, batch: Batch) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (or values) and class probabilities for a batch."""
        if self._session is not None and batch.matrix is not None:
            outputs = self._session.run(None, {self._input_name: batch.matrix})
            labels = np.asarray(outputs[0]).reshape(-1)
            return labels, (np.asarray(outputs[1]) if len(outputs) > 1 else None)
        frame = batch.frame
        labels = np.asarray(self.bundle.predict(frame)).reshape(len(batch), -1)
        if labels.shape[1] == 1:
            labels = labels.reshape(-1)
        proba = self.bundle.predict_proba(frame) if self.task == "classification" else None
        return labels, proba

    def invalid(self, labels: np.ndarray, proba: np.ndarray | None, rows: int) -> str | None:
        """Why an output cannot be returned ("nan" / "invalid_output"), or None when it is fine."""
        if labels.shape[0] != rows:
            return "invalid_output"
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            return "nan"
        if proba is not None and (proba.shape[0] != rows or not np.isfinite(proba).all()):
            return "nan"
        if self._class_set is not None and labels.ndim == 1:
            for value in labels.tolist():
                if value not in self._class_set:
                    return "invalid_output"
        return None

    def answers(self, labels: np.ndarray, proba: np.ndarray | None) -> tuple[list[Any], list[dict[str, float]] | None]:
        """Plain JSON-safe predictions and per-class probabilities."""
        values = labels.tolist()
        # tolist() already gives plain ints/bools; floats (NaN -> None) and objects go through _plain
        predictions = values if labels.dtype.kind in "iub" else list(map(_plain, values))
        if proba is None or self.classes is None:
            return predictions, None
        keys = self._class_keys
        return predictions, list(map(dict, map(zip, repeat(keys), proba.tolist())))

    def warm(self) -> None:
        """One prediction on the version's reference row (or a profile sample) before taking traffic."""
        reference = self.bundle.manifest.reference_row
        if reference:
            record = {name: _plain(reference.get(name)) for name in self.columns}
        else:
            row = reference_sample(self.bundle, self.columns, rows=1)[0]
            record = dict(zip(self.columns, row.tolist(), strict=True))
        labels, proba = self.predict(self.batch([record]))
        problem = self.invalid(labels, proba, 1)
        if problem is not None:
            raise ValueError(f"warm-up prediction on the reference row gave {problem}")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
