"""Batch scoring: a file scored with the environment's champion bundle and validation, recorded as a run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harbourmaster.bundle.loaded import LoadedBundle
from harbourmaster.bundle.predictor import Predictor
from harbourmaster.core.fallback import DeploymentOptions
from harbourmaster.core.permissions import Permission
from harbourmaster.core.progress import SILENT, Progress
from harbourmaster.core.validation import Validator
from harbourmaster.errors import HarbourmasterError, InvalidInputError
from harbourmaster.schemas import RunInfo
from harbourmaster.services.actors import Actor
from harbourmaster.services.training import run_info
from harbourmaster.store.tables import RunRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform


SCORE_CHUNK_ROWS = 10_000  # rows per predict call in batch scoring: progress per chunk, bounded memory


def _read(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    raise InvalidInputError(f"cannot read {path.name}: unknown file type", "use a .csv or .parquet file")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(frame.notna(), None)
    records = clean.to_dict(orient="records")
    for record in records:
        for key, value in record.items():
            if isinstance(value, np.generic):
                record[key] = value.item()
    return records


def score_file(
    bundle: LoadedBundle,
    number: int,
    options: dict[str, Any],
    input_path: Path,
    output_path: Path,
    progress: Progress = SILENT,
) -> tuple[int, int]:
    """Score a CSV/Parquet file with a loaded bundle and the deployment's validation; (rows in, rows out).

    Shared by embedded scoring and data-plane scorers (``harbourmaster score --url``). Rows are predicted
    in chunks of ``SCORE_CHUNK_ROWS``, each reported to ``progress``."""
    progress.stage(f"reading {Path(input_path).name}")
    frame = _read(Path(input_path))
    predictor = Predictor(number, bundle)
    validator = Validator(bundle.manifest.input_schema, DeploymentOptions.model_validate(options or {}).unknown_fields)
    progress.stage(f"checking {len(frame)} rows")
    records = _records(frame)
    errors = validator.check(records)
    if errors:
        shown = "; ".join(f"row {e['record']} {e['field']}: {e['error']}" for e in errors[:10])
        raise InvalidInputError(f"{len(errors)} invalid field(s) in {input_path}: {shown}", "fix the input")
    labels, proba = _predict_in_chunks(predictor, validator.clean(records), progress)
    progress.stage(f"writing {Path(output_path).name}")
    out = frame.copy()
    out["prediction"] = labels
    if proba is not None and predictor.classes is not None:
        for index, label in enumerate(predictor.classes):
            out[f"proba_{label}"] = proba[:, index]
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if output_path.suffix.lower() == ".parquet":
        out.to_parquet(output_path, index=False)
    else:
        out.to_csv(output_path, index=False)
    return len(frame), len(out)


def _predict_in_chunks(
    predictor: Predictor, records: list[dict[str, Any]], progress: Progress
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict ``records`` chunk by chunk (rows are scored independently), reporting the rows done."""
    total = len(records)
    progress.stage(f"scoring with v{predictor.number}")
    labels: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    for start in range(0, max(total, 1), SCORE_CHUNK_ROWS):
        chunk_labels, chunk_proba = predictor.predict(predictor.batch(records[start : start + SCORE_CHUNK_ROWS]))
        labels.append(chunk_labels)
        if chunk_proba is not None:
            probabilities.append(chunk_proba)
        progress.advance(min(start + SCORE_CHUNK_ROWS, total), total)
    proba = np.concatenate(probabilities) if probabilities and len(probabilities) == len(labels) else None
    return np.concatenate(labels), proba


def failure_message(exc: Exception) -> str:
    """What a failed run records: the error and its fix (as training runs do), or the exception's type and text."""
    return str(exc) if isinstance(exc, HarbourmasterError) else f"{type(exc).__name__}: {exc}"


class ScoringService:
    """Scores CSV/Parquet files with the champion deployed in an environment, and records the runs."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def score(
        self,
        actor: Actor,
        project: str,
        environment: str,
        input_path: Path,
        output_path: Path,
        progress: Progress = SILENT,
    ) -> RunInfo:
        if self._platform.access.is_guarded(environment):
            # Like a call to a replica there: a guarded environment's model scores only for those granted.
            self._platform.access.require(actor, Permission.PREDICT, environment=environment, target=project)
        state = self._platform.deployments.get(actor, project, environment)
        if state.champion is None:
            raise InvalidInputError(f"{project} has no champion in {environment}", "deploy a version first")
        started_at = datetime.now(UTC)
        rows_in = rows_out = None
        try:
            progress.stage(f"loading v{state.champion.number}")
            bundle = self._platform.registry.load_digest(actor, project, state.champion.digest)
            rows_in, rows_out = score_file(
                bundle, state.champion.number, state.options, input_path, output_path, progress
            )
            status, error = "succeeded", None
        except Exception as exc:
            status, error = "failed", failure_message(exc)
        return self.record(
            actor,
            project,
            environment,
            version=state.champion.number,
            status=status,
            rows_in=rows_in,
            rows_out=rows_out,
            input=str(input_path),
            output=str(output_path),
            error=error,
            started_at=started_at,
        )

    def record(
        self,
        actor: Actor,
        project: str,
        environment: str,
        *,
        version: int,
        status: str,
        rows_in: int | None,
        rows_out: int | None,
        input: str,
        output: str,
        error: str | None = None,
        started_at: datetime | None = None,
    ) -> RunInfo:
        """Record one finished scoring run (and audit it) in one transaction."""
        if status not in ("succeeded", "failed"):
            raise InvalidInputError(f"{status!r} is not a scoring outcome", "succeeded or failed")
        with self._platform.db.transaction() as session:
            self._platform.registry.project_row(session, project)  # an unknown project is a 404
            row = RunRow(
                project=project,
                kind="score",
                status=status,
                environment=environment,
                version_number=version,
                created_by=actor.name,
                details={"input": input, "output": output},
                error=error,
                rows_in=rows_in,
                rows_out=rows_out,
                finished_at=datetime.now(UTC),
            )
            if started_at is not None:
                row.started_at = started_at
            session.add(row)
            session.flush()
            self._platform.audit.record(
                session,
                actor,
                "run.score",
                f"{project}:run{row.id}",
                environment=environment,
                outcome="allowed" if status == "succeeded" else "failed",
                after={
                    "status": status,
                    "version": version,
                    "rows_in": rows_in,
                    "rows_out": rows_out,
                    "input": input,
                    "output": output,
                    "error": error,
                },
            )
            return run_info(row)
