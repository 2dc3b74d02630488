"""A bundle loaded and ready to score (kept lean: it sits on the serving hot path)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harbourmaster.bundle.manifest import BundleManifest
from harbourmaster.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class LoadedBundle:
    """A verified bundle's model, scoring frames in the input schema's column order."""

    __slots__ = ("_columns", "_proba", "digest", "manifest", "model")

    def __init__(self, digest: str, manifest: BundleManifest, model: Any) -> None:
        self.digest = digest
        self.manifest = manifest
        self.model = model
        columns = manifest.input_schema.get("columns") or []
        self._columns: list[str] = [str(column["name"]) for column in columns]
        self._proba = getattr(model, "predict_proba", None)

    def _select(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not self._columns:
            return frame
        if frame.columns.size == len(self._columns) and all(
            a == b for a, b in zip(frame.columns, self._columns, strict=True)
        ):
            return frame
        try:
            return frame[self._columns]
        except KeyError:
            missing = [c for c in self._columns if c not in frame.columns]
            raise InvalidInputError(
                f"input is missing columns: {', '.join(missing)}",
                "send every column of the version's input schema",
            ) from None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predictions, one per row."""
        import numpy as np

        return np.asarray(self.model.predict(self._select(frame)))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Class probabilities, or None when the model gives none."""
        import numpy as np

        if self._proba is None:
            return None
        result = self._proba(self._select(frame))
        return None if result is None else np.asarray(result)

    @property
    def classes(self) -> np.ndarray | None:
        """Class labels in probability-column order, when the model has them."""
        import numpy as np

        classes = getattr(self.model, "classes_", None)
        return None if classes is None else np.asarray(classes)

    def __repr__(self) -> str:
        return f"LoadedBundle(digest={self.digest[:12]}…, format={self.manifest.format})"
