"""Promotion: a version enters the next environment only through every gate there."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbourmaster.core.environments import Environment, GateConfig
from harbourmaster.core.gates import GateContext, GateVerdict, evaluate_gates
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import InvalidInputError, NotFoundError, PromotionRefusedError
from harbourmaster.schemas import GateResult, PromotionInfo, VersionDetail
from harbourmaster.services.actors import Actor
from harbourmaster.services.approvals import candidate_of
from harbourmaster.services.registry import VersionRef
from harbourmaster.services.served import has_served
from harbourmaster.store.tables import DeploymentEventRow, PromotionRow

if TYPE_CHECKING:
    from harbourmaster.services.audit import AuditService
    from harbourmaster.services.platform import Platform


def promotion_info(row: PromotionRow) -> PromotionInfo:
    return PromotionInfo(
        id=row.id,
        project=row.project,
        version=row.version_number,
        digest=row.digest,
        from_environment=row.from_environment,
        to_environment=row.to_environment,
        outcome=row.outcome,
        gates=[GateResult.model_validate(gate) for gate in row.gates],
        actor=row.actor,
        created_at=row.created_at,
    )


def was_champion(session: Session, project: str, environment: str, number: int, *, audit: AuditService) -> bool:
    """Whether a version served as champion in an environment (by a change the audit chain vouches for)."""
    events = session.scalars(
        select(DeploymentEventRow).where(
            DeploymentEventRow.project == project,
            DeploymentEventRow.environment == environment,
            DeploymentEventRow.champion == number,
        )
    )
    return bool(audit.confirmed(session, events))


def was_admitted(session: Session, project: str, environment: str, digest: str, *, audit: AuditService) -> bool:
    """Whether a version passed promotion into an environment at some point (as the audit chain vouches)."""
    promotions = session.scalars(
        select(PromotionRow).where(
            PromotionRow.project == project,
            PromotionRow.to_environment == environment,
            PromotionRow.digest == digest,
            PromotionRow.outcome == "promoted",
        )
    )
    return bool(audit.confirmed(session, promotions))


class PromotionService:
    """Evaluates an environment's gates and, if all pass, deploys in the same transaction."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def check(self, actor: Actor, project: str, version: VersionRef, to_environment: str) -> list[GateResult]:
        """The verdicts a promotion would get now, without promoting."""
        self._platform.access.require(actor, Permission.READ)
        detail = self._platform.registry.get_version(actor, project, version)
        target, previous = self._target(to_environment)
        return [GateResult(**v.model_dump()) for v in self._verdicts(actor, detail, target, previous)]

    def promote(
        self,
        actor: Actor,
        project: str,
        version: VersionRef,
        to_environment: str,
        *,
        challenger: dict[str, Any] | None = None,
        rollout: dict[str, Any] | None = None,
    ) -> PromotionInfo:
        """Move a version into ``to_environment`` (as champion, or as a challenger).

        ``rollout`` (``core.rollout_rules.rollout_plan``) chooses how: ``immediate`` (the default),
        ``blue-green`` (immediate, the old champion kept warm as the failover), or a progressive
        ``canary`` / ``shadow`` rollout the rollout controller carries on (``services/rollouts.py``).
        """
        strategy = (rollout or {}).get("strategy", "immediate")
        if challenger and strategy != "immediate":
            raise InvalidInputError(
                "a challenger promotion and a rollout strategy were both given", "give --canary/--shadow or --strategy"
            )
        self._platform.access.require(actor, Permission.DEPLOY, environment=to_environment, target=project)
        detail = self._platform.registry.get_version(actor, project, version)
        target, previous = self._target(to_environment)
        verdicts = self._verdicts(actor, detail, target, previous)
        passed = all(verdict.passed for verdict in verdicts)
        before = self._champion_number(actor, project, target.name)
        with self._platform.db.transaction() as session:
            row = PromotionRow(
                project=project,
                version_number=detail.number,
                digest=detail.digest,
                from_environment=previous.name if previous else None,
                to_environment=target.name,
                outcome="promoted" if passed else "refused",
                gates=[verdict.model_dump() for verdict in verdicts],
                actor=actor.name,
            )
            session.add(row)
            session.flush()
            rollout_id = None
            if passed and rollout and strategy in ("canary", "shadow"):
                rollout_id = self._platform.rollouts.start(
                    session,
                    actor,
                    project=project,
                    environment=target.name,
                    from_version=before,
                    to_version=detail.number,
                    strategy=strategy,
                    steps=list(rollout["steps"]),
                    bake_seconds=float(rollout["bake_seconds"]),
                    options=dict(rollout.get("options") or {}),
                    promotion_id=row.id,
                ).id
            elif passed:
                if challenger:
                    self._platform.deployments.set_challenger(
                        actor, project, target.name, detail.number, session=session, via_promotion=True, **challenger
                    )
                else:
                    self._platform.deployments.deploy(
                        actor,
                        project,
                        detail.number,
                        target.name,
                        action="promote",
                        details={"promotion_id": row.id},
                        session=session,
                    )
                    if strategy == "blue-green" and before is not None and before != detail.number:
                        self._platform.deployments.set_fallback(
                            actor, project, target.name, failover=before, session=session
                        )
            row.audit_seq = self._platform.audit.record(
                session,
                actor,
                "version.promote",
                f"{project}:v{detail.number}",
                outcome="allowed" if passed else "denied",
                environment=target.name,
                before={"champion": before},
                after={"champion": detail.number} if passed and not challenger and not rollout_id else None,
                details={
                    "promotion_id": row.id,
                    "as_challenger": challenger,
                    "strategy": strategy,
                    "rollout_id": rollout_id,
                    "failed_gates": [v.gate for v in verdicts if not v.passed],
                },
            )
            info = promotion_info(row)
            info.rollout_id = rollout_id
        if not passed:
            failed = [v for v in verdicts if not v.passed]
            lines = "; ".join(f"{v.gate}: {v.reason}" for v in failed)
            fixes = "; ".join(v.fix for v in failed if v.fix)
            raise PromotionRefusedError(
                f"promotion of {project} v{detail.number} to {target.name} refused by {len(failed)} gate(s): {lines}",
                fixes or None,
            )
        return info

    def list(self, actor: Actor, project: str | None = None, limit: int = 100) -> list[PromotionInfo]:
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            query = select(PromotionRow).order_by(PromotionRow.id.desc()).limit(limit)
            if project:
                query = query.where(PromotionRow.project == project)
            promotions = [promotion_info(row) for row in session.scalars(query)]
        self._platform.access.audit_guarded_read(
            actor, "promotion.list", project or "*", (p.to_environment for p in promotions)
        )
        return promotions

    # -- internals --------------------------------------------------------------

    def _target(self, name: str) -> tuple[Environment, Environment | None]:
        environments = self._platform.environments.list()
        names = [env.name for env in environments]
        if name not in names:
            raise NotFoundError(f"no environment named {name!r}", f"environments, in order: {', '.join(names)}")
        index = names.index(name)
        return environments[index], environments[index - 1] if index > 0 else None

    def _verdicts(
        self, actor: Actor, detail: VersionDetail, target: Environment, previous: Environment | None
    ) -> list[GateVerdict]:
        verdicts: list[GateVerdict] = []
        with self._platform.db.reader() as session:
            if previous is not None and not target.config.allow_skip:
                verdicts.append(self._order_verdict(session, detail, previous.name))
        champion = None
        try:
            state = self._platform.deployments.get(actor, detail.project, target.name)
            if state.champion is not None:
                champion = candidate_of(
                    self._platform.registry.get_version(actor, detail.project, state.champion.number)
                )
        except NotFoundError:
            pass
        gates = list(target.config.gates)
        if target.config.approvals.required and not any(gate.kind == "approvals" for gate in gates):
            gates.append(GateConfig(kind="approvals"))
        candidate = replace(
            candidate_of(detail), metrics_source=detail.metrics_source, evaluation_rows=detail.evaluation_rows
        )
        context = GateContext(
            candidate=candidate,
            environment=target.name,
            approval_policy=target.config.approvals,
            champion=champion,
            approvals=self._platform.approvals.records(detail, target.name),
            now=datetime.now(UTC),
            # The newest stored evidence of each check for this digest and environment (services/evidence.py).
            evidence=self._platform.evidence.for_gate(detail.project, detail.digest, target.name),
            allow_reported_metrics=target.config.allow_reported_metrics,
            min_evaluation_rows=target.config.min_evaluation_rows,
        )
        return verdicts + evaluate_gates(gates, context)

    def _order_verdict(self, session: Session, detail: VersionDetail, previous: str) -> GateVerdict:
        """Has the version served in the previous environment: did a replica there load it and answer with it?"""
        audit = self._platform.audit
        project, number = detail.project, detail.number
        if has_served(session, project, previous, number, audit=audit):
            return GateVerdict(
                gate="order", passed=True, reason=f"v{number} has served in {previous} (a replica answered with it)"
            )
        if was_champion(session, project, previous, number, audit=audit):
            return GateVerdict(
                gate="order",
                passed=False,
                reason=f"v{number} was deployed in {previous}, but no replica there has answered with it yet",
                fix=f"run a replica of {previous} (harbourmaster serve --env {previous}) and let it answer requests "
                f"with v{number}; harbourmaster replicas --env {previous} shows what each one serves",
            )
        return GateVerdict(
            gate="order",
            passed=False,
            reason=f"v{number} has never served in {previous}",
            fix=f"promote it to {previous} first: harbourmaster promote {project} {number} --to {previous}, "
            "and let a replica there answer with it",
        )

    def _champion_number(self, actor: Actor, project: str, environment: str) -> int | None:
        try:
            state = self._platform.deployments.get(actor, project, environment)
        except NotFoundError:
            return None
        return state.champion.number if state.champion else None
