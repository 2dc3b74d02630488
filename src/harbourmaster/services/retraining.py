"""Retraining on production data, the control plane's side: it hands out the labelled production rows
of an environment (the captured inputs joined with the ground truth that arrived for them) and judges a
challenger on the held-out ones. It never runs model code: the training (``harbourmaster retrain``) and
the scoring of both versions (``harbourmaster evaluate``) happen in the CLI or job process, as ``train``
and batch scoring do; what comes back here is a bundle to register, or the two versions' predictions,
which are scored against the ground truth this service reads itself.

Reading production rows is a read of the environment's prediction log (``read`` there; audited on a
guarded environment); for retraining it also needs ``register`` on the project, since it leads to a version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import select

from harbourmaster.core.permissions import Permission
from harbourmaster.core.retraining import ChallengerReport, DriftComparison, compare_challenger
from harbourmaster.core.schema import OutputSchema
from harbourmaster.errors import DataProblemError, InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.services.evidence import EvidenceInfo
from harbourmaster.services.registry import VersionRef
from harbourmaster.store.prediction_log import PredictionLog
from harbourmaster.store.tables import DeploymentRow

if TYPE_CHECKING:
    import pandas as pd

    from harbourmaster.services.platform import Platform

MAX_ROWS = 200_000  # labelled rows handed out at once (the newest); more are a --last choice
REPORT_PREFIX = "reports/challenger/"
Purpose = Literal["retrain", "evaluate"]


class ProductionRow(BaseModel):
    """One answered production record with the ground truth that arrived for it."""

    request_id: str
    row: int
    ts: datetime
    version: int | None
    inputs: dict[str, Any]
    truth: Any


class ProductionRows(BaseModel):
    """The labelled production rows of one deployment's window, oldest first, and what they were cut from."""

    project: str
    environment: str
    champion: int
    champion_digest: str
    since: datetime | None
    last: int | None
    answered: int  # answered rows logged in the window (labelled or not)
    labelled: int  # of which have ground truth (all are in ``rows`` unless capped)
    capped: bool = False
    rows: list[ProductionRow]

    def frame(self, target: str) -> pd.DataFrame:
        """Inputs and ``target`` as columns, with ``request_id``, ``row`` and ``ts`` beside them."""
        import pandas as pd

        records = [
            {**item.inputs, target: item.truth, "request_id": item.request_id, "row": item.row, "ts": item.ts}
            for item in self.rows
        ]
        return pd.DataFrame.from_records(records)


class ScoredRows(BaseModel):
    """Both versions' predictions on the held-out rows, as the CLI/job process scored them."""

    champion: int = Field(ge=1)
    request_ids: list[str] = Field(max_length=MAX_ROWS)
    rows: list[int] = Field(max_length=MAX_ROWS)
    candidate: list[Any] = Field(max_length=MAX_ROWS)
    champion_predictions: list[Any] = Field(max_length=MAX_ROWS)
    candidate_probability: list[float] | None = Field(default=None, max_length=MAX_ROWS)
    champion_probability: list[float] | None = Field(default=None, max_length=MAX_ROWS)


class ChallengeResult(BaseModel):
    """What ``harbourmaster evaluate`` shows: the challenger report, the drift comparison and the evidence."""

    report: ChallengerReport
    drift: DriftComparison | None
    evidence: list[EvidenceInfo]


class RetrainService:
    """Production rows for retraining and evaluation; the challenger verdict and its evidence."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def production_rows(
        self,
        actor: Actor,
        project: str,
        environment: str,
        *,
        since: datetime | None = None,
        last: int | None = None,
        purpose: Purpose = "retrain",
    ) -> ProductionRows:
        """The labelled production rows of ``project`` in ``environment`` logged from ``since`` on (the newest
        ``last`` of them when given). Refuses, naming what is missing, when nothing was logged or no ground
        truth arrived at all."""
        if last is not None and last < 1:
            raise InvalidInputError(f"--last {last}: give a positive number of labelled rows", "e.g. --last 5000")
        if purpose == "retrain":
            self._platform.access.require(actor, Permission.REGISTER, target=project)
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        self._platform.environments.get(environment)
        champion, digest = self._champion(project, environment)
        log = PredictionLog(self._platform.artifacts)
        if not log.files("feedback", environment, project):
            raise DataProblemError(
                f"no ground truth has arrived for {project} in {environment}: there is nothing labelled to "
                f"{'retrain on' if purpose == 'retrain' else 'evaluate on'}",
                f"send the true outcomes of answered requests as feedback (POST /v1/projects/{project}/feedback on "
                "a replica of the environment, by request_id), then retry",
            )
        where = ["status = 200", "path IS DISTINCT FROM 'refused'", "inputs IS NOT NULL"]
        params: list[Any] = []
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        counted = log.query(
            f"SELECT count(*) AS n FROM predictions WHERE {' AND '.join(where)}", environment, project, params
        )
        answered = int(counted["n"].iloc[0])
        limit = min(last or MAX_ROWS, MAX_ROWS)
        frame = log.query(
            f"""
            WITH p AS (
                SELECT request_id, row, ts, version, inputs,
                       row_number() OVER (PARTITION BY request_id, row ORDER BY ts DESC) AS k
                FROM predictions WHERE {" AND ".join(where)}
            ), f AS (
                SELECT request_id, row, value,
                       row_number() OVER (PARTITION BY request_id, row ORDER BY ts DESC) AS k
                FROM feedback
            ), labelled AS (
                SELECT p.request_id, p.row, p.ts, p.version, p.inputs, f.value AS truth
                FROM p JOIN f ON f.request_id = p.request_id AND f.row = p.row AND f.k = 1
                WHERE p.k = 1
            )
            SELECT *, count(*) OVER () AS total FROM labelled
            ORDER BY ts DESC, request_id DESC, row DESC LIMIT ?
            """,
            environment,
            project,
            [*params, limit],
        )
        labelled = int(frame["total"].iloc[0]) if not frame.empty else 0
        window = f"{environment} since {since.isoformat()}" if since else f"the whole log of {environment}"
        if answered == 0:
            raise DataProblemError(
                f"no answered request of {project} is logged in {window}",
                "choose an earlier --since, or wait for production traffic",
            )
        if labelled == 0:
            raise DataProblemError(
                f"none of the {answered} answered row(s) of {project} in {window} has ground truth yet",
                "send feedback for those requests (by request_id), or choose an earlier --since",
            )
        rows = [
            ProductionRow(
                request_id=str(item.request_id),
                row=int(item.row),
                ts=_instant(item.ts),
                version=None if item.version is None or item.version != item.version else int(item.version),
                inputs=orjson.loads(item.inputs),
                truth=orjson.loads(item.truth),
            )
            for item in frame.iloc[::-1].itertuples(index=False)
        ]
        if self._platform.access.is_guarded(environment):
            self._platform.audit.record_alone(
                actor,
                f"{purpose}.read",
                project,
                environment=environment,
                details={"rows": len(rows), "since": since.isoformat() if since else None, "last": last},
            )
        return ProductionRows(
            project=project,
            environment=environment,
            champion=champion,
            champion_digest=digest,
            since=since,
            last=last,
            answered=answered,
            labelled=labelled,
            capped=labelled > len(rows) and (last is None or last > MAX_ROWS),
            rows=rows,
        )

    def record_challenger(
        self, actor: Actor, project: str, version: VersionRef, environment: str, scored: ScoredRows
    ) -> ChallengeResult:
        """Judge ``version`` against the champion of ``environment`` on the labelled rows logged since its
        retraining's held-out boundary, from the predictions both gave there (``scored``) and the ground
        truth read here; store the report and the ``beats_champion`` and ``drift_fixed`` evidence."""
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        with self._platform.db.reader() as session:
            row = self._platform.registry.version_row(session, project, version)
            number, lineage = row.number, dict(row.lineage or {})
            output = OutputSchema.model_validate(row.output_schema)
        boundary = holdout_start(lineage, project, number, environment)
        champion, _digest = self._champion(project, environment)
        if champion == number:
            raise InvalidInputError(
                f"v{number} is already the champion of {environment}: there is nothing to challenge",
                "evaluate a version that is not deployed there yet",
            )
        if scored.champion != champion:
            raise InvalidInputError(
                f"the predictions were made with v{scored.champion}, but the champion of {environment} is now "
                f"v{champion}",
                f"run the evaluation again: harbourmaster evaluate {project} {number} --env {environment}",
            )
        lengths = {
            len(scored.request_ids),
            len(scored.rows),
            len(scored.candidate),
            len(scored.champion_predictions),
            *(len(p) for p in (scored.candidate_probability, scored.champion_probability) if p is not None),
        }
        if len(lengths) != 1:
            raise InvalidInputError("the scored lists differ in length", "send one entry per held-out row in each list")
        truth = self.production_rows(actor, project, environment, since=boundary, purpose="evaluate")
        answers = {(rid, r): i for i, (rid, r) in enumerate(zip(scored.request_ids, scored.rows, strict=True))}
        missing = [item for item in truth.rows if (item.request_id, item.row) not in answers]
        if missing:
            shown = ", ".join(f"{m.request_id} row {m.row}" for m in missing[:5])
            raise InvalidInputError(
                f"{len(missing)} held-out labelled row(s) were not scored ({shown})",
                "score every row the evaluation set holds (harbourmaster evaluate does)",
            )
        import pandas as pd

        picks = [answers[(item.request_id, item.row)] for item in truth.rows]
        frame = pd.DataFrame(
            {
                "truth": [item.truth for item in truth.rows],
                "candidate": [scored.candidate[i] for i in picks],
                "champion": [scored.champion_predictions[i] for i in picks],
            }
        )
        if scored.candidate_probability is not None:
            frame["candidate_probability"] = [scored.candidate_probability[i] for i in picks]
        if scored.champion_probability is not None:
            frame["champion_probability"] = [scored.champion_probability[i] for i in picks]
        task = task_of(output)
        settings = self._settings(project)
        report = compare_challenger(
            frame,
            task=task,
            classes=output.classes if task == "classification" else None,
            alpha=float(settings.get("alpha", 0.05)),
            header={
                "id": uuid.uuid4().hex,
                "project": project,
                "environment": environment,
                "candidate": number,
                "champion": champion,
                "window_start": truth.rows[0].ts if truth.rows else None,
                "window_end": truth.rows[-1].ts if truth.rows else None,
                "computed_at": datetime.now(UTC),
            },
        )
        if truth.capped:
            report.notes.append(f"the newest {len(truth.rows)} of {truth.labelled} labelled rows were compared")
        self._platform.artifacts.put_bytes(f"{REPORT_PREFIX}{report.id}.json", report.model_dump_json().encode())
        beats = self._platform.evidence.store_verdict(
            actor,
            project,
            number,
            environment,
            "beats_champion",
            passed=report.verdict == "beats",
            summary=report.summary,
            reports=[f"challenger-report:{report.id}"],
            details=report.model_dump(mode="json"),
        )
        drift = self._platform.evidence.record(actor, project, number, environment, checks=["drift_fixed"])
        comparison = drift[0].details.get("comparison")
        return ChallengeResult(
            report=report,
            drift=DriftComparison.model_validate(comparison) if comparison else None,
            evidence=[beats, *drift],
        )

    def report(self, actor: Actor, report_id: str) -> ChallengerReport:
        """A stored challenger report (``challenger-report:ID``)."""
        self._platform.access.require(actor, Permission.READ)
        key = f"{REPORT_PREFIX}{report_id}.json"
        if not report_id.isalnum() or not self._platform.artifacts.exists(key):
            raise NotFoundError(f"no challenger report {report_id!r}", "reports are linked from the evidence")
        return ChallengerReport.model_validate_json(self._platform.artifacts.get_bytes(key))

    def _champion(self, project: str, environment: str) -> tuple[int, str]:
        with self._platform.db.reader() as session:
            project_row = self._platform.registry.project_row(session, project)
            deployment = session.scalar(
                select(DeploymentRow).where(
                    DeploymentRow.project_id == project_row.id, DeploymentRow.environment == environment
                )
            )
            if deployment is None or deployment.champion is None:
                raise NotFoundError(
                    f"{project} has no champion in {environment}: there is no production model to retrain or challenge",
                    f"deploy a version first: harbourmaster deploy {project} VERSION --env {environment}",
                )
            return deployment.champion.number, deployment.champion.digest

    def _settings(self, project: str) -> dict[str, Any]:
        with self._platform.db.reader() as session:
            stored = self._platform.registry.project_row(session, project).settings or {}
        return dict(stored.get("retrain") or {})


def holdout_start(lineage: dict[str, Any], project: str, number: int, environment: str) -> datetime:
    """The first instant of the rows a retrained version was not trained on (its lineage records it);
    ``environment``: the one it is evaluated in (the hint retrains there)."""
    retrain = lineage.get("retrain") or {}
    start = (retrain.get("holdout") or {}).get("from")
    if not start:
        raise InvalidInputError(
            f"v{number} of {project} was not retrained on production data, so no held-out production rows are "
            "known for it",
            f"retrain on {environment}'s labelled rows first: harbourmaster retrain {project} --env {environment}, "
            f"then evaluate the version it registers; or compare v{number} with the champion there: "
            f"harbourmaster evidence {project} {number} --to {environment}",
        )
    return datetime.fromisoformat(start)


def task_of(output: OutputSchema) -> str:
    """classification, regression or other, as the quality report reads a version's output."""
    if output.task != "other":
        return output.task
    return "regression" if output.dtype in ("float", "integer") and not output.classes else "other"


def _instant(value: Any) -> datetime:
    import pandas as pd

    return pd.Timestamp(value).to_pydatetime().astimezone(UTC)
