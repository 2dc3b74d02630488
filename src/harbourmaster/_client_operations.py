"""The SDK's deployment and governance methods (mixed into ``harbourmaster.Client``).

Each method calls the service directly in embedded mode, or the HTTP API in
server mode, and returns the same record either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from harbourmaster.core.environments import Environment
from harbourmaster.core.progress import SILENT, Progress
from harbourmaster.core.rollout_watch import START_GRACE_SECONDS, RolloutProgress, rollout_progress
from harbourmaster.schemas import (
    ApprovalInfo,
    DeploymentEvent,
    DeploymentState,
    GateResult,
    HistoryEntry,
    PendingApproval,
    PromotionInfo,
)
from harbourmaster.services.duties import DutyDecision, DutyRequestInfo, DutySettings
from harbourmaster.services.identity import IssuedToken, TokenInfo, UserInfo

if TYPE_CHECKING:
    from harbourmaster.client import _Remote
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform

VersionRef = int | str


class DeploymentMethods:
    """Desired state: deploy, challengers, fallbacks, rollback."""

    _remote: _Remote | None
    _platform: Platform | None
    actor: Actor

    def environments(self) -> list[Environment]:
        if self._remote:
            return [Environment.model_validate(item) for item in self._remote.get("/environments")]
        return self._platform.environments.list()

    def configure_environment(self, name: str, config: dict[str, Any], position: int | None = None) -> Environment:
        if self._remote:
            body = {"config": config, "position": position}
            return Environment.model_validate(self._remote.request("PUT", f"/environments/{name}", json=body))
        return self._platform.environments.configure(self.actor, name, config, position)

    def deployments(self, environment: str | None = None, project: str | None = None) -> list[DeploymentState]:
        if self._remote:
            params = {key: value for key, value in (("environment", environment), ("project", project)) if value}
            return [DeploymentState.model_validate(item) for item in self._remote.get("/deployments", params=params)]
        return self._platform.deployments.list(self.actor, environment, project)

    def deployment(self, project: str, environment: str) -> DeploymentState:
        if self._remote:
            return DeploymentState.model_validate(self._remote.get(f"/deployments/{project}/{environment}"))
        return self._platform.deployments.get(self.actor, project, environment)

    def deploy(
        self, project: str, version: VersionRef, environment: str, *, options: dict[str, Any] | None = None
    ) -> DeploymentState:
        """Make a version the champion (first environment, or one it was promoted to), with ``options``
        merged into the serving options in the same change (a bad option changes nothing)."""
        if self._remote:
            body: dict[str, Any] = {"version": version, "options": options}
            return DeploymentState.model_validate(self._remote.post(f"/deployments/{project}/{environment}", json=body))
        return self._platform.deployments.deploy(self.actor, project, version, environment, options=options)

    def wait_for_replicas(
        self,
        project: str,
        environment: str,
        revision: int,
        *,
        timeout: float = 60.0,
        start_grace: float = START_GRACE_SECONDS,
        poll_seconds: float = 0.5,
        on_progress: Callable[[RolloutProgress], None] | None = None,
    ) -> RolloutProgress:
        """Wait until every live replica of ``environment`` (starting ones too) has loaded or refused
        ``revision`` of ``project``, or ``timeout`` seconds pass. While no replica is up it looks for one
        that was just started for ``start_grace`` seconds (at most ``timeout``), then returns with none."""
        started = time.monotonic()
        deadline, grace_end = started + timeout, started + min(start_grace, timeout)
        while True:
            progress = rollout_progress(self.replicas(environment), project, revision)  # type: ignore[attr-defined]
            if on_progress is not None:
                on_progress(progress)
            until = deadline if progress.replicas else grace_end
            if (progress.replicas and progress.settled) or time.monotonic() >= until:
                return progress
            time.sleep(min(poll_seconds, max(0.0, until - time.monotonic())))

    def rollback(self, project: str, environment: str, to_version: VersionRef | None = None) -> DeploymentState:
        if self._remote:
            return DeploymentState.model_validate(
                self._remote.post(f"/deployments/{project}/{environment}/rollback", json={"to_version": to_version})
            )
        return self._platform.deployments.rollback(self.actor, project, environment, to_version)

    def set_challenger(
        self,
        project: str,
        environment: str,
        version: VersionRef,
        *,
        mode: str = "canary",
        weight: float = 10.0,
        sticky_key: str | None = None,
    ) -> DeploymentState:
        if self._remote:
            body = {"version": version, "mode": mode, "weight": weight, "sticky_key": sticky_key}
            return DeploymentState.model_validate(
                self._remote.request("PUT", f"/deployments/{project}/{environment}/challenger", json=body)
            )
        return self._platform.deployments.set_challenger(
            self.actor, project, environment, version, mode=mode, weight=weight, sticky_key=sticky_key
        )

    def clear_challenger(self, project: str, environment: str) -> DeploymentState:
        if self._remote:
            return DeploymentState.model_validate(
                self._remote.request("DELETE", f"/deployments/{project}/{environment}/challenger")
            )
        return self._platform.deployments.clear_challenger(self.actor, project, environment)

    def set_fallback(
        self,
        project: str,
        environment: str,
        *,
        failover: VersionRef | None = None,
        fallback: dict[str, Any] | None = None,
        clear_failover: bool = False,
        replace: bool = False,
    ) -> DeploymentState:
        """Merge a failover version and/or fallback keys into the chain (``replace``: start from an empty one)."""
        if self._remote:
            body = {
                "failover": failover,
                "fallback": fallback or {},
                "clear_failover": clear_failover,
                "replace": replace,
            }
            return DeploymentState.model_validate(
                self._remote.request("PUT", f"/deployments/{project}/{environment}/fallback", json=body)
            )
        return self._platform.deployments.set_fallback(
            self.actor,
            project,
            environment,
            failover=failover,
            fallback=fallback,
            clear_failover=clear_failover,
            replace=replace,
        )

    def set_options(self, project: str, environment: str, options: dict[str, Any]) -> DeploymentState:
        if self._remote:
            return DeploymentState.model_validate(
                self._remote.request("PUT", f"/deployments/{project}/{environment}/options", json={"options": options})
            )
        return self._platform.deployments.set_options(self.actor, project, environment, options)

    def deployment_events(self, project: str, environment: str | None = None) -> list[DeploymentEvent]:
        if self._remote:
            params = {"environment": environment} if environment else {}
            items = self._remote.get(f"/deployments/{project}/events", params=params)
            return [DeploymentEvent.model_validate(item) for item in items]
        return self._platform.deployments.history(self.actor, project, environment)


class GovernanceMethods:
    """Promotions, sign-offs, history, identity and the audit log."""

    _remote: _Remote | None
    _platform: Platform | None
    actor: Actor

    def promote(
        self,
        project: str,
        version: VersionRef,
        to: str,
        *,
        challenger: dict[str, Any] | None = None,
        rollout: dict[str, Any] | None = None,
    ) -> PromotionInfo:
        """Move a version into environment ``to`` through all its gates (as champion, or as a challenger).

        ``rollout``: how, e.g. ``{"strategy": "canary", "steps": [5, 25, 50, 100], "bake": "10m"}`` or
        ``{"strategy": "shadow", "shadow_for": "30m", "decide": "manual"}`` (``core.rollout_rules.rollout_plan``).
        """
        if self._remote:
            body: dict[str, Any] = {"project": project, "version": version, "to": to}
            if challenger:
                body["challenger"] = {"version": version, **challenger}
            if rollout:
                body["rollout"] = rollout
            return PromotionInfo.model_validate(self._remote.post("/promotions", json=body))
        from harbourmaster.core.rollout_rules import rollout_plan

        plan = rollout_plan(**rollout) if rollout else None
        return self._platform.promotions.promote(self.actor, project, version, to, challenger=challenger, rollout=plan)

    def check_promotion(self, project: str, version: VersionRef, to: str) -> list[GateResult]:
        if self._remote:
            params = {"project": project, "version": version, "to": to}
            return [GateResult.model_validate(item) for item in self._remote.get("/promotions/check", params=params)]
        return self._platform.promotions.check(self.actor, project, version, to)

    def promotions(self, project: str | None = None) -> list[PromotionInfo]:
        if self._remote:
            params = {"project": project} if project else {}
            return [PromotionInfo.model_validate(item) for item in self._remote.get("/promotions", params=params)]
        return self._platform.promotions.list(self.actor, project)

    def approve(self, project: str, version: VersionRef, environment: str, comment: str = "") -> ApprovalInfo:
        return self._decide(project, version, environment, "approve", comment)

    def reject(self, project: str, version: VersionRef, environment: str, comment: str = "") -> ApprovalInfo:
        return self._decide(project, version, environment, "reject", comment)

    def approvals(self, project: str | None = None) -> list[ApprovalInfo]:
        if self._remote:
            params = {"project": project} if project else {}
            return [ApprovalInfo.model_validate(item) for item in self._remote.get("/approvals", params=params)]
        return self._platform.approvals.list(self.actor, project)

    def pending_approvals(self, project: str | None = None) -> list[PendingApproval]:
        if self._remote:
            params = {"project": project} if project else {}
            items = self._remote.get("/approvals/pending", params=params)
            return [PendingApproval.model_validate(item) for item in items]
        return self._platform.approvals.pending(self.actor, project)

    def history(self, project: str, environment: str | None = None, at: datetime | None = None) -> list[HistoryEntry]:
        if self._remote:
            params: dict[str, Any] = {}
            if environment:
                params["environment"] = environment
            if at:
                params["at"] = at.isoformat()
            items = self._remote.get(f"/projects/{project}/history", params=params)
            return [HistoryEntry.model_validate(item) for item in items]
        return self._platform.history.history(self.actor, project, environment, at)

    # -- identity ----------------------------------------------------------------

    def users(self) -> list[UserInfo]:
        if self._remote:
            return [UserInfo.model_validate(item) for item in self._remote.get("/users")]
        return self._platform.identity.list_users(self.actor)

    def create_user(self, name: str, roles: list[str]) -> UserInfo:
        if self._remote:
            return UserInfo.model_validate(self._remote.post("/users", json={"name": name, "roles": roles}))
        return self._platform.identity.create_user(self.actor, name, roles)

    def set_roles(self, name: str, roles: list[str]) -> UserInfo:
        if self._remote:
            return UserInfo.model_validate(self._remote.request("PUT", f"/users/{name}/roles", json={"roles": roles}))
        return self._platform.identity.set_roles(self.actor, name, roles)

    def set_disabled(self, name: str, disabled: bool) -> UserInfo:
        if self._remote:
            body = {"disabled": disabled}
            return UserInfo.model_validate(self._remote.request("PUT", f"/users/{name}/disabled", json=body))
        return self._platform.identity.set_disabled(self.actor, name, disabled)

    def grant(self, name: str, environment: str, permission: str) -> UserInfo:
        if self._remote:
            body = {"environment": environment, "permission": permission}
            return UserInfo.model_validate(self._remote.post(f"/users/{name}/grants", json=body))
        return self._platform.identity.grant(self.actor, name, environment, permission)

    def revoke_grant(self, name: str, environment: str, permission: str) -> UserInfo:
        if self._remote:
            return UserInfo.model_validate(
                self._remote.request("DELETE", f"/users/{name}/grants/{environment}/{permission}")
            )
        return self._platform.identity.revoke_grant(self.actor, name, environment, permission)

    def create_token(
        self, user: str | None = None, name: str = "default", expires_in: timedelta | None = None
    ) -> IssuedToken:
        """A new API token; its secret is only in this answer."""
        if self._remote:
            body = {
                "user": user,
                "name": name,
                "expires_in_days": expires_in.total_seconds() / 86400 if expires_in else None,
            }
            issued = self._remote.post("/tokens", json=body)
            return IssuedToken(
                id=issued["id"],
                user=issued["user"],
                name=issued["name"],
                secret=issued["token"],
                expires_at=datetime.fromisoformat(issued["expires_at"]) if issued["expires_at"] else None,
            )
        return self._platform.identity.create_token(self.actor, user or self.actor.name, name, expires_in)

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        if self._remote:
            params = {"user": user} if user else {}
            return [TokenInfo.model_validate(item) for item in self._remote.get("/tokens", params=params)]
        return self._platform.identity.list_tokens(self.actor, user or self.actor.name)

    def revoke_token(self, token_id: int) -> TokenInfo:
        if self._remote:
            return TokenInfo.model_validate(self._remote.request("DELETE", f"/tokens/{token_id}"))
        return self._platform.identity.revoke_token(self.actor, token_id)

    # -- separation of duties ----------------------------------------------------

    def duty_requests(self, status: str = "pending") -> list[DutyRequestInfo]:
        """Sensitive steps waiting for (or decided by) a second admin; ``status="all"`` for every one."""
        if self._remote:
            items = self._remote.get("/duty-requests", params={"status": status})
            return [DutyRequestInfo.model_validate(item) for item in items]
        return self._platform.duties.list_requests(self.actor, None if status == "all" else status)

    def decide_request(self, request_id: int, confirm: bool = True) -> DutyDecision:
        """Confirm (carry out) or reject another admin's pending step."""
        if self._remote:
            verb = "confirm" if confirm else "reject"
            return DutyDecision.model_validate(self._remote.post(f"/duty-requests/{request_id}/{verb}"))
        return self._platform.duties.decide(self.actor, request_id, confirm)

    def duty_settings(self) -> DutySettings:
        if self._remote:
            return DutySettings.model_validate(self._remote.get("/duties"))
        return self._platform.duties.view(self.actor)

    def set_duty_mode(self, mode: str) -> DutySettings:
        if self._remote:
            return DutySettings.model_validate(self._remote.request("PUT", "/duties/mode", json={"mode": mode}))
        return self._platform.duties.set_mode(self.actor, mode)

    def set_token_limit(self, role: str, max_lifetime: timedelta | None) -> DutySettings:
        """The longest a token of a user with ``role`` may live (None: no limit)."""
        seconds = max_lifetime.total_seconds() if max_lifetime else None
        if self._remote:
            body = {"max_lifetime_seconds": seconds}
            return DutySettings.model_validate(self._remote.request("PUT", f"/duties/token-limits/{role}", json=body))
        return self._platform.duties.set_token_limit(self.actor, role, seconds)

    def whoami(self) -> dict[str, Any]:
        if self._remote:
            return self._remote.get("/whoami")
        from harbourmaster.services.sandbox import describe

        return {
            "name": self.actor.name,
            "roles": sorted(self.actor.roles),
            "grants": sorted(f"{e}:{p}" for e, p in self.actor.grants),
            "mode": "embedded",
            "store": str(self._platform.settings.home),
            "note": describe(self._platform.settings, self.actor),
        }

    # -- audit -------------------------------------------------------------------

    def audit_verify(self, progress: Progress = SILENT) -> dict[str, Any]:
        """Check the whole hash chain; names the first altered, removed or reordered entry."""
        if self._remote:
            progress.stage("verifying on the control plane")
            return self._remote.get("/audit/verify")
        return dict(self._platform.audit.verify(self.actor, progress).__dict__)

    def audit_events(self, since: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if self._remote:
            params: dict[str, Any] = {"limit": limit}
            if since:
                params["since"] = since.isoformat()
            return self._remote.get("/audit/events", params=params)
        return self._platform.audit.entries(self.actor, since, limit)

    def audit_public_key(self) -> str:
        """The PEM public key that verifies audit entries, anchors and exports."""
        if self._remote:
            return self._remote.get_bytes("/audit/public-key").decode()
        return self._platform.audit.public_key_pem(self.actor)

    def audit_export(self, since: datetime | None = None, format: str = "jsonl", progress: Progress = SILENT) -> str:
        """The signed export (see ``AuditService.export``); its stages and entry counts go to ``progress``."""
        if self._remote:
            params: dict[str, Any] = {"format": format}
            if since:
                params["since"] = since.isoformat()
            progress.stage("reading, verifying and signing on the control plane")
            return self._remote.get_bytes("/audit/export", params=params).decode()
        return self._platform.audit.export(self.actor, since, format, progress)

    def _decide(self, project: str, version: VersionRef, environment: str, decision: str, comment: str) -> ApprovalInfo:
        if self._remote:
            body = {
                "project": project,
                "version": version,
                "environment": environment,
                "decision": decision,
                "comment": comment,
            }
            return ApprovalInfo.model_validate(self._remote.post("/approvals", json=body))
        return self._platform.approvals.decide(self.actor, project, version, environment, decision, comment)
