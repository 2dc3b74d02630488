"""An ONNX graph behind the scikit-learn ``predict``/``predict_proba`` interface."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from harbourmaster.errors import InvalidInputError

# onnxruntime type strings -> numpy dtypes for inputs.
_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


def _class_labels(data: bytes) -> np.ndarray | None:
    """Class labels recorded by a classifier or ZipMap node (skl2onnx writes them)."""
    import onnx
    from onnx import helper

    graph = onnx.load_model_from_string(data).graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                values = helper.get_attribute_value(attribute)
                if attribute.name == "classlabels_strings":
                    return np.array([v.decode("utf-8") for v in values], dtype=object)
                return np.array(values, dtype=np.int64)
    return None


class OnnxModel:
    """Runs an ONNX model on CPU; takes pandas frames like a scikit-learn pipeline."""

    def __init__(self, data: bytes) -> None:
        options = ort.SessionOptions()
        self.session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        probability = [o for o in outputs if o.type.startswith("seq(map") or "probab" in o.name.lower()]
        self._proba_name: str | None = probability[0].name if probability and len(outputs) > 1 else None
        self._proba_is_map = bool(probability) and probability[0].type.startswith("seq(map")
        self._label_name = next(o.name for o in outputs if o.name != self._proba_name)
        self.classes_: np.ndarray | None = _class_labels(data) if self._proba_name is not None else None

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._inputs]

    def _feeds(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if len(self._inputs) == 1:
            # One [N, k] input: the frame's values in column order.
            single = self._inputs[0]
            return {single.name: frame.to_numpy(dtype=_DTYPES.get(single.type, np.float32))}
        missing = [i.name for i in self._inputs if i.name not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"the ONNX model needs columns missing from the input: {', '.join(missing)}",
                "send every column of the version's input schema",
            )
        # Several inputs: one [N, 1] column each, by name.
        feeds: dict[str, np.ndarray] = {}
        for item in self._inputs:
            dtype = _DTYPES.get(item.type, np.float32)
            column = frame[item.name].to_numpy()
            column = column.astype(str).astype(object) if dtype is np.object_ else column.astype(dtype, copy=False)
            feeds[item.name] = column.reshape(-1, 1)
        return feeds

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Labels (classifiers) or values (regressors), one per row."""
        (result,) = self.session.run([self._label_name], self._feeds(frame))
        result = np.asarray(result)
        if result.ndim == 2 and result.shape[1] == 1:
            result = result.ravel()
        return result

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Class probabilities ordered like ``classes_``; None if the model has none."""
        if self._proba_name is None:
            return None
        (result,) = self.session.run([self._proba_name], self._feeds(frame))
        if not self._proba_is_map:
            return np.asarray(result)
        # ZipMap output: one {class: probability} dict per row.
        if not result:
            width = 0 if self.classes_ is None else len(self.classes_)
            return np.empty((0, width), dtype=np.float32)
        order = list(self.classes_) if self.classes_ is not None else sorted(result[0])
        return np.array([[row[c] for c in order] for row in result], dtype=np.float32)
