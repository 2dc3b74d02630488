"""Pipeline runs as people read them (the whole record of one run), and the checks a project's runs
apply to their input data (``[monitoring.runs]`` of its project file, kept with the project)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import select

from harbourmaster.core.permissions import Permission
from harbourmaster.core.run_checks import RunChecks, parse_run_checks
from harbourmaster.errors import NotFoundError
from harbourmaster.schemas import RunInfo
from harbourmaster.services.actors import Actor
from harbourmaster.services.training import run_info
from harbourmaster.store.tables import ProjectRow, RunRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

MAX_PAGE = 200


class RunPage(BaseModel):
    """One page of runs, newest first; ``next_before``: the id to pass for the next page (None: last)."""

    runs: list[RunInfo]
    next_before: int | None = None


class RunService:
    """Reads runs; says how a project's runs check their data."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def get(self, actor: Actor, run_id: int) -> RunInfo:
        """One run's whole record: steps, validation findings, error (a guarded environment's is an audited read)."""
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise NotFoundError(f"no run {run_id}", "list the runs: harbourmaster runs [PROJECT]")
            run = run_info(row)
        self._platform.access.audit_guarded_read(actor, "run.read", f"{run.project}:run{run.id}", [run.environment])
        return run

    def page(
        self,
        actor: Actor,
        *,
        project: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        environment: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> RunPage:
        """Runs newest first, filtered, ``limit`` at a time: the next page starts ``before`` the last id
        (keyset pagination: as fast on the thousandth page as on the first). Listings leave out steps
        and findings; a page holding a guarded environment's runs is an audited read."""
        self._platform.access.require(actor, Permission.READ)
        limit = max(1, min(int(limit), MAX_PAGE))
        with self._platform.db.reader() as session:
            query = select(RunRow).order_by(RunRow.id.desc()).limit(limit + 1)
            if project:
                self._platform.registry.project_row(session, project)  # a typo is named, not an empty page
                query = query.where(RunRow.project == project)
            if status:
                query = query.where(RunRow.status == status)
            if kind:
                query = query.where(RunRow.kind == kind)
            if environment:
                query = query.where(RunRow.environment == environment)
            if before is not None:
                query = query.where(RunRow.id < before)
            rows = list(session.scalars(query))
            runs = [run_info(row, whole=False) for row in rows[:limit]]
        self._platform.access.audit_guarded_read(actor, "run.list", project or "*", (run.environment for run in runs))
        return RunPage(runs=runs, next_before=runs[-1].id if len(rows) > limit else None)

    def checks(self, project: str) -> RunChecks:
        """The project's ``[monitoring.runs]`` (defaults when it has none)."""
        return parse_run_checks(self.settings(project))

    def settings(self, project: str) -> dict[str, Any]:
        with self._platform.db.reader() as session:
            stored = session.scalar(select(ProjectRow.settings).where(ProjectRow.name == project))
        return dict(((stored or {}).get("monitoring") or {}).get("runs") or {})
