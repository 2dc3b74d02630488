"""Deployments: the desired state of a project in an environment, and its history.

Replicas poll this state and reconcile toward it; nothing is deployed by copying
files. Every change bumps ``revision`` and appends a ``DeploymentEventRow``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, overload

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harbourmaster.core.permissions import Permission
from harbourmaster.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from harbourmaster.schemas import ChallengerState, DeploymentEvent, DeploymentState, VersionPointer
from harbourmaster.services.actors import Actor
from harbourmaster.services.registry import VersionRef
from harbourmaster.store.tables import DeploymentEventRow, DeploymentRow, EnvironmentRow, ProjectRow, VersionRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

CHALLENGER_MODES = ("canary", "shadow")


def _pointer(row: VersionRow | None) -> VersionPointer | None:
    return VersionPointer(number=row.number, digest=row.digest) if row is not None else None


def deployment_state(row: DeploymentRow) -> DeploymentState:
    challenger = None
    if row.challenger_version is not None:
        challenger = ChallengerState(
            version=_pointer(row.challenger_version),
            mode=row.challenger.get("mode", "canary"),
            weight=float(row.challenger.get("weight", 0.0)),
            sticky_key=row.challenger.get("sticky_key"),
        )
    return DeploymentState(
        project=row.project.name,
        environment=row.environment,
        champion=_pointer(row.champion),
        challenger=challenger,
        failover=_pointer(row.failover),
        fallback=row.fallback,
        options=row.options,
        revision=row.revision,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


class DeploymentService:
    """Records and reads desired state. Governance rules hook in via ``Platform.policy``."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    # -- reading ----------------------------------------------------------------

    def get(self, actor: Actor, project: str, environment: str) -> DeploymentState:
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        with self._platform.db.reader() as session:
            state = deployment_state(self._existing(session, project, environment))
        if self._platform.access.is_guarded(environment):
            self._platform.audit.record_alone(actor, "deployment.read", project, environment=environment)
        return state

    def list(
        self, actor: Actor, environment: str | None = None, project: str | None = None, *, audit_read: bool = True
    ) -> list[DeploymentState]:
        """Deployments, filtered; a read that returns guarded environments' state is audited (unless the
        caller audits its own read, ``audit_read=False``)."""
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            query = select(DeploymentRow).join(ProjectRow).order_by(ProjectRow.name, DeploymentRow.environment)
            if environment:
                self._platform.environments.row(session, environment)  # a typo is named, not an empty list
                query = query.where(DeploymentRow.environment == environment)
            if project:
                self._platform.registry.project_row(session, project)
                query = query.where(ProjectRow.name == project)
            states = [deployment_state(row) for row in session.scalars(query)]
        if audit_read:
            self._platform.access.audit_guarded_read(
                actor, "deployment.list", project or "*", (state.environment for state in states)
            )
        return states

    def with_champion(self) -> list[tuple[str, str]]:
        """(project, environment) of every deployment that has a champion, in name order: what the
        monitors watch. No actor: only the platform's own schedulers call it."""
        with self._platform.db.reader() as session:
            rows = session.execute(
                select(ProjectRow.name, DeploymentRow.environment)
                .join(ProjectRow, ProjectRow.id == DeploymentRow.project_id)
                .where(DeploymentRow.champion_version_id.is_not(None))
                .order_by(ProjectRow.name, DeploymentRow.environment)
            ).all()
        return [(project, environment) for project, environment in rows]

    @overload
    def state_in(
        self, session: Session, project: str, environment: str, *, required: Literal[True]
    ) -> DeploymentState: ...
    @overload
    def state_in(
        self, session: Session, project: str, environment: str, *, required: bool = False
    ) -> DeploymentState | None: ...
    def state_in(
        self, session: Session, project: str, environment: str, *, required: bool = False
    ) -> DeploymentState | None:
        """The desired state read in the caller's session, no permission check (the caller checked access
        and audits its read); not deployed: None, or with ``required`` a ``NotFoundError`` naming the fix."""
        row = self._existing(session, project, environment) if required else self._row(session, project, environment)
        return deployment_state(row) if row is not None else None

    def revisions(self, environment: str) -> dict[str, int]:
        """Project -> revision for one environment: the cheap poll replicas make."""
        with self._platform.db.reader() as session:
            rows = session.execute(
                select(ProjectRow.name, DeploymentRow.revision)
                .join(ProjectRow, ProjectRow.id == DeploymentRow.project_id)
                .where(DeploymentRow.environment == environment)
            ).all()
            return {name: revision for name, revision in rows}

    def history(
        self, actor: Actor, project: str, environment: str | None = None, limit: int = 200
    ) -> list[DeploymentEvent]:
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            query = (
                select(DeploymentEventRow)
                .where(DeploymentEventRow.project == project)
                .order_by(DeploymentEventRow.id.desc())
                .limit(limit)
            )
            if environment:
                query = query.where(DeploymentEventRow.environment == environment)
            events = [
                DeploymentEvent(
                    project=row.project,
                    environment=row.environment,
                    revision=row.revision,
                    action=row.action,
                    champion=row.champion,
                    state=row.state,
                    details=row.details,
                    actor=row.actor,
                    created_at=row.created_at,
                )
                for row in session.scalars(query)
            ]
        self._platform.access.audit_guarded_read(actor, "deployment.events", project, (e.environment for e in events))
        return events

    # -- changing ---------------------------------------------------------------

    def deploy(
        self,
        actor: Actor,
        project: str,
        version: VersionRef,
        environment: str,
        *,
        action: str = "deploy",
        details: dict[str, Any] | None = None,
        session: Session | None = None,
        options: dict[str, Any] | None = None,
    ) -> DeploymentState:
        """Make ``version`` the champion of ``project`` in ``environment``, with ``options`` merged into the
        current serving options: one change, checked whole before anything is written.

        Outside the first environment only a version admitted there (promoted, or a
        former champion for a rollback) may be deployed: promotion is the way in.
        """
        from harbourmaster.core.fallback import merge_deployment_options

        if options:
            merge_deployment_options({}, options)  # a bad option is refused before the transaction opens

        def change(session: Session, row: DeploymentRow) -> None:
            merged = merge_deployment_options(row.options or {}, options) if options else None
            champion = self._version(session, row.project, version)
            if action in ("deploy", "rollback"):
                self._require_admitted(session, row.project.name, environment, champion)
            self._require_fallback_fits(row.fallback or {}, champion, row.failover, row.project.name, environment)
            row.champion = champion
            if merged is not None:
                row.options = merged
            if row.challenger_version is not None and row.challenger_version.id == row.champion.id:
                row.challenger_version = None
                row.challenger = {}

        return self._change(actor, project, environment, action, change, details, session)

    def set_challenger(
        self,
        actor: Actor,
        project: str,
        environment: str,
        version: VersionRef,
        *,
        mode: str = "canary",
        weight: float = 10.0,
        sticky_key: str | None = None,
        session: Session | None = None,
        via_promotion: bool = False,
    ) -> DeploymentState:
        """Send a share of traffic (canary) or a copy of it (shadow) to a second version."""
        if mode not in CHALLENGER_MODES:
            raise InvalidInputError(f"challenger mode {mode!r} is unknown", "use canary or shadow")
        if not 0 <= weight <= 100:
            raise InvalidInputError(f"canary weight {weight} is out of range", "give a percentage from 0 to 100")

        def change(session: Session, row: DeploymentRow) -> None:
            self._require_champion(row)
            row.challenger_version = self._version(session, row.project, version)
            if not via_promotion:
                self._require_admitted(session, row.project.name, environment, row.challenger_version)
            row.challenger = {
                "mode": mode,
                "weight": float(weight) if mode == "canary" else 0.0,
                "sticky_key": sticky_key,
            }

        return self._change(actor, project, environment, "set-challenger", change, None, session, must_exist=True)

    def clear_challenger(
        self, actor: Actor, project: str, environment: str, *, session: Session | None = None
    ) -> DeploymentState:
        def change(_session: Session, row: DeploymentRow) -> None:
            row.challenger_version = None
            row.challenger = {}

        return self._change(actor, project, environment, "clear-challenger", change, None, session, must_exist=True)

    def set_fallback(
        self,
        actor: Actor,
        project: str,
        environment: str,
        *,
        failover: VersionRef | None = None,
        fallback: dict[str, Any] | None = None,
        clear_failover: bool = False,
        replace: bool = False,
        session: Session | None = None,
    ) -> DeploymentState:
        """Change the fallback chain: the failover version, then the rules of last resort.

        What is given is merged into the current chain (each key of ``fallback`` replaces that key;
        no ``failover`` keeps the current one); ``replace`` starts from an empty chain and
        ``clear_failover`` removes the failover. The result must fit the deployment's versions:
        answers a classifier could give, rules on features the version takes.
        """
        from harbourmaster.core.fallback import validate_fallback_config

        if failover is not None and clear_failover:
            raise InvalidInputError("a failover version was given and also cleared", "give one or the other")
        given = validate_fallback_config(fallback or {})  # refused before the transaction opens
        keys = set(fallback or {})

        def change(session: Session, row: DeploymentRow) -> None:
            current = {} if replace else dict(row.fallback or {})
            merged = validate_fallback_config({**current, **{key: given[key] for key in keys}})
            if replace or clear_failover:
                row.failover = None
            if failover is not None:
                row.failover = self._version(session, row.project, failover)
                self._require_admitted(session, row.project.name, environment, row.failover)
            self._require_fallback_fits(merged, row.champion, row.failover, row.project.name, environment)
            row.fallback = merged

        return self._change(actor, project, environment, "set-fallback", change, None, session, must_exist=True)

    def set_options(self, actor: Actor, project: str, environment: str, options: dict[str, Any]) -> DeploymentState:
        """Serving options (unknown-field policy, latency budget, micro-batching ...)."""
        from harbourmaster.core.fallback import validate_deployment_options

        checked = validate_deployment_options(options)

        def change(_session: Session, row: DeploymentRow) -> None:
            row.options = checked

        return self._change(actor, project, environment, "set-options", change, None, None, must_exist=True)

    def rollback(
        self, actor: Actor, project: str, environment: str, to_version: VersionRef | None = None
    ) -> DeploymentState:
        """Put back the previous champion (or a named earlier one) with no restart, and stop any rollout.

        During a rollout (the challenger not yet champion) and without ``to_version``, the champion
        stays and the rollout's challenger is removed: that is what "back" means then.
        """
        self._platform.access.require(actor, Permission.DEPLOY, environment=environment, target=project)
        with self._platform.db.reader() as session:
            current = self._existing(session, project, environment)
            current_number = current.champion.number if current.champion else None
            rolling = self._platform.rollouts.active_id(session, project, environment)
            if to_version is None and rolling is not None:
                to_version = current_number
            if to_version is None:
                earlier = session.scalars(
                    select(DeploymentEventRow.champion)
                    .where(
                        DeploymentEventRow.deployment_id == current.id,
                        DeploymentEventRow.champion.is_not(None),
                    )
                    .order_by(DeploymentEventRow.id.desc())
                ).all()
                target = next((number for number in earlier if number != current_number), None)
                if target is None:
                    raise ConflictError(
                        f"{project} in {environment} has no earlier champion to roll back to",
                        f"deploy a version explicitly: harbourmaster deploy {project} VERSION --env {environment}",
                    )
                to_version = target
        with self._platform.db.transaction() as session:
            stopped = self._platform.rollouts.stop_active(
                session, actor, project, environment, f"stopped by a rollback by {actor.name}"
            )
            details: dict[str, Any] = {"from_version": current_number}
            if stopped is not None:
                details["rollout_id"] = stopped
            state = self.deploy(
                actor, project, to_version, environment, action="rollback", details=details, session=session
            )
            if state.challenger is not None and stopped is not None:
                state = self.clear_challenger(actor, project, environment, session=session)
            return state

    # -- internals --------------------------------------------------------------

    def _change(
        self,
        actor: Actor,
        project: str,
        environment: str,
        action: str,
        change: Any,
        details: dict[str, Any] | None,
        session: Session | None,
        *,
        must_exist: bool = False,
    ) -> DeploymentState:
        self._platform.access.require(actor, Permission.DEPLOY, environment=environment, target=project)
        if session is not None:
            return self._apply(session, actor, project, environment, action, change, details, must_exist)
        for _attempt in range(5):
            try:
                with self._platform.db.transaction() as own:
                    return self._apply(own, actor, project, environment, action, change, details, must_exist)
            except IntegrityError:
                continue  # two first deployments raced to create the row; the loser retries
        raise ConflictError(f"could not update {project} in {environment}: too much contention", "retry")

    def _apply(
        self,
        session: Session,
        actor: Actor,
        project: str,
        environment: str,
        action: str,
        change: Any,
        details: dict[str, Any] | None,
        must_exist: bool,
    ) -> DeploymentState:
        self._platform.environments.row(session, environment)
        row = self._row(session, project, environment, lock=True)
        if row is None:
            if must_exist:
                raise NotFoundError(
                    f"{project} is not deployed in {environment}",
                    f"deploy a champion first: harbourmaster deploy {project} VERSION --env {environment}",
                )
            project_row = self._project(session, project)
            row = DeploymentRow(project=project_row, environment=environment, revision=0, updated_by=actor.name)
            session.add(row)
        before = deployment_state(row).model_dump(mode="json") if row.id is not None else None
        change(session, row)
        row.revision += 1
        row.updated_by = actor.name
        row.updated_at = datetime.now(UTC)
        session.flush()
        state = deployment_state(row)
        event = DeploymentEventRow(
            deployment_id=row.id,
            project=project,
            environment=environment,
            revision=row.revision,
            action=action,
            champion=state.champion.number if state.champion else None,
            state=state.model_dump(mode="json"),
            details=details or {},
            actor=actor.name,
        )
        session.add(event)
        session.flush()
        event.audit_seq = self._platform.audit.record(
            session,
            actor,
            f"deployment.{action}",
            project,
            environment=environment,
            before=_audit_view(before),
            after=_audit_view(state.model_dump(mode="json")),
            details=details,
        )
        return state

    def _row(self, session: Session, project: str, environment: str, *, lock: bool = False) -> DeploymentRow | None:
        query = (
            select(DeploymentRow)
            .join(ProjectRow, ProjectRow.id == DeploymentRow.project_id)
            .where(ProjectRow.name == project, DeploymentRow.environment == environment)
        )
        if lock:
            query = query.with_for_update(of=DeploymentRow)
        return session.scalar(query)

    def _existing(self, session: Session, project: str, environment: str) -> DeploymentRow:
        self._project(session, project)
        self._platform.environments.row(session, environment)
        row = self._row(session, project, environment)
        if row is None:
            raise NotFoundError(
                f"{project} is not deployed in {environment}",
                f"deploy it: harbourmaster deploy {project} VERSION --env {environment}",
            )
        return row

    def _project(self, session: Session, project: str) -> ProjectRow:
        return self._platform.registry.project_row(session, project)

    def _version(self, session: Session, project: ProjectRow, version: VersionRef) -> VersionRow:
        return self._platform.registry.version_row(session, project.name, version)

    def _require_admitted(self, session: Session, project: str, environment: str, version: VersionRow) -> None:
        from harbourmaster.services.promotions import was_admitted, was_champion

        # Read in this session: a second connection would wait on our own write lock (SQLite).
        first = session.scalar(select(EnvironmentRow.name).order_by(EnvironmentRow.position).limit(1))
        if environment == first:
            return
        audit = self._platform.audit
        if was_admitted(session, project, environment, version.digest, audit=audit) or was_champion(
            session, project, environment, version.number, audit=audit
        ):
            return
        raise PermissionDeniedError(
            f"{project} v{version.number} has not been promoted to {environment}",
            f"promote it through the gates: harbourmaster promote {project} {version.number} --to {environment}",
        )

    @staticmethod
    def _require_fallback_fits(
        fallback: dict[str, Any], champion: VersionRow | None, failover: VersionRow | None, project: str, env: str
    ) -> None:
        """Refuse a fallback config that a version of the chain could not answer or test."""
        from harbourmaster.core.fallback import FallbackConfig
        from harbourmaster.core.fallback_fit import fallback_misfits
        from harbourmaster.core.schema import InputSchema, OutputSchema

        config = FallbackConfig.model_validate(fallback)
        if not config.rules and config.default is None:
            return
        for role, version in (("champion", champion), ("failover", failover)):
            if version is None:
                continue
            problems = fallback_misfits(
                config,
                InputSchema.model_validate(version.input_schema),
                OutputSchema.model_validate(version.output_schema),
            )
            if problems:
                raise InvalidInputError(
                    f"the fallback of {project} in {env} does not fit {role} v{version.number}: " + "; ".join(problems),
                    "answer with what the version could predict and test only its input features "
                    f"(harbourmaster show {project} {version.number}); to drop the rules: "
                    f"harbourmaster fallback {project} --env {env} --clear",
                )

    @staticmethod
    def _require_champion(row: DeploymentRow) -> None:
        if row.champion is None:
            raise ConflictError(
                f"{row.project.name} has no champion in {row.environment}", "deploy a champion before a challenger"
            )


def _audit_view(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """The parts of a deployment state worth showing in the audit log."""
    if state is None:
        return None
    keep = ("champion", "challenger", "failover", "fallback", "options", "revision")
    return {key: state.get(key) for key in keep}
