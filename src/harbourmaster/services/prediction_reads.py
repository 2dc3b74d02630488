"""Reading the prediction log: a permission check, and an audit entry when it is a guarded environment's."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from harbourmaster.core.log_layout import UNROUTED
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import InvalidInputError
from harbourmaster.services.actors import Actor
from harbourmaster.store.prediction_log import PredictionLog

if TYPE_CHECKING:
    import pandas as pd

    from harbourmaster.services.platform import Platform


class PredictionReadService:
    """The one way faces read the prediction log (CLI ``predictions``, and any route serving it)."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def read(
        self, actor: Actor, project: str, environment: str, *, limit: int = 20, sql: str | None = None
    ) -> tuple[pd.DataFrame, int]:
        """The newest ``limit`` rows (or the answer to ``sql`` over the views predictions and feedback),
        and the number of logged rows. Reads of a guarded environment's log are audited."""
        import duckdb

        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        self._platform.environments.get(environment)  # a typo is named, not an empty log
        log = PredictionLog(self._platform.artifacts)
        if sql:
            try:
                frame = log.query(sql, environment, project)
            except duckdb.Error as exc:
                raise InvalidInputError(
                    f"the SQL did not run: {str(exc).splitlines()[0]}",
                    "query the views predictions and feedback, e.g. --sql 'SELECT path, count(*) FROM predictions "
                    "GROUP BY path'",
                ) from exc
        else:
            frame = log.recent(environment, project, limit)
        count = log.count(environment, project)
        if frame.empty and count == 0 and project != UNROUTED:
            self._platform.registry.get_project(actor, project)  # a mistyped project is named, not an empty log
        if self._platform.access.is_guarded(environment):
            self._platform.audit.record_alone(
                actor,
                "predictions.read",
                project,
                environment=environment,
                details={"rows": len(frame), "sql": sql[:1000] if sql else None},
            )
        return frame, count

    def shadow_agreement(
        self, project: str, environment: str, version: int, start: datetime, end: datetime
    ) -> tuple[int, int, int]:
        """For the rollout controller (no person's read): rows a shadow ``version`` was asked about in
        ``[start, end)``, as (compared: both answers logged, agreed: the same answer, errors: no shadow answer)."""
        log = PredictionLog(self._platform.artifacts)
        frame = log.query(
            "SELECT count(shadow_output) AS compared, count(*) FILTER (WHERE shadow_output = output) AS agreed, "
            "count(*) FILTER (WHERE shadow_output IS NULL) AS errors FROM predictions "
            "WHERE shadow_version = ? AND ts >= ? AND ts < ? AND status = 200",
            environment,
            project,
            [int(version), start, end],
        )
        row = frame.iloc[0]
        return int(row["compared"]), int(row["agreed"]), int(row["errors"])
