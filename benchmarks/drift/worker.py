"""One drift computation in its own process: ``python worker.py TOOL REFERENCE CURRENT [LOG_FOLDER]``.

Prints one JSON line: wall seconds of the computation, peak memory of the process during it
(resident set sampled every 5 ms, minus the resident set with the data loaded) and the
per-column verdicts. Each tool runs in its own virtual environment, so this file imports only
what the tool asks for (and the standard library).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

NUMERIC = [f"num_{i}" for i in range(15)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class PeakMemory:
    """The highest resident set seen while the block runs (sampled in a thread)."""

    def __enter__(self) -> PeakMemory:
        self.baseline = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def measure(compute: Callable[[], dict[str, bool]], **extra: Any) -> None:
    with PeakMemory() as memory:
        started = time.perf_counter()
        verdicts = compute()
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": (memory.peak - memory.baseline) / 2**20,
                "baseline_mb": memory.baseline / 2**20,
                "verdicts": verdicts,
                **extra,
            }
        )
    )


def harbourmaster(reference_path: str, current_path: str) -> None:
    import pandas as pd

    from harbourmaster.core.drift import DriftSettings, Reference, compute_drift
    from harbourmaster.core.profile import build_profile

    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    kinds = {**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(CATEGORICAL, "categorical")}
    # The profile is built at registration and stored in the bundle: not part of a drift report.
    prepared = Reference(profile=build_profile(reference), kinds=kinds, sample=reference)  # type: ignore[arg-type]

    def compute() -> dict[str, bool]:
        features, _, _, _ = compute_drift(current, prepared, DriftSettings())
        return {f.feature: f.drifted for f in features}

    measure(compute)


def harbourmaster_log(reference_path: str, log_folder: str) -> None:
    """Drift over the whole window of a prediction log (JSON-text or typed files), read with DuckDB."""
    import pandas as pd

    from harbourmaster.core.drift import DriftSettings, Reference, compute_drift
    from harbourmaster.core.profile import build_profile
    from harbourmaster.store.artifacts import ArtifactStore
    from harbourmaster.store.prediction_log import PredictionLog

    reference = pd.read_parquet(reference_path)
    sample = reference.sample(n=min(5000, len(reference)), random_state=0)  # what a bundle keeps
    kinds = {**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(CATEGORICAL, "categorical")}
    prepared = Reference(profile=build_profile(reference), kinds=kinds, sample=sample)  # type: ignore[arg-type]
    log = PredictionLog(ArtifactStore(f"file://{log_folder}"))
    columns = {**dict.fromkeys(NUMERIC, "DOUBLE"), **dict.fromkeys(CATEGORICAL, "VARCHAR")}
    timings: dict[str, float] = {}

    def compute() -> dict[str, bool]:
        started = time.perf_counter()
        window = log.window("bench", "drift", version=1, columns=columns)
        timings["read_seconds"] = time.perf_counter() - started
        timings["rows"] = len(window)
        features, _, _, _ = compute_drift(window, prepared, DriftSettings())
        return {f.feature: f.drifted for f in features}

    measure(compute, details=timings)


def evidently(reference_path: str, current_path: str) -> None:
    import pandas as pd

    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)

    def compute() -> dict[str, bool]:
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        return _evidently_verdicts(snapshot.dict())

    measure(compute)


def _evidently_verdicts(result: dict[str, Any]) -> dict[str, bool]:
    """Per-column verdicts of a DataDriftPreset snapshot: each ValueDrift's score against its threshold."""
    verdicts: dict[str, bool] = {}
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        column, method, threshold = config.get("column"), config.get("method"), config.get("threshold")
        if column is None or threshold is None or not isinstance(metric.get("value"), int | float):
            continue
        score = float(metric["value"])
        # p-value tests are named "... p_value" (K-S, chi-square, Z-test); the others are distances.
        verdicts[column] = score < threshold if "p_value" in str(method) else score >= threshold
    return verdicts


def nannyml(reference_path: str, current_path: str) -> None:
    import nannyml as nml
    import pandas as pd

    warnings.filterwarnings("ignore")

    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)

    def compute() -> dict[str, bool]:
        # NannyML's defaults: Jensen-Shannon for both kinds, 10 chunks, thresholds from the reference chunks.
        calculator = nml.UnivariateDriftCalculator(column_names=NUMERIC + CATEGORICAL, treat_as_categorical=CATEGORICAL)
        calculator.fit(reference)
        frame = calculator.calculate(current).filter(period="analysis").to_df()
        verdicts = {}
        for column in NUMERIC + CATEGORICAL:
            alerts = [c for c in frame.columns if c[0] == column and c[-1] == "alert"]
            verdicts[column] = bool(frame[alerts[0]].any()) if alerts else False  # any chunk alerted
        return verdicts

    measure(compute)


TOOLS = {
    "harbourmaster": harbourmaster,
    "harbourmaster-log": harbourmaster_log,
    "harbourmaster-log-typed": harbourmaster_log,
    "evidently": evidently,
    "nannyml": nannyml,
}

if __name__ == "__main__":
    TOOLS[sys.argv[1]](*sys.argv[2:])
