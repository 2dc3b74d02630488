"""The SDK's rollout methods (mixed into ``harbourmaster.Client``): embedded, or through the HTTP API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harbourmaster.services.rollouts import RolloutInfo

if TYPE_CHECKING:
    from harbourmaster.client import _Remote
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform


class RolloutMethods:
    """Progressive rollouts: read them, pause, resume or abort one."""

    _remote: _Remote | None
    _platform: Platform | None
    actor: Actor

    def rollouts(self, project: str | None = None, *, active: bool = False, limit: int = 50) -> list[RolloutInfo]:
        if self._remote:
            params: dict[str, str | int] = {"active": str(active).lower(), "limit": limit}
            if project:
                params["project"] = project
            return [RolloutInfo.model_validate(item) for item in self._remote.get("/rollouts", params=params)]
        return self._platform.rollouts.list(self.actor, project, active=active, limit=limit)

    def rollout(self, rollout_id: int) -> RolloutInfo:
        if self._remote:
            return RolloutInfo.model_validate(self._remote.get(f"/rollouts/{rollout_id}"))
        return self._platform.rollouts.get(self.actor, rollout_id)

    def change_rollout(self, rollout_id: int, action: str, reason: str | None = None) -> RolloutInfo:
        """``action``: pause, resume or abort."""
        if self._remote:
            return RolloutInfo.model_validate(
                self._remote.post(f"/rollouts/{rollout_id}/{action}", json={"reason": reason})
            )
        service = self._platform.rollouts
        method = {"pause": service.pause, "resume": service.resume, "abort": service.abort}.get(action)
        if method is None:
            from harbourmaster.errors import InvalidInputError

            raise InvalidInputError(f"rollout action {action!r} is unknown", "use pause, resume or abort")
        return method(self.actor, rollout_id, reason)
