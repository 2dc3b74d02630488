"""The inference path of one loaded version: an exact ONNX copy of the pipeline, or the pipeline itself.

At load (never on the request path) ``engine.choose_engine`` decides, as it did at registration: a pure
scikit-learn pipeline over numeric inputs runs as an exact ONNX copy; anything else (project code, a
``prepare`` step, string inputs, answers that differ) runs on scikit-learn through ``engine.SklearnPlan``
(a numpy matrix where the pipeline needs no column names, one model call for labels and probabilities
where that is exact), with the reason kept in ``engine_reason``.
"""

from __future__ import annotations

import logging
import math
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from harbourmaster.bundle.engine import SklearnPlan, choose_engine, library_only, reference_sample
from harbourmaster.bundle.loaded import LoadedBundle

log = logging.getLogger("harbourmaster.bundle")


class Batch:
    """Validated records and the frame/matrix built from them, shared by every path."""

    __slots__ = ("_frame", "columns", "finite", "matrix", "records")

    def __init__(
        self, records: list[dict[str, Any]], columns: list[str], numeric: bool, matrix: np.ndarray | None = None
    ) -> None:
        self.records = records
        self.columns = columns
        self._frame: pd.DataFrame | None = None
        self.matrix: np.ndarray | None = matrix if numeric else None
        # A matrix given by the caller is validated (``Validator.plain_matrix``: every value finite), so
        # scikit-learn need not check it again; one built here from records may hold NaN for a null.
        self.finite = self.matrix is not None
        if numeric and matrix is None:  # None becomes NaN in a float64 array
            getter = itemgetter(*columns)
            try:
                if len(columns) == 1:
                    self.matrix = np.array([[getter(r)] for r in records], dtype=np.float64)
                else:
                    self.matrix = np.array([getter(r) for r in records], dtype=np.float64)
            except KeyError:  # an optional column left out: the pipeline sees a null
                self.matrix = np.array([[r.get(c) for c in columns] for r in records], dtype=np.float64)

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
        model = bundle.model
        manifest = bundle.manifest
        choice, self._onnx = choose_engine(
            model,
            format=manifest.format,
            input_schema=manifest.input_schema,
            profile=manifest.profile,
            reference_row=manifest.reference_row,
            prepare=manifest.prepare,
            use_onnx=use_onnx,
        )
        self.engine: str = choice.engine
        self.engine_reason: str | None = choice.reason
        self._plan = SklearnPlan(model, classification=self.task == "classification", matrix_ok=self.numeric)
        if self._onnx is None:
            self._check_plan()
        # No project code on the inference path: an ONNX graph in onnxruntime, or library estimators only.
        self.library_only: bool = (
            self._onnx is not None or manifest.format == "onnx" or (not manifest.prepare and library_only(model))
        )

    def _check_plan(self) -> None:
        """The scikit-learn shortcuts must give the pipeline's own answers on the reference sample."""
        manifest = self.bundle.manifest
        if self.numeric:
            batch = self.batch([], reference_sample(manifest.profile, manifest.reference_row, self.columns))
        else:
            batch = self.batch([self._reference_record()])
        try:
            self._plan.check(self.bundle.model, batch.frame, batch.matrix)
        except Exception as exc:  # the pipeline itself cannot score its reference: warm() reports it
            log.info("version %s: fast-path check skipped (%s: %s)", self.number, type(exc).__name__, exc)

    @property
    def engine_info(self) -> dict[str, Any]:
        """The engine, why ONNX was not taken, and how scikit-learn is called (for status and metadata)."""
        info: dict[str, Any] = {"engine": self.engine, "reason": self.engine_reason}
        if self._onnx is None and self.bundle.manifest.format != "onnx":
            info["input"] = "matrix" if self._plan.takes_matrix else "frame"
            info["calls"] = 1 if self._plan.one_call or self._plan.classes is None else 2
        return info

    def _reference_record(self) -> dict[str, Any]:
        reference = self.bundle.manifest.reference_row
        if reference:
            return {name: _plain(reference.get(name)) for name in self.columns}
        manifest = self.bundle.manifest
        row = reference_sample(manifest.profile, manifest.reference_row, self.columns, rows=1)[0]
        return dict(zip(self.columns, row.tolist(), strict=True))

    def batch(self, records: list[dict[str, Any]], matrix: np.ndarray | None = None) -> Batch:
        """The batch of ``records``; ``matrix``, when given, is theirs already (float64, in ``columns`` order)."""
        return Batch(records, self.columns, self.numeric, matrix)

    def predict(self, batch: Batch) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (or values) and class probabilities for a batch."""
        matrix = batch.matrix
        if matrix is not None:
            if self._onnx is not None:
                return self._onnx.run(matrix)
            if self._plan.takes_matrix:
                return self._plan.run(matrix, finite=batch.finite)
        return self._plan.run(batch.frame, finite=batch.finite)

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
        labels, proba = self.predict(self.batch([self._reference_record()]))
        problem = self.invalid(labels, proba, 1)
        if problem is not None:
            raise ValueError(f"warm-up prediction on the reference row gave {problem}")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
