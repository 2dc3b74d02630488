"""The training pipeline: project file -> data -> fit -> evaluate -> registered version.

Operators rerun this same pipeline on other data (production data, later) by
passing a different ``DataSource``: the project's code decides how to fit, the
platform decides where the data comes from.
"""

from __future__ import annotations

import importlib
import inspect
import math
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harbourmaster.bundle.builder import Bundle
from harbourmaster.bundle.code import (
    code_modules,
    code_revision,
    project_imports,
    snapshot_project_code,
)
from harbourmaster.bundle.formats import TrustPolicy
from harbourmaster.config import Settings
from harbourmaster.core.data_checks import check_row_counts, check_training_data
from harbourmaster.core.data_checks import describe as describe_problems
from harbourmaster.core.metrics import default_metrics, evaluate, validate_metric_names
from harbourmaster.core.permissions import Permission
from harbourmaster.core.progress import SILENT, Progress
from harbourmaster.core.project_spec import ProjectSpec, parse_project_spec
from harbourmaster.core.provenance import MetricsProvenance
from harbourmaster.core.run_checks import (
    RunChecks,
    ValidationReport,
    findings_of_problems,
    row_count_findings,
    summarise,
)
from harbourmaster.core.run_steps import RunStep, RunTrace
from harbourmaster.core.schema import InputSchema
from harbourmaster.errors import (
    DataProblemError,
    DataSourceError,
    EntrypointError,
    HarbourmasterError,
    ProjectFileError,
    storage_full,
)
from harbourmaster.schemas import RunInfo, TrainResult
from harbourmaster.services.actors import Actor
from harbourmaster.services.packaging import describe_params, package_version
from harbourmaster.store.data_sources import DataSource, load_frame
from harbourmaster.store.tables import RunRow

if TYPE_CHECKING:
    import pandas as pd

    from harbourmaster.services.platform import Platform

PROJECT_FILE = "harbourmaster.toml"
MAX_REPORTED_RUN_SECONDS = 7 * 86_400  # a remote training run reported as longer than a week is not believed


def read_project_spec(project_dir: Path) -> ProjectSpec:
    """Read and validate ``harbourmaster.toml`` in a project folder."""
    project_dir = Path(project_dir)
    if not project_dir.is_dir():
        raise ProjectFileError(
            f"project folder {project_dir} does not exist",
            "give the folder that holds harbourmaster.toml",
        )
    path = project_dir / PROJECT_FILE
    if not path.is_file():
        raise ProjectFileError(
            f"{path} is missing",
            "create it: see docs/project-file.md, or run `harbourmaster demo` for an example",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProjectFileError(f"{path} is not valid TOML: {exc}", "fix the syntax at that line") from exc
    return parse_project_spec(data, str(path))


def data_source_of(spec: ProjectSpec) -> DataSource:
    return DataSource(path=spec.data.source, url=spec.data.url, query=spec.data.query)


def resolve_entrypoint(reference: str, key: str) -> Callable[..., Any]:
    """Import ``module:function`` from the project code (already on sys.path)."""
    module_name, _, function_name = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise EntrypointError(
            f"[pipeline] {key} = {reference!r}: importing {module_name} failed: {type(exc).__name__}: {exc}",
            f"make sure {module_name.replace('.', '/')}.py exists in the project folder and imports",
        ) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise EntrypointError(
            f"[pipeline] {key} = {reference!r}: {module_name} has no function {function_name}",
            f"define {function_name}() in {module_name.replace('.', '/')}.py",
        )
    return function


def _required_positional(function: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 0
    return sum(
        1
        for parameter in parameters
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        and parameter.default is parameter.empty
    )


def _is_fitted(estimator: Any) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except (NotFittedError, TypeError):
        return False
    return True


def fit_pipeline(
    spec: ProjectSpec,
    train_function: Callable[..., Any],
    prepare_function: Callable[..., Any] | None,
    features: pd.DataFrame,
    target: pd.Series,
) -> Any:
    """Call the project's training entrypoint and return one fitted pipeline.

    ``train()`` (no required arguments) returns an unfitted estimator that the
    platform fits; ``train(frame)`` or ``train(X, y)`` returns a fitted one.
    The preparation step, if any, becomes the first step of the pipeline.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    reference = spec.pipeline.train
    params = dict(spec.pipeline.params)
    prepare_step = FunctionTransformer(prepare_function, validate=False) if prepare_function else None
    try:
        required = _required_positional(train_function)
        if required == 0:
            estimator = train_function(**params)
            _require_estimator(estimator, reference)
            pipeline = Pipeline([("prepare", prepare_step), ("model", estimator)]) if prepare_step else estimator
            pipeline.fit(features, target)
            return pipeline
        prepared = prepare_step.fit_transform(features) if prepare_step else features
        if required == 1:
            frame = prepared.assign(**{spec.data.target: target.values})
            fitted = train_function(frame, **params)
        else:
            fitted = train_function(prepared, target, **params)
    except HarbourmasterError:
        raise
    except KeyError as exc:
        missing = str(exc.args[0]) if exc.args else ""
        if missing and missing not in features.columns and missing != spec.data.target:
            raise EntrypointError(
                f"training entrypoint {reference} raised KeyError: {missing!r}: the training data has no column "
                f"{missing!r} (columns: {', '.join(map(str, features.columns[:20]))})",
                f"add {missing!r} to the data, or fix the code; declare the columns the code needs in [schema] "
                "of harbourmaster.toml to have the data checked before training",
            ) from exc
        raise EntrypointError(
            f"training entrypoint {reference} raised KeyError: {exc}",
            "fix the training code (run it in a notebook on the same data to debug)",
        ) from exc
    except Exception as exc:
        raise EntrypointError(
            f"training entrypoint {reference} raised {type(exc).__name__}: {exc}",
            "fix the training code (run it in a notebook on the same data to debug)",
        ) from exc
    _require_estimator(fitted, reference)
    if not _is_fitted(fitted):
        raise EntrypointError(
            f"training entrypoint {reference} returned an unfitted {type(fitted).__name__}",
            "return the fitted estimator, or take no arguments and return an unfitted one",
        )
    return Pipeline([("prepare", prepare_step), ("model", fitted)]) if prepare_step else fitted


def _require_estimator(value: Any, reference: str) -> None:
    if not (hasattr(value, "fit") and hasattr(value, "predict")):
        raise EntrypointError(
            f"training entrypoint {reference} returned {type(value).__name__}, not an estimator",
            "return a scikit-learn compatible estimator or pipeline (with fit and predict)",
        )


class TrainingService:
    """Runs a project's training pipeline and registers the result."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def train(
        self,
        actor: Actor,
        project_dir: Path,
        *,
        data: DataSource | None = None,
        description: str = "",
        progress: Progress = SILENT,
        retrain: dict[str, Any] | None = None,
        previous_schema: dict[str, Any] | None = None,
    ) -> TrainResult:
        """Train from a project folder and register the new version, recording a run (stages to ``progress``).

        ``retrain``: this is a retraining on production data (``services/retraining.py``): the run is of kind
        ``retrain`` in that record's ``environment``, and the record is the version's ``retrain`` lineage.
        ``previous_schema``: the input schema undeclared columns are checked against (default: the latest
        version's)."""
        project_dir = Path(project_dir).absolute()
        spec = read_project_spec(project_dir)
        self._platform.access.require(actor, Permission.REGISTER, target=spec.project.name)
        run_id = self._start_run(
            actor,
            spec.project.name,
            project_dir,
            kind="retrain" if retrain else "train",
            environment=(retrain or {}).get("environment"),
        )
        trace = RunTrace()
        try:
            parent = self._latest_number(actor, spec.project.name)
            previous = previous_schema or (
                self._platform.registry.get_version(actor, spec.project.name, parent).input_schema
                if parent is not None
                else None
            )
            bundle, summary = build_training_bundle(
                actor,
                project_dir,
                spec,
                data=data,
                parent_version=parent,
                settings=self._platform.settings,
                policy=TrustPolicy.from_settings(
                    self._platform.settings,
                    [
                        *spec.serialization.trusted_types,
                        *self._platform.registry.project_trusted_types(spec.project.name),
                    ],
                ),
                progress=progress,
                previous_schema=previous,
                trace=trace,
                retrain=retrain,
            )
            progress.stage("registering the version")
            with trace.step("register"):
                version = self._platform.registry.register_bundle(
                    actor,
                    spec.project.name,
                    bundle,
                    description or spec.project.description,
                    project_description=spec.project.description,
                    project_settings=project_settings_of(spec),
                    # The platform drew the held-out split and evaluated on it here: computed, not reported.
                    provenance=MetricsProvenance.computed(summary["holdout_rows"]),
                )
        except Exception as exc:
            self._finish_run(actor, run_id, status="failed", error=str(storage_full(exc) or exc), trace=trace)
            raise
        run = self._finish_run(
            actor,
            run_id,
            status="succeeded",
            version_number=version.number,
            rows_in=summary["rows"],
            rows_out=summary["training_rows"] + summary["holdout_rows"],
            details=summary,
            trace=trace,
        )
        return TrainResult(run=run, version=version)

    def record_run(self, actor: Actor, project: str, version_number: int, summary: dict[str, Any]) -> RunInfo:
        """Record a training run done elsewhere (e.g. by a remote SDK) for a new version.

        The run lasted the ``duration_seconds`` the summary reports (the fit happened where the data is);
        a missing or impossible figure records the run as instantaneous rather than refusing the version.
        """
        self._platform.access.require(actor, Permission.REGISTER, target=project)
        duration = summary.get("duration_seconds")
        started = None
        if isinstance(duration, int | float) and 0 <= duration <= MAX_REPORTED_RUN_SECONDS:
            started = datetime.now(UTC) - timedelta(seconds=float(duration))
        summary = dict(summary)
        trace = reported_trace(summary.pop("steps", None), summary.pop("validation", None))
        retrain = summary.get("retrain") if isinstance(summary.get("retrain"), dict) else None
        environment = retrain.get("environment") if retrain else None
        if environment is not None:
            self._platform.environments.get(str(environment))  # a run names an environment that exists
        run_id = self._start_run(
            actor,
            project,
            None,
            started_at=started,
            kind="retrain" if retrain else "train",
            environment=str(environment) if environment is not None else None,
        )
        return self._finish_run(
            actor,
            run_id,
            status="succeeded",
            version_number=version_number,
            rows_in=summary.get("rows"),
            details=summary,
            trace=trace,
        )

    def list_runs(self, actor: Actor, project: str | None = None, limit: int = 50) -> list[RunInfo]:
        self._platform.access.require(actor, Permission.READ)
        from sqlalchemy import select

        with self._platform.db.reader() as session:
            query = select(RunRow).order_by(RunRow.id.desc()).limit(limit)
            if project:
                query = query.where(RunRow.project == project)
            runs = [run_info(row, whole=False) for row in session.scalars(query)]
            if project and not runs:
                self._platform.registry.project_row(session, project)  # a typo is named, not an empty list
        self._platform.access.audit_guarded_read(actor, "run.list", project or "*", (run.environment for run in runs))
        return runs

    def _latest_number(self, actor: Actor, project: str) -> int | None:
        from harbourmaster.errors import NotFoundError

        try:
            return self._platform.registry.get_project(actor, project).latest_version
        except NotFoundError:
            return None

    def _start_run(
        self,
        actor: Actor,
        project: str,
        project_dir: Path | None,
        *,
        started_at: datetime | None = None,
        kind: str = "train",
        environment: str | None = None,
    ) -> int:
        with self._platform.db.transaction() as session:
            row = RunRow(
                started_at=started_at or datetime.now(UTC),
                project=project,
                kind=kind,
                environment=environment,
                status="running",
                created_by=actor.name,
                details={"project_dir": str(project_dir)} if project_dir else {},
            )
            session.add(row)
            session.flush()
            return row.id

    def _finish_run(
        self,
        actor: Actor,
        run_id: int,
        *,
        status: str,
        error: str | None = None,
        version_number: int | None = None,
        rows_in: int | None = None,
        rows_out: int | None = None,
        details: dict[str, Any] | None = None,
        trace: RunTrace | None = None,
    ) -> RunInfo:
        with self._platform.db.transaction() as session:
            row = session.get_one(RunRow, run_id)
            row.status = status
            row.error = error
            row.finished_at = datetime.now(UTC)
            row.version_number = version_number
            row.rows_in = rows_in
            row.rows_out = rows_out
            row.details = {**row.details, **(details or {})}
            if trace is not None:
                row.steps = trace.dump_steps()
                row.validation_report = trace.dump_validation()
                row.validation = trace.validation.status if trace.validation is not None else None
            session.flush()
            self._platform.audit.record(
                session,
                actor,
                f"run.{row.kind}",
                f"{row.project}:run{row.id}",
                outcome="allowed" if status == "succeeded" else "failed",
                after={
                    "status": status,
                    "version": version_number,
                    "rows": rows_in,
                    "validation": row.validation,
                    "error": error,
                },
            )
            return run_info(row)


def reported_trace(steps: Any, validation: Any) -> RunTrace | None:
    """The steps and validation a remote training run reported (what does not parse is not kept)."""
    if steps is None and validation is None:
        return None
    trace = RunTrace()
    try:
        trace.steps = [RunStep.model_validate(step) for step in (steps or [])[:50]]
    except (ValueError, TypeError):
        trace.steps = []
    try:
        trace.validation = ValidationReport.model_validate(validation) if validation is not None else None
    except (ValueError, TypeError):
        trace.validation = None
    return trace


def run_info(row: RunRow, *, whole: bool = True) -> RunInfo:
    """A run as the faces show it; ``whole=False`` (listings) leaves out its steps and findings."""
    return RunInfo(
        id=row.id,
        project=row.project,
        kind=row.kind,
        status=row.status,
        environment=row.environment,
        started_at=row.started_at,
        finished_at=row.finished_at,
        rows_in=row.rows_in,
        rows_out=row.rows_out,
        version_number=row.version_number,
        error=row.error,
        details=row.details,
        created_by=row.created_by,
        validation=row.validation,
        validation_report=row.validation_report if whole else None,
        steps=(row.steps or []) if whole else [],
    )


def project_settings_of(spec: ProjectSpec) -> dict[str, Any]:
    """What the platform keeps of a project file as the project's own configuration.

    Not ``[serialization] trusted_types``: what a model file may contain is an admin
    setting (``harbourmaster trust``), which an upload cannot change.
    """
    return {
        "environments": spec.environments,
        "monitoring": spec.monitoring.model_dump(),
        "retrain": spec.retrain.model_dump(),
        "lifecycle": spec.lifecycle.model_dump(),
    }


def build_training_bundle(
    actor: Actor,
    project_dir: Path,
    spec: ProjectSpec,
    *,
    data: DataSource | None = None,
    parent_version: int | None = None,
    settings: Settings | None = None,
    policy: TrustPolicy | None = None,
    progress: Progress = SILENT,
    previous_schema: dict[str, Any] | None = None,
    trace: RunTrace | None = None,
    retrain: dict[str, Any] | None = None,
) -> tuple[Bundle, dict[str, Any]]:
    """Load data, check it, fit, evaluate on the held-out split and build the bundle (no store writes).

    The data is checked before any project code runs: against the ``[schema]`` declarations and,
    for undeclared columns, ``previous_schema`` (the input schema of ``parent_version``).
    ``policy``: what the fitted pipeline may contain, as registration will check it (the platform's and the
    project's admin-set types); by default ``settings`` plus the project file's ``trusted_types``.
    ``trace`` receives each step (rows in and out, timings) and the verdict of the data checks, with
    the row-count bounds of ``[monitoring.runs]``. ``retrain``: the record of a retraining on production
    data, kept as the ``retrain`` lineage of the version and in the summary.
    """
    from sklearn.model_selection import train_test_split

    trace = trace or RunTrace()
    source = data or data_source_of(spec)
    progress.stage(f"reading {source.describe()}")
    with trace.step("read") as step:
        frame = load_frame(source, project_dir)
        step.rows_out = len(frame)
        step.note = source.describe()
    target_name = spec.data.target
    with trace.step("validate", len(frame)) as step:
        if target_name not in frame.columns:
            raise DataSourceError(
                f"target column {target_name!r} is not in the data from {source.describe()}"
                f" (columns: {', '.join(map(str, frame.columns[:20]))})",
                "fix [data] target in harbourmaster.toml or the data source",
            )
        previous = InputSchema.model_validate(previous_schema) if previous_schema else None
        label = f"v{parent_version}"
        problems = check_training_data(frame, target_name, spec.declarations, previous, previous_label=label)
        trace.validation = training_validation(
            problems, len(frame), spec.monitoring.run_checks(), against=f"[schema]{' and ' + label if previous else ''}"
        )
        if problems:
            raise DataProblemError(**describe_problems(problems, source.describe()))
        if trace.validation.status == "invalid":
            raise DataProblemError(
                f"the training data from {source.describe()}: "
                + "; ".join(f.message for f in trace.validation.findings),
                "use other data, or change the bounds in [monitoring.runs] of harbourmaster.toml",
            )
        frame = frame[frame[target_name].notna()]
        step.rows_out = len(frame)
        features = frame.drop(columns=[target_name])
        target = frame[target_name]
        if features.shape[1] == 0:
            raise DataSourceError(
                f"the data from {source.describe()} has no feature columns besides the target",
                "add feature columns to the data",
            )

    code_files = snapshot_project_code(project_dir)
    modules = code_modules(code_files)
    evaluation = spec.evaluation
    classification = _looks_like_classification(target)
    stratify = target if (evaluation.stratify and classification and target.value_counts().min() >= 2) else None
    with trace.step("split", len(frame)) as step:
        # Judged before splitting, on the sizes train_test_split would make: too few rows to stratify must
        # still read as "too few rows", not as scikit-learn's complaint about classes.
        held_out = math.ceil(evaluation.holdout * len(frame))
        too_few = check_row_counts(len(frame) - held_out, held_out, evaluation.min_rows)
        if too_few is not None:
            raise DataProblemError(
                f"too few rows in the data from {source.describe()} ({len(frame)} with a target): {too_few}",
                f"use more data, or lower [evaluation] min_rows (now {evaluation.min_rows}) if so few rows are "
                "really enough; metrics on a handful of rows say little",
            )
        try:
            x_train, x_test, y_train, y_test = train_test_split(
                features,
                target,
                test_size=evaluation.holdout,
                random_state=evaluation.seed,
                stratify=stratify,
            )
        except ValueError as exc:
            raise DataSourceError(
                f"cannot hold out {evaluation.holdout:.0%} of {len(frame)} rows: {exc}",
                "use more data or a different [evaluation] holdout",
            ) from exc
        step.rows_out = len(x_train) + len(x_test)
        step.note = f"{len(x_train)} to train on, {len(x_test)} held out"
    metric_names = validate_metric_names(
        evaluation.metrics or default_metrics("classification" if classification else "regression")
    )
    with project_imports(project_dir, modules):
        train_function = resolve_entrypoint(spec.pipeline.train, "train")
        prepare_function = resolve_entrypoint(spec.pipeline.prepare, "prepare") if spec.pipeline.prepare else None
        progress.stage(f"fitting {spec.pipeline.train} on {len(x_train)} rows")
        with trace.step("fit", len(x_train)) as step:
            fitted = fit_pipeline(spec, train_function, prepare_function, x_train, y_train)
            step.note = spec.pipeline.train
        progress.stage(f"evaluating on {len(x_test)} held-out rows")
        with trace.step("evaluate", len(x_test)) as step:
            metrics = evaluate(fitted, x_test, y_test, metric_names)
            step.rows_out = len(x_test)
        lineage = {
            "data": {
                "source": (retrain or {}).get("source") or source.describe(),
                "training_rows": len(x_train),
                "holdout_rows": len(x_test),
            },
            "code": code_revision(project_dir, code_files),
            "parameters": {
                **spec.pipeline.params,
                **describe_params(fitted.get_params(deep=False) if hasattr(fitted, "get_params") else {}),
            },
            "parent_version": parent_version,
            "target": target_name,
            "entrypoints": {"train": spec.pipeline.train, "prepare": spec.pipeline.prepare},
            "evaluation": {
                "holdout": evaluation.holdout,
                "seed": evaluation.seed,
                "metrics": metric_names,
                "rows": len(x_test),
            },
        }
        if retrain:
            lineage["retrain"] = retrain
        progress.stage("packaging the bundle")
        with trace.step("package", len(features)):
            bundle = package_version(
                fitted,
                features=features,
                target=target,
                metrics=metrics,
                lineage=lineage,
                created_by=actor.name,
                format=spec.serialization.format,
                code_files=code_files,
                prepare=spec.pipeline.prepare,
                trusted_pickle=spec.serialization.trust_pickle,
                policy=policy
                or TrustPolicy.from_settings(settings or Settings.from_env(), spec.serialization.trusted_types),
                project=spec.project.name,
                sensitive=spec.data.sensitive,
                schema=spec.declarations,
                reference_sample_rows=spec.monitoring.drift_settings().sample_rows,
            )
    summary = {
        "rows": len(frame),
        "training_rows": len(x_train),
        "holdout_rows": len(x_test),
        "metrics": metrics,
        "source": (retrain or {}).get("source") or source.describe(),
    }
    if retrain:
        summary["retrain"] = retrain
    return bundle, summary


def training_validation(problems: list[Any], rows: int, checks: RunChecks, against: str) -> ValidationReport:
    """The verdict on training data: the data checks' problems (each refuses training) and the row bounds."""
    findings = findings_of_problems(problems, rows) + row_count_findings(rows, checks)
    return summarise(findings, rows, against)


def _looks_like_classification(target: pd.Series) -> bool:
    import pandas as pd

    if (
        pd.api.types.is_object_dtype(target.dtype)
        or pd.api.types.is_string_dtype(target.dtype)  # pandas >= 3 reads text as the str dtype
        or isinstance(target.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(target.dtype)
    ):
        return True
    if pd.api.types.is_integer_dtype(target):
        return target.nunique() <= max(20, int(len(target) ** 0.5) // 4) and target.nunique() < len(target)
    return False
