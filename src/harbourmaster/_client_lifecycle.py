"""SDK methods of the model lifecycle: retraining on production data and proving the fix.

Both run model code, so they run here, in the caller's (CLI or job) process, as ``train`` and batch
scoring do: the control plane hands out the labelled production rows and registers the result, or
judges the two versions' predictions against the ground truth it reads itself.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harbourmaster.core.data_checks import check_training_data
from harbourmaster.core.data_checks import describe as describe_problems
from harbourmaster.core.permissions import Permission
from harbourmaster.core.progress import SILENT, Progress
from harbourmaster.core.quality import class_key
from harbourmaster.core.retraining import require_labelled_rows, split_recent
from harbourmaster.core.run_steps import RunTrace
from harbourmaster.core.schema import InputSchema
from harbourmaster.errors import DataProblemError, HarbourmasterError, InvalidInputError, UntrustedContentError
from harbourmaster.schemas import TrainResult, VersionDetail
from harbourmaster.services.retraining import (
    ChallengeResult,
    ProductionRows,
    ScoredRows,
    holdout_start,
)
from harbourmaster.services.training import (
    build_training_bundle,
    data_source_of,
    project_settings_of,
    read_project_spec,
)
from harbourmaster.store.data_sources import DataSource, load_frame

if TYPE_CHECKING:
    import pandas as pd

    from harbourmaster.bundle.builder import Bundle
    from harbourmaster.bundle.loaded import LoadedBundle
    from harbourmaster.client import _Remote
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform

KEYS = ("request_id", "row", "ts")  # bookkeeping columns of a production frame, not features


class LifecycleMethods:
    """``retrain`` on production data and ``evaluate`` a retrained version against the champion."""

    _remote: _Remote | None
    _platform: Platform | None
    actor: Actor

    def production_rows(
        self,
        project: str,
        environment: str,
        *,
        since: datetime | None = None,
        last: int | None = None,
        purpose: str = "retrain",
    ) -> ProductionRows:
        """The labelled production rows of ``project`` in ``environment`` (audited on a guarded environment)."""
        if self._remote:
            body = {"since": since.isoformat() if since else None, "last": last}
            route = "retrain" if purpose == "retrain" else "evaluations"
            route = f"/{route}/{project}/{environment}/rows"
            return ProductionRows.model_validate(self._remote.post(route, json=body))
        return self._platform.retraining.production_rows(
            self.actor, project, environment, since=since, last=last, purpose=purpose
        )

    def retrain(
        self,
        project: str,
        environment: str,
        *,
        since: datetime | None = None,
        last: int | None = None,
        mix_training: float = 0.0,
        project_dir: str | Path | None = None,
        progress: Progress = SILENT,
        case: int | None = None,
    ) -> TrainResult:
        """Retrain ``project`` on the labelled production rows of ``environment`` with its own training
        entrypoint and register the new version (lineage ``retrain``; a run of kind ``retrain``).

        The code is the champion's, from the snapshot its bundle carries, unless ``project_dir`` names a
        project folder. The newest ``[retrain] holdout`` share of the rows is held out of training: it is
        the evaluation set of ``evaluate``. ``mix_training``: that share of the original training source
        (the project's ``[data]``) is added to the production rows. Refused, with nothing registered, when no
        ground truth arrived, when fewer than ``[retrain] min_rows`` rows are labelled, or when the rows
        break the champion's input schema or the project's ``[schema]``. ``case``: the lifecycle case this
        retraining runs for (recorded in the lineage, so a worker resuming the case finds the version).
        """
        if since is not None and last is not None:
            raise InvalidInputError("give --since or --last, not both", "--since DATE (a window) or --last N (rows)")
        if not 0.0 <= mix_training <= 1.0:
            raise InvalidInputError(
                f"--mix-training {mix_training}: a fraction of the original training rows, from 0 to 1",
                "e.g. --mix-training 0.3 adds 30 % of the training source's rows",
            )
        progress.stage(f"reading the labelled production rows of {project} in {environment}")
        rows = self.production_rows(project, environment, since=since, last=last, purpose="retrain")
        champion = self.version(project, rows.champion)  # type: ignore[attr-defined]
        with tempfile.TemporaryDirectory(prefix="hm-retrain-") as scratch:
            folder, code_from = self._retrain_code(project, champion, project_dir, Path(scratch) / "project")
            spec = read_project_spec(folder)
            if spec.project.name != project:
                raise InvalidInputError(
                    f"the project folder {folder} is project {spec.project.name!r}, not {project!r}",
                    "give the folder of the project being retrained, or leave out --project-dir",
                )
            target, settings = spec.data.target, spec.retrain
            frame = rows.frame(target)
            where = environment + (f" since {since.isoformat()}" if since else "")
            where += f" (last {last})" if last else ""
            require_labelled_rows(len(frame), settings.min_rows, where)
            problems = check_training_data(
                frame.drop(columns=list(KEYS)),
                target,
                spec.declarations,
                InputSchema.model_validate(champion.input_schema),
                previous_label=f"champion v{champion.number}",
            )
            if problems:
                raise DataProblemError(**describe_problems(problems, f"the production rows of {where}"))
            train, held = split_recent(frame, settings.holdout)
            training = train.drop(columns=list(KEYS))
            mixed, mix_source = 0, None
            if mix_training > 0:
                training, mixed, mix_source = _mix(training, spec, folder, mix_training, target)
            data_file = Path(scratch) / f"production-{environment}.parquet"
            training.to_parquet(data_file, index=False)
            self._identify_remote_actor()  # type: ignore[attr-defined]
            record = {
                "environment": environment,
                "source": f"labelled production rows of {environment}"
                + (f" + {mixed} rows of {mix_source}" if mixed else ""),
                "window": {
                    "from": _iso(frame["ts"].min()),
                    "to": _iso(train["ts"].max()),
                    "since": since.isoformat() if since else None,
                    "last": last,
                },
                "rows": {
                    "answered": rows.answered,
                    "production_labelled": len(frame),
                    "production_training": len(train),
                    "training_source_mixed": mixed,
                    "held_out": len(held),
                },
                "holdout": {
                    "from": _iso(held["ts"].min()),
                    "to": _iso(held["ts"].max()),
                    "rows": len(held),
                    "fraction": settings.holdout,
                },
                "mix_training": mix_training,
                "mix_source": mix_source,
                "champion": {"version": champion.number, "digest": champion.digest},
                "run_by": self.actor.name,
                "code": code_from,
            }
            if case is not None:
                record["case"] = case
            source = DataSource(path=str(data_file))
            if not self._remote:
                return self._platform.training.train(
                    self.actor,
                    folder,
                    data=source,
                    progress=progress,
                    retrain=record,
                    previous_schema=champion.input_schema,
                    description=f"retrained on production data of {environment}",
                )
            return self._retrain_remote(spec, folder, source, record, champion, progress)

    def evaluate(
        self, project: str, version: int | str, environment: str, *, progress: Progress = SILENT
    ) -> ChallengeResult:
        """Score the retrained ``version`` and the champion of ``environment`` on the labelled production
        rows held out of its training (and any labelled since), here; the control plane compares them with
        the ground truth and stores the report and the ``beats_champion`` and ``drift_fixed`` evidence."""
        detail = self.version(project, version)  # type: ignore[attr-defined]
        if self._platform is not None:
            # Embedded mode cannot read a guarded environment: say so first, since that is what to fix (a
            # hint to retrain there would fail the same way).
            self._platform.access.require(self.actor, Permission.READ, environment=environment, target=project)
        boundary = holdout_start(detail.lineage, project, detail.number, environment)
        progress.stage(f"reading the held-out production rows of {environment} (from {boundary.isoformat()})")
        rows = self.production_rows(project, environment, since=boundary, purpose="evaluate")
        if rows.champion == detail.number:
            raise InvalidInputError(
                f"v{detail.number} is already the champion of {environment}: there is nothing to challenge",
                "evaluate a version that is not deployed there yet",
            )
        import pandas as pd

        features = pd.DataFrame.from_records([item.inputs for item in rows.rows])
        progress.stage(f"scoring v{detail.number} and champion v{rows.champion} on {len(features)} rows")
        candidate = self.load(project, detail.number)  # type: ignore[attr-defined]
        champion = self.load(project, rows.champion)  # type: ignore[attr-defined]
        mine, mine_p = _score(candidate, features, detail)
        theirs, theirs_p = _score(champion, features, detail)
        scored = ScoredRows(
            champion=rows.champion,
            request_ids=[item.request_id for item in rows.rows],
            rows=[item.row for item in rows.rows],
            candidate=mine,
            champion_predictions=theirs,
            candidate_probability=mine_p if mine_p is not None and theirs_p is not None else None,
            champion_probability=theirs_p if mine_p is not None and theirs_p is not None else None,
        )
        progress.stage("comparing with the ground truth and recording the evidence")
        return self.record_challenger(project, detail.number, environment, scored)

    def record_challenger(
        self, project: str, version: int | str, environment: str, scored: ScoredRows
    ) -> ChallengeResult:
        """Send both versions' predictions on the held-out rows; the control plane judges and stores them."""
        if self._remote:
            return ChallengeResult.model_validate(
                self._remote.post(
                    f"/evaluations/{project}/{version}/{environment}", json=scored.model_dump(mode="json")
                )
            )
        return self._platform.retraining.record_challenger(self.actor, project, version, environment, scored)

    # -- internals --------------------------------------------------------------

    def _retrain_code(
        self, project: str, champion: VersionDetail, project_dir: str | Path | None, scratch: Path
    ) -> tuple[Path, str]:
        """The project folder to train from, and where its code came from (for the lineage)."""
        if project_dir is not None:
            return Path(project_dir).absolute(), f"project folder {Path(project_dir).absolute()}"
        bundle = self._champion_bundle(champion)
        code = {path[len("code/") :]: data for path, data in bundle.files.items() if path.startswith("code/")}
        if "harbourmaster.toml" not in code:
            raise InvalidInputError(
                f"champion v{champion.number} of {project} carries no project file (harbourmaster.toml) in its bundle "
                "(registered with the SDK rather than trained from a project folder)",
                "give the project folder: --project-dir PATH",
            )
        root = scratch.resolve()
        for path, data in code.items():
            target = (root / path).resolve()
            if root not in target.parents:
                raise UntrustedContentError(f"the bundle's code path {path!r} leaves the project folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return root, f"champion v{champion.number}'s bundle ({champion.digest[:12]})"

    def _champion_bundle(self, champion: VersionDetail) -> Bundle:
        from harbourmaster.bundle.builder import Bundle
        from harbourmaster.bundle.manifest import BundleManifest

        if not self._remote:
            return self._platform.registry.read_bundle(self.actor, champion.digest)
        manifest = BundleManifest.model_validate(self._remote.get(f"/bundles/{champion.digest}/manifest"))
        files = {
            path: self._remote.get_bytes(f"/bundles/{champion.digest}/files/{path}")
            for path in manifest.files
            if path.startswith("code/")
        }
        return Bundle(manifest=manifest, files=files)

    def _retrain_remote(
        self,
        spec: Any,
        folder: Path,
        source: DataSource,
        record: dict[str, Any],
        champion: VersionDetail,
        progress: Progress,
    ) -> TrainResult:
        project = spec.project.name
        try:
            parent = self.project(project).latest_version  # type: ignore[attr-defined]
        except HarbourmasterError:
            parent = None
        started = time.monotonic()
        trace = RunTrace()
        bundle, summary = build_training_bundle(
            self.actor,
            folder,
            spec,
            data=source,
            parent_version=parent,
            settings=self.settings,  # type: ignore[attr-defined]
            policy=self.build_policy(project, spec.serialization.trusted_types),  # type: ignore[attr-defined]
            progress=progress,
            previous_schema=champion.input_schema,
            trace=trace,
            retrain=record,
        )
        summary["duration_seconds"] = round(time.monotonic() - started, 3)
        summary["steps"], summary["validation"] = trace.dump_steps(), trace.dump_validation()
        summary["project_settings"] = project_settings_of(spec)
        progress.stage("uploading the version")
        version = self._upload(  # type: ignore[attr-defined]
            project, bundle, f"retrained on production data of {record['environment']}", summary
        )
        run = next(run for run in self.runs(project) if run.version_number == version.number)  # type: ignore[attr-defined]
        return TrainResult(run=run, version=version)


def _mix(
    training: pd.DataFrame, spec: Any, folder: Path, fraction: float, target: str
) -> tuple[pd.DataFrame, int, str]:
    """The production rows plus ``fraction`` of the project's training source (drawn with its seed)."""
    import pandas as pd

    source = data_source_of(spec)
    try:
        original = load_frame(source, folder)
    except HarbourmasterError as exc:
        raise DataProblemError(
            f"--mix-training needs the original training source {source.describe()}: {exc.message}",
            "run from the project folder (--project-dir PATH) where that data is, or leave out --mix-training",
        ) from exc
    missing = [column for column in training.columns if column not in original.columns]
    if missing:
        raise DataProblemError(
            f"the training source {source.describe()} lacks column(s) the production rows have: {', '.join(missing)}",
            "use a training source with the same columns, or leave out --mix-training",
        )
    sample = original[list(training.columns)].sample(frac=fraction, random_state=spec.evaluation.seed)
    return pd.concat([training, sample], ignore_index=True), len(sample), source.describe()


def _score(loaded: LoadedBundle, features: pd.DataFrame, detail: VersionDetail) -> tuple[list[Any], list[float] | None]:
    """Predictions (JSON-ready) and, for a binary classifier, the probability of its second class."""
    predicted = [value.item() if hasattr(value, "item") else value for value in loaded.predict(features)]
    classes = detail.output_schema.get("classes") if isinstance(detail.output_schema, dict) else None
    if not classes or len(classes) != 2:
        return predicted, None
    probabilities = loaded.predict_proba(features)
    known = [class_key(c) for c in (loaded.classes if loaded.classes is not None else [])]
    positive = class_key(classes[1])
    if probabilities is None or positive not in known:
        return predicted, None
    return predicted, [float(p) for p in probabilities[:, known.index(positive)]]


def _iso(value: Any) -> str:
    import pandas as pd

    return pd.Timestamp(value).isoformat()
