"""The SDK's lifecycle-case methods (mixed into ``harbourmaster.Client``): embedded, or through the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from harbourmaster.services.cases import DEFAULT_LEASE_SECONDS, CaseInfo

if TYPE_CHECKING:
    from harbourmaster.client import _Remote
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform


class CaseMethods:
    """Lifecycle cases: read them, close one; a worker claims one and records its steps."""

    _remote: _Remote | None
    _platform: Platform | None
    actor: Actor

    def cases(self, project: str | None = None, *, active: bool = False, limit: int = 100) -> list[CaseInfo]:
        """Cases, newest first (``active``: only the ones not over yet)."""
        if self._remote:
            params: dict[str, str | int] = {"active": str(active).lower(), "limit": limit}
            if project:
                params["project"] = project
            return [CaseInfo.model_validate(item) for item in self._remote.get("/cases", params=params)]
        return self._platform.cases.list(self.actor, project=project, active=active, limit=limit)

    def case(self, case_id: int) -> CaseInfo:
        """One case with its trigger, every step and its links."""
        if self._remote:
            return CaseInfo.model_validate(self._remote.get(f"/cases/{case_id}"))
        return self._platform.cases.get(self.actor, case_id)

    def claim_case(self, worker: str | None = None, *, lease: float = DEFAULT_LEASE_SECONDS) -> CaseInfo | None:
        """The oldest open case (or running case whose lease expired), now running for this worker for
        ``lease`` seconds unless renewed (``renew_case_lease``); None when there is none."""
        if self._remote:
            item = self._remote.post("/cases/claim", json={"worker": worker, "lease_seconds": lease})
            return CaseInfo.model_validate(item) if item else None
        return self._platform.cases.claim(self.actor, worker, lease_seconds=lease)

    def renew_case_lease(self, case_id: int, claim: int, *, lease: float = DEFAULT_LEASE_SECONDS) -> CaseInfo:
        """Extend the lease of the claim this worker holds (ConflictError once another worker reclaimed it)."""
        if self._remote:
            body = {"claim": claim, "lease_seconds": lease}
            return CaseInfo.model_validate(self._remote.post(f"/cases/{case_id}/lease", json=body))
        return self._platform.cases.renew(self.actor, case_id, claim, lease_seconds=lease)

    def record_case_step(
        self,
        case_id: int,
        step: str,
        status: str,
        *,
        links: dict[str, Any] | None = None,
        error: str | None = None,
        started_at: datetime | None = None,
        claim: int | None = None,
    ) -> CaseInfo:
        """Record a step of a claimed case (a failed one fails the case and raises an alert); ``claim``: the
        claim this worker holds (refused once another worker reclaimed the case)."""
        if self._remote:
            body = {
                "step": step,
                "status": status,
                "links": links or {},
                "error": error,
                "started_at": started_at.isoformat() if started_at else None,
                "claim": claim,
            }
            return CaseInfo.model_validate(self._remote.post(f"/cases/{case_id}/steps", json=body))
        return self._platform.cases.record_step(
            self.actor, case_id, step, status, links=links, error=error, started_at=started_at, claim=claim
        )

    def close_case(self, case_id: int, reason: str) -> CaseInfo:
        """Close a case that is not over, with the reason (audited)."""
        if self._remote:
            return CaseInfo.model_validate(self._remote.post(f"/cases/{case_id}/close", json={"reason": reason}))
        return self._platform.cases.close(self.actor, case_id, reason)
