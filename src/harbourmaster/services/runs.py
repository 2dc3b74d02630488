"""Pipeline runs as people read them (the whole record of one run), and the checks a project's runs
apply to their input data (``[monitoring.runs]`` of its project file, kept with the project)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

    def checks(self, project: str) -> RunChecks:
        """The project's ``[monitoring.runs]`` (defaults when it has none)."""
        return parse_run_checks(self.settings(project))

    def settings(self, project: str) -> dict[str, Any]:
        with self._platform.db.reader() as session:
            stored = session.scalar(select(ProjectRow.settings).where(ProjectRow.name == project))
        return dict(((stored or {}).get("monitoring") or {}).get("runs") or {})
