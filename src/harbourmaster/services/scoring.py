"""Batch scoring: a file scored with the environment's champion bundle and validation, recorded as a run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harbourmaster.bundle.loaded import LoadedBundle
from harbourmaster.core.fallback import DeploymentOptions
from harbourmaster.core.permissions import Permission
from harbourmaster.core.profile import ReferenceProfile
from harbourmaster.core.progress import SILENT, Progress
from harbourmaster.core.run_checks import RunChecks, ValidationReport, validate_frame
from harbourmaster.core.run_steps import RunStep, RunTrace
from harbourmaster.core.schema import InputSchema
from harbourmaster.core.validation import Validator
from harbourmaster.errors import HarbourmasterError, InvalidInputError
from harbourmaster.schemas import RunInfo
from harbourmaster.services.actors import Actor
from harbourmaster.services.training import run_info
from harbourmaster.store.tables import RunRow

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from harbourmaster.bundle.predictor import Predictor
    from harbourmaster.services.platform import Platform


SCORE_CHUNK_ROWS = 10_000  # rows per predict call in batch scoring: progress per chunk, bounded memory


def _read(path: Path, schema: InputSchema | None = None) -> pd.DataFrame:
    import pandas as pd

    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        # Text columns stay text (a postcode 02134 is not the number 2134).
        text = {c.name: str for c in (schema.columns if schema else []) if c.dtype == "string"}
        return pd.read_csv(path, dtype=text or None)
    raise InvalidInputError(f"cannot read {path.name}: unknown file type", "use a .csv or .parquet file")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    import numpy as np

    clean = frame.astype(object).where(frame.notna(), None)
    records = clean.to_dict(orient="records")
    for record in records:
        for key, value in record.items():
            if isinstance(value, np.generic):
                record[key] = value.item()
    return records


class InvalidRunInputError(InvalidInputError):
    """A run's input data failed its checks: the run is invalid and produces nothing."""

    code = "invalid_run_input"


def invalid_input_error(report: ValidationReport, source: str) -> InvalidRunInputError:
    errors = [f for f in report.findings if f.severity == "error"]
    shown = "; ".join(f.message for f in errors[:10]) + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")
    return InvalidRunInputError(
        f"the input data in {source} is invalid ({len(errors)} error finding(s)): {shown}",
        # No run number here (the run is recorded after): whoever shows the run names it (`score` prints
        # the command that lists every finding).
        "fix the data, or make the check a warning in [monitoring.runs] of harbourmaster.toml",
    )


def _profile(bundle: LoadedBundle) -> ReferenceProfile | None:
    try:
        return ReferenceProfile.model_validate(bundle.manifest.profile) if bundle.manifest.profile else None
    except ValueError:  # an older bundle's profile: the schema's ranges are used instead
        return None


def score_file(
    bundle: LoadedBundle,
    number: int,
    options: dict[str, Any],
    input_path: Path,
    output_path: Path,
    progress: Progress = SILENT,
    *,
    checks: RunChecks | None = None,
    trace: RunTrace | None = None,
) -> tuple[int, int]:
    """Score a CSV/Parquet file with a loaded bundle and the deployment's validation; (rows in, rows out).

    Shared by embedded scoring and data-plane scorers (``harbourmaster score --url``). The input is checked
    first, whole columns at a time, against the version's schema and profile with ``checks`` (the project's
    ``[monitoring.runs]``): an error finding stops the run (``InvalidRunInputError``); rows with a warning
    the model cannot take are set aside. Rows are predicted in chunks of ``SCORE_CHUNK_ROWS``, each reported
    to ``progress``; each step goes to ``trace``."""
    import numpy as np

    from harbourmaster.bundle.predictor import Predictor

    trace = trace or RunTrace()
    checks = checks or RunChecks()
    schema = InputSchema.model_validate(bundle.manifest.input_schema)
    deployment = DeploymentOptions.model_validate(options or {})
    progress.stage(f"reading {Path(input_path).name}")
    with trace.step("read") as step:
        frame = _read(Path(input_path), schema)
        step.rows_out = len(frame)
    progress.stage(f"checking {len(frame)} rows")
    with trace.step("validate", len(frame)) as step:
        checked = validate_frame(
            frame,
            schema,
            checks,
            profile=_profile(bundle),
            unknown_columns=deployment.unknown_fields,
            against=f"v{number}",
        )
        trace.validation = checked.report
        if checked.report.status == "invalid":
            raise invalid_input_error(checked.report, str(input_path))
        kept = frame[checked.keep]
        step.rows_out = len(kept)
    predictor = Predictor(number, bundle)
    validator = Validator(bundle.manifest.input_schema, deployment.unknown_fields)
    with trace.step("score", len(kept)) as step:
        records = _records(checked.frame[checked.keep])
        errors = validator.check(records)  # what serving would refuse that the column checks let through
        if errors:
            shown = "; ".join(f"row {e['record']} {e['field']}: {e['error']}" for e in errors[:10])
            raise InvalidInputError(f"{len(errors)} invalid field(s) in {input_path}: {shown}", "fix the input")
        if records:
            labels, proba = _predict_in_chunks(predictor, validator.clean(records), progress)
        else:  # every row set aside (or none came): nothing to ask the model
            labels, proba = np.array([], dtype=object), None
        step.rows_out = len(labels)
    progress.stage(f"writing {Path(output_path).name}")
    with trace.step("write", len(kept)) as step:
        out = kept.copy()
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
        step.rows_out = len(out)
    return len(frame), len(out)


def _predict_in_chunks(
    predictor: Predictor, records: list[dict[str, Any]], progress: Progress
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict ``records`` chunk by chunk (rows are scored independently), reporting the rows done."""
    import numpy as np

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
        trace = RunTrace()
        try:
            progress.stage(f"loading v{state.champion.number}")
            with trace.step("load") as step:
                bundle = self._platform.registry.load_digest(actor, project, state.champion.digest)
                step.note = f"v{state.champion.number}"
            checks = self._platform.runs.checks(project)
            rows_in, rows_out = score_file(
                bundle,
                state.champion.number,
                state.options,
                input_path,
                output_path,
                progress,
                checks=checks,
                trace=trace,
            )
            status, error = "succeeded", None
        except Exception as exc:
            status, error = "failed", failure_message(exc)
            if rows_in is None and trace.validation is not None:
                rows_in = trace.validation.rows
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
            steps=trace.dump_steps(),
            validation_report=trace.dump_validation(),
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
        steps: list[Any] | None = None,
        validation_report: dict[str, Any] | ValidationReport | None = None,
    ) -> RunInfo:
        """Record one finished scoring run, its steps and the validation of its input (and audit it) in one
        transaction."""
        if status not in ("succeeded", "failed"):
            raise InvalidInputError(f"{status!r} is not a scoring outcome", "succeeded or failed")
        report = (
            ValidationReport.model_validate(validation_report, from_attributes=True)
            if validation_report is not None
            else None
        )
        step_rows = [RunStep.model_validate(step, from_attributes=True).model_dump(mode="json") for step in steps or []]
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
                steps=step_rows,
                validation=report.status if report is not None else None,
                validation_report=report.model_dump(mode="json") if report is not None else None,
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
                    "validation": report.status if report is not None else None,
                    "error": error,
                },
            )
            return run_info(row)
