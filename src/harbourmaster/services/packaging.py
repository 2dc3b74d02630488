"""Turning a fitted pipeline and its training data into a version bundle.

Shared by ``harbourmaster train`` and ``Client().register(...)`` so that both
produce the same schema, reference profile and lineage.
"""

from __future__ import annotations

import io
import math
import platform as python_platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harbourmaster import __version__
from harbourmaster.bundle.builder import Bundle, build_bundle
from harbourmaster.bundle.formats import TrustPolicy
from harbourmaster.core.declared_schema import ColumnDeclaration, apply_declarations
from harbourmaster.core.digest import frame_fingerprint
from harbourmaster.core.drift import PREDICTION
from harbourmaster.core.profile import build_profile, synthetic_row
from harbourmaster.core.schema import InputSchema, infer_input_schema, infer_output_schema
from harbourmaster.errors import EntrypointError, InvalidInputError
from harbourmaster.services.column_usage import unread_columns

if TYPE_CHECKING:
    import pandas as pd

OUTPUT_SAMPLE_ROWS = 1000
REFERENCE_SAMPLE_ROWS = 5000  # default size of the reference sample kept for exact drift tests
REFERENCE_SAMPLE_SEED = 0


def json_safe(value: Any) -> Any:
    """Python scalars for numpy/pandas ones; None for NaN and NaT."""
    import numpy as np
    import pandas as pd

    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NaT or (not isinstance(value, str | bytes) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def describe_params(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as JSON: plain values kept, estimators and callables named.

    The description depends only on what was fitted, never on where it sits in memory, so two
    identical trainings record identical lineage (no ``repr`` with an ``0x...`` address).
    """
    return {str(key): describe_value(value) for key, value in params.items()}


def describe_value(value: Any, depth: int = 0) -> Any:
    """One parameter as JSON: estimators as their class and parameters, callables as module:name."""
    import numpy as np

    if isinstance(value, str | int | float | bool) or value is None or isinstance(value, np.generic):
        return json_safe(value)
    if depth > 8:  # deeper nesting than any real pipeline: name it rather than recurse without end
        return _qualified_name(type(value))
    if isinstance(value, dict):
        return {str(key): describe_value(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [describe_value(item, depth + 1) for item in value]
    if isinstance(value, type) or (callable(value) and not hasattr(value, "get_params")):
        return _qualified_name(value)
    if hasattr(value, "get_params"):
        try:
            inner = value.get_params(deep=False)
        except Exception:  # a third-party estimator's get_params may fail; the class still names it
            inner = {}
        return {"estimator": _qualified_name(type(value)), "params": describe_params(inner)}
    return _qualified_name(type(value))


def _qualified_name(thing: Any) -> str:
    module = getattr(thing, "__module__", None) or ""
    name = getattr(thing, "__qualname__", None) or getattr(thing, "__name__", None) or type(thing).__name__
    return f"{module}:{name}" if module else str(name)


def runtime_versions() -> dict[str, str]:
    import numpy as np
    import pandas as pd
    import sklearn

    return {
        "python": python_platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "harbourmaster": __version__,
    }


def package_version(
    model: Any,
    *,
    features: pd.DataFrame,
    target: pd.Series | None,
    metrics: dict[str, float],
    lineage: dict[str, Any],
    created_by: str,
    format: str = "skops",
    code_files: dict[str, bytes] | None = None,
    prepare: str | None = None,
    trusted_pickle: bool = False,
    policy: TrustPolicy | None = None,
    sensitive: Sequence[str] = (),
    reference_sample_rows: int = REFERENCE_SAMPLE_ROWS,
    project: str | None = None,
    schema: Mapping[str, ColumnDeclaration] | None = None,
) -> Bundle:
    """Build the bundle of a fitted pipeline from the raw features it was trained on.

    ``features`` are raw records (before any preparation step): they define the
    input schema that serving validates against and the reference profile that
    drift is measured against. With ``format="onnx"``, ``model`` is the converted
    ONNX graph (an ``onnx.ModelProto`` or its bytes): it is what gets bundled, and
    it runs on onnxruntime here to infer the output schema. Columns named in ``sensitive`` are
    profiled without their values; the manifest's reference row is synthetic (no training record).
    Up to ``reference_sample_rows`` training rows (drawn with a fixed seed, sensitive columns left out)
    and the pipeline's predictions on them are kept as ``reference/sample.parquet`` for the exact drift
    tests; 0 keeps none (drift then uses the histogram profile).
    ``project`` names the project in a refusal's hint.
    ``schema`` holds the project's column declarations (``[schema]``), laid over the inferred schema;
    columns the fitted pipeline does not read (and whose role is not declared) become ``ignored`` and
    optional. Only feature columns are profiled (drift and the humility rule look at nothing else).
    """
    from harbourmaster.bundle.engine import choose_engine

    declarations = dict(schema or {})
    predictor = _onnx_predictor(model) if format == "onnx" else model
    if features.empty:
        raise InvalidInputError("the training data has no rows", "pass the data the model was fit on")
    sample = features.head(OUTPUT_SAMPLE_ROWS)
    try:
        predictions = predictor.predict(sample)
    except Exception as exc:  # the user's pipeline: any failure is theirs to fix
        raise EntrypointError(
            f"the pipeline cannot predict on its own training data: {type(exc).__name__}: {exc}",
            "check that it is fitted and takes the raw training columns (minus the target)",
        ) from exc
    full_lineage = {
        "data": {
            "fingerprint": frame_fingerprint(
                features if target is None else features.assign(**{"__target__": target.values})
            ),
            "rows": len(features),
            **lineage.pop("data", {}),
        },
        "created_by": created_by,
        "created_at": datetime.now(UTC).isoformat(),
        "runtime": runtime_versions(),
        **lineage,
    }
    if "parameters" not in full_lineage and hasattr(predictor, "get_params"):
        full_lineage["parameters"] = describe_params(predictor.get_params(deep=False))
    unknown = sorted({str(name) for name in sensitive} - {str(c) for c in features.columns})
    if unknown:
        raise InvalidInputError(
            f"sensitive column(s) not in the training data: {', '.join(unknown)}",
            "name feature columns of the training data (the target cannot be withheld)",
        )
    declared_roles = [name for name, declared in declarations.items() if declared.role is not None]
    unread = unread_columns(predictor, features, skip=declared_roles)
    if unread:
        full_lineage["unread_columns"] = unread
    inferred = apply_declarations(
        infer_input_schema(features, sensitive=sensitive), features, declarations, unused=unread, sensitive=sensitive
    )
    input_schema = inferred.model_dump(mode="json")
    profiled = _profile_frame(features, inferred)
    built = build_profile(profiled, sensitive=[name for name in sensitive if name in profiled.columns])
    reference_row = json_safe(synthetic_row(built, dict(profiled.dtypes.items())))
    profile = built.model_dump(mode="json")
    # Which engine will serve it and why (the same decision a replica makes when it loads the version).
    choice, _ = choose_engine(
        model, format=format, input_schema=input_schema, profile=profile, reference_row=reference_row, prepare=prepare
    )
    full_lineage["serving"] = choice.as_dict()
    return build_bundle(
        model,
        format=format,
        code_files=code_files or {},
        prepare=prepare,
        input_schema=input_schema,
        output_schema=infer_output_schema(predictor, predictions).model_dump(mode="json"),
        profile=profile,
        metrics={name: float(value) for name, value in metrics.items()},
        lineage=json_safe(full_lineage),
        reference_row=reference_row,
        trusted_pickle=trusted_pickle,
        policy=policy,
        reference_sample=reference_sample_bytes(predictor, features, sensitive, reference_sample_rows),
        project=project,
    )


def _profile_frame(features: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """The feature columns as profiled: dates written as text become datetimes (profiled as a range)."""
    import pandas as pd

    names = schema.features
    if not names:
        raise InvalidInputError(
            "no column is left as a feature: every column is an id, ignored, or not read by the pipeline",
            'declare the columns the pipeline uses with role = "feature" in [schema]',
        )
    frame = features[names].copy()
    for column in schema.columns:
        if column.name in frame.columns and column.dtype == "datetime":
            values = frame[column.name]
            if not pd.api.types.is_datetime64_any_dtype(values.dtype):
                parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
                frame[column.name] = parsed.dt.tz_localize(None)
    return frame


def reference_sample_bytes(predictor: Any, features: pd.DataFrame, sensitive: Sequence[str], rows: int) -> bytes | None:
    """Parquet bytes of a reproducible sample of ``features`` (without ``sensitive`` columns) and the
    pipeline's predictions on it (column ``__prediction__``); None when ``rows`` is 0."""
    import numpy as np

    if rows < 0:
        raise InvalidInputError(f"reference sample of {rows} rows", "use 0 (no sample) or more rows")
    if rows == 0:
        return None
    picked = features.sample(n=rows, random_state=REFERENCE_SAMPLE_SEED) if len(features) > rows else features
    predictions = np.asarray(predictor.predict(picked))
    sample = picked.drop(columns=[c for c in sensitive if c in picked.columns]).reset_index(drop=True)
    if predictions.ndim == 1 and len(predictions) == len(sample):
        sample = sample.assign(**{PREDICTION: predictions})
    buffer = io.BytesIO()
    sample.to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()


def _onnx_predictor(model: Any) -> Any:
    """An ONNX graph (``ModelProto`` or bytes) behind ``predict``, to infer the output schema."""
    from harbourmaster.bundle.formats import OnnxFormat
    from harbourmaster.bundle.onnx_model import OnnxModel

    return OnnxModel(OnnxFormat().dump(model))
