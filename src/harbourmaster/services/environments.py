"""The ordered environments and their configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harbourmaster.core.duties import environment_step, order_step
from harbourmaster.core.environments import (
    ENVIRONMENT_NAME,
    Environment,
    EnvironmentConfig,
    default_environments,
)
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import EnvironmentRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform


def _environment(row: EnvironmentRow) -> Environment:
    return Environment(name=row.name, position=row.position, config=EnvironmentConfig.model_validate(row.config))


def _ordered(positions: dict[str, int]) -> list[str]:
    return sorted(positions, key=lambda env: (positions[env], env))


class EnvironmentService:
    """Lists environments in order and changes their configuration."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def ensure_defaults(self) -> None:
        """Create dev, test and prod on a store that has no environments yet."""
        with self._platform.db.reader() as session:
            if session.scalar(select(EnvironmentRow.id).limit(1)) is not None:
                return
        try:
            with self._platform.db.transaction() as session:
                if session.scalar(select(EnvironmentRow.id).limit(1)) is None:
                    for env in default_environments():
                        session.add(
                            EnvironmentRow(
                                name=env.name,
                                position=env.position,
                                config=env.config.model_dump(mode="json"),
                                updated_by=Actor.system("defaults").name,
                            )
                        )
        except IntegrityError:
            pass  # another process seeded them at the same moment

    def list(self) -> list[Environment]:
        with self._platform.db.reader() as session:
            rows = session.scalars(select(EnvironmentRow).order_by(EnvironmentRow.position)).all()
            return [_environment(row) for row in rows]

    def get(self, name: str) -> Environment:
        with self._platform.db.reader() as session:
            return _environment(self.row(session, name))

    def row(self, session: Session, name: str) -> EnvironmentRow:
        row = session.scalar(select(EnvironmentRow).where(EnvironmentRow.name == name))
        if row is None:
            known = session.scalars(select(EnvironmentRow.name).order_by(EnvironmentRow.position)).all()
            raise NotFoundError(
                f"no environment named {name!r}", f"environments, in order: {', '.join(known) or 'none'}"
            )
        return row

    def next_after(self, name: str) -> Environment | None:
        environments = self.list()
        names = [env.name for env in environments]
        index = names.index(name)
        return environments[index + 1] if index + 1 < len(environments) else None

    def configure(self, actor: Actor, name: str, config: dict[str, Any], position: int | None = None) -> Environment:
        """Create or replace an environment's configuration."""
        self._platform.access.require(actor, Permission.ADMINISTER, environment=name, target=f"environment:{name}")
        if not ENVIRONMENT_NAME.fullmatch(name or ""):
            raise InvalidInputError(
                f"{name!r} is not a valid environment name", "use lower-case letters, digits, '-' or '_'"
            )
        try:
            parsed = EnvironmentConfig.model_validate(config)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'config'}: {error['msg']}" for error in exc.errors()
            )
            raise InvalidInputError(
                f"environment {name!r} configuration is invalid: {problems}",
                "see docs/governance.md for the keys an environment takes",
            ) from exc
        config = parsed.model_dump(mode="json")
        with self._platform.db.reader() as session:
            current = session.scalar(select(EnvironmentRow).where(EnvironmentRow.name == name))
            before = dict(current.config) if current is not None and current.config else None
            moved = current is not None and position is not None and position != current.position
            rows = session.scalars(select(EnvironmentRow)).all()
            positions = {row.name: row.position for row in rows}
            guarded = {row.name for row in rows if (row.config or {}).get("guarded")}
        step = environment_step(name, before, config, moved)
        if step is None and (current is None or moved):
            after = dict(positions)
            after[name] = position if position is not None else max(positions.values(), default=0) + 1
            step = order_step(name, _ordered(positions), _ordered(after), guarded)
        if step is not None:  # a guarded environment's governance: a second admin confirms (or it is refused)
            self._platform.duties.guard(actor, step, {"name": name, "config": config, "position": position})
        with self._platform.db.transaction() as session:
            return self.configure_in(session, actor, name, config, position)

    def configure_in(
        self,
        session: Session,
        actor: Actor,
        name: str,
        config: dict[str, Any],
        position: int | None = None,
        **details: object,
    ) -> Environment:
        """Write a validated configuration in ``session``'s transaction, audited with the configuration and
        the place in the order before and after."""
        row = session.scalar(select(EnvironmentRow).where(EnvironmentRow.name == name))
        before = {"position": row.position, "config": dict(row.config or {})} if row is not None else None
        if row is None:
            last = session.scalar(select(EnvironmentRow.position).order_by(EnvironmentRow.position.desc()))
            row = EnvironmentRow(name=name, position=position if position is not None else (last or 0) + 1)
            session.add(row)
        elif position is not None:
            row.position = position
        row.config = EnvironmentConfig.model_validate(config).model_dump(mode="json")
        row.updated_by = actor.name
        session.flush()
        self._platform.audit.record(
            session,
            actor,
            "environment.configure",
            f"environment:{name}",
            environment=name,
            before=before,
            after={"position": row.position, "config": row.config},
            details={"moved": before is not None and before["position"] != row.position, **details},
        )
        return _environment(row)
