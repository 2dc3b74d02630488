"""The data plane's door into the control plane: replica credentials and what they may do.

A replica credential is a token scoped to one environment, minted by an admin and
stored as SHA-256 like every token. It carries no role, so every service that
checks a permission refuses it. With it a replica (or a batch scorer) may only:
read its environment's desired state, download the bundles deployed there, write
its heartbeats and prediction-log files, record its scoring runs, ask whether a
client's token may predict there, and forward feedback. Everything else is a 403,
audited.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from harbourmaster.bundle.builder import Bundle
from harbourmaster.bundle.storage import read_bundle_files
from harbourmaster.core.duties import credential_step
from harbourmaster.core.environments import Environment
from harbourmaster.core.log_layout import INPUT_PREFIX, PREDICTION_COLUMN, PROBABILITY_PREFIX, UNROUTED
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import (
    ERRORS_BY_CODE,
    AuthenticationError,
    HarbourmasterError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from harbourmaster.schemas import DeploymentState, RunInfo
from harbourmaster.services.actors import Actor
from harbourmaster.services.deployments import deployment_state
from harbourmaster.services.token_lineage import check_minting_chain
from harbourmaster.store.prediction_log import prediction_schema
from harbourmaster.store.tables import DeploymentRow, ProjectRow, ReplicaCredentialRow

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.orm import Session

    from harbourmaster.services.platform import Platform

REPLICA_TOKEN_PREFIX = "hmr_"
MAX_PREDICTION_FILE_BYTES = 64 * 1024 * 1024
MAX_PREDICTION_DECODED_BYTES = 256 * 1024 * 1024  # once decompressed and decoded
MAX_PREDICTION_ROWS = 2_000_000
MAX_TYPED_COLUMNS = 4096
TYPED_PREFIXES = (INPUT_PREFIX, PREDICTION_COLUMN, PROBABILITY_PREFIX)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
# predictions/env=<env>/project=<project>/date=<YYYY-MM-DD>/<spool segment name>[.v<version>].parquet, nothing else
_PREDICTION_KEY = re.compile(
    r"predictions/env=(?P<env>[a-z][a-z0-9_-]{0,62})/project=(?P<project>"
    + re.escape(UNROUTED)
    + r"|[a-z0-9][a-z0-9_-]{0,62})/"
    r"date=(?P<date>\d{4}-\d{2}-\d{2})/[0-9a-f][0-9a-f-]{15,63}(\.v(?P<version>\d{1,9}))?\.parquet"
)
CREDENTIAL_HINT = "mint one for this environment: harbourmaster replica-tokens create --env ENVIRONMENT"


class ReplicaCredentialInfo(BaseModel):
    id: int
    environment: str
    name: str
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    parent_token_id: int | None = None  # the API token it was minted with; it dies with that token


@dataclass(frozen=True)
class IssuedReplicaCredential:
    """A fresh replica credential: ``secret`` is shown this once."""

    id: int
    environment: str
    name: str
    secret: str
    expires_at: datetime | None


class DesiredState(BaseModel):
    """What a replica of one environment reconciles toward (and keeps on disk for static stability)."""

    environment: Environment
    deployments: list[DeploymentState]
    trusted_types: dict[str, list[str]]  # project -> the project's extra trusted types for loading
    # The control plane's trusted type prefixes (HARBOURMASTER_TRUSTED_TYPES included): registration checked
    # the model files against them, so a replica loads with them too, whatever its own environment says.
    platform_trusted_types: list[str] = []
    # project -> its [monitoring.runs]: how a batch scorer checks the input data before scoring.
    run_checks: dict[str, dict[str, Any]] = {}


MAX_REFUSAL_TALLIES = 200  # per report: a replica's guard folds the rest into one tally


class TokenDecision(BaseModel):
    """Whether a client's token may predict in an environment (what replicas cache)."""

    allowed: bool
    caller: str | None = None
    code: str | None = None
    message: str | None = None
    hint: str | None = None

    def error(self) -> HarbourmasterError:
        """The refusal as the error the client gets (401 or 403); a known but refused caller is named on it."""
        cls = ERRORS_BY_CODE.get(self.code or "", PermissionDeniedError)
        error = cls(self.message or "this token may not predict here", self.hint)
        error.actor = self.caller  # type: ignore[attr-defined]  # for the replica's aggregated refusal audit
        return error


def _credential_info(row: ReplicaCredentialRow) -> ReplicaCredentialInfo:
    return ReplicaCredentialInfo.model_validate(row, from_attributes=True)


def deployed_digests(state: DesiredState) -> set[str]:
    """Every bundle digest a replica of this state may need (champions, challengers, failovers)."""
    digests: set[str] = set()
    for deployment in state.deployments:
        for pointer in (
            deployment.champion,
            deployment.failover,
            deployment.challenger.version if deployment.challenger else None,
        ):
            if pointer is not None:
                digests.add(pointer.digest)
    return digests


class DataPlaneService:
    """Replica credentials, and every call the data plane makes into the control plane."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    # -- credentials ------------------------------------------------------------

    def create_credential(
        self, actor: Actor, environment: str, name: str = "replica", expires_in: timedelta | None = None
    ) -> IssuedReplicaCredential:
        """Mint a replica credential for one environment (admins only; audited)."""
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"replica-credential:{environment}")
        if not _NAME.fullmatch(name or ""):
            raise InvalidInputError(f"{name!r} is not a valid credential name", "letters, digits, '.', '_', '@', '-'")
        if expires_in is not None and expires_in.total_seconds() <= 0:
            raise InvalidInputError("a credential's lifetime must be positive", "e.g. --expires-in 90d")
        with self._platform.db.reader() as session:
            self._platform.environments.row(session, environment)  # an unknown environment fails with a hint
        step = credential_step(environment, self._platform.access.is_guarded(environment))
        if step is not None:  # prod's bundles and prediction log: a second admin confirms (or it is refused)
            payload = {"environment": environment, "name": name, "parent_id": actor.token_id}
            if expires_in is not None:
                payload["expires_in_seconds"] = expires_in.total_seconds()
            self._platform.duties.guard(actor, step, payload)
        with self._platform.db.transaction() as session:
            return self.create_credential_in(session, actor, environment, name, expires_in, actor.token_id)

    def create_credential_in(
        self,
        session: Session,
        actor: Actor,
        environment: str,
        name: str,
        expires_in: timedelta | None,
        parent_token_id: int | None,
        **details: Any,
    ) -> IssuedReplicaCredential:
        """Mint the credential in ``session`` (also how a confirmed duty request carries it out).

        ``parent_token_id`` is the API token of whoever asked for it: the credential dies with that token.
        """
        secret = REPLICA_TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + expires_in if expires_in else None
        row = ReplicaCredentialRow(
            environment=environment,
            name=name,
            token_hash=hashlib.sha256(secret.encode()).hexdigest(),  # as identity.hash_token
            prefix=secret[:8],
            created_by=actor.name,
            expires_at=expires_at,
            parent_token_id=parent_token_id,
        )
        session.add(row)
        session.flush()
        self._platform.audit.record(
            session,
            actor,
            "replica-credential.create",
            f"replica-credential:{row.id}",
            environment=environment,
            after={
                "name": name,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "parent_token_id": parent_token_id,
            },
            details=details or None,
        )
        return IssuedReplicaCredential(row.id, environment, name, secret, expires_at)

    def list_credentials(self, actor: Actor, environment: str | None = None) -> list[ReplicaCredentialInfo]:
        self._platform.access.require(actor, Permission.ADMINISTER, target="replica-credentials")
        with self._platform.db.reader() as session:
            query = select(ReplicaCredentialRow).order_by(ReplicaCredentialRow.id)
            if environment:
                self._platform.environments.row(session, environment)  # a typo is named, not an empty list
                query = query.where(ReplicaCredentialRow.environment == environment)
            return [_credential_info(row) for row in session.scalars(query)]

    def revoke_credential(self, actor: Actor, credential_id: int) -> ReplicaCredentialInfo:
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"replica-credential:{credential_id}")
        with self._platform.db.transaction() as session:
            row = session.get(ReplicaCredentialRow, credential_id)
            if row is None:
                raise NotFoundError(
                    f"no replica credential with id {credential_id}", "list them: harbourmaster replica-tokens list"
                )
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
                self._platform.audit.record(
                    session,
                    actor,
                    "replica-credential.revoke",
                    f"replica-credential:{row.id}",
                    environment=row.environment,
                )
            return _credential_info(row)

    def authenticate(self, token_hash: str, address: str | None = None) -> Actor:
        """The replica actor of a credential (kind ``replica``, no role, one environment)."""
        now = datetime.now(UTC)
        with self._platform.db.reader() as session:
            row = session.scalar(select(ReplicaCredentialRow).where(ReplicaCredentialRow.token_hash == token_hash))
            if row is None:
                raise AuthenticationError("the replica credential is not valid", CREDENTIAL_HINT)
            if row.revoked_at is not None:
                raise AuthenticationError("the replica credential was revoked", CREDENTIAL_HINT)
            if row.expires_at is not None and row.expires_at <= now:
                raise AuthenticationError("the replica credential has expired", CREDENTIAL_HINT)
            check_minting_chain(session, row.parent_token_id, now, CREDENTIAL_HINT)
            credential_id, environment, name, last_used = row.id, row.environment, row.name, row.last_used_at
        if last_used is None or (now - last_used).total_seconds() > 60:  # coarse: replicas poll every second
            with self._platform.db.transaction() as session:
                session.get_one(ReplicaCredentialRow, credential_id).last_used_at = now
        return Actor(
            name=f"replica:{environment}:{name}#{credential_id}",
            kind="replica",
            address=address,
            environment=environment,
        )

    # -- the data plane's calls ---------------------------------------------------

    def require_data_plane(self, actor: Actor, environment: str, action: str) -> None:
        """Only a replica credential of ``environment`` (or the platform's own processes) passes; audited."""
        if actor.kind == "system" or (actor.kind == "replica" and actor.environment == environment):
            return
        if actor.kind == "replica":
            message = f"{actor.name} is a replica credential for {actor.environment}, not for {environment}"
        else:
            message = f"{actor.name} may not {action} in {environment}: that is a data-plane call"
        self._refuse(actor, f"denied.dataplane.{action}", environment, environment, message, CREDENTIAL_HINT)

    def refuse_replica_outside_data_plane(self, actor: Actor, what: str) -> None:
        """A replica credential used on a people's route: always refused, audited."""
        self._refuse(
            actor,
            "denied.replica-scope",
            what,
            actor.environment,
            f"{actor.name} is a replica credential: it may make data-plane calls only, not {what}",
            "use a person's token (harbourmaster tokens create) for anything else",
        )

    def _refuse(self, actor: Actor, action: str, target: str, environment: str | None, message: str, hint: str) -> None:
        self._platform.audit.record_alone(
            actor,
            action,
            target,
            outcome="denied",
            environment=environment,
            details={"kind": actor.kind, "reason": message},
        )
        raise PermissionDeniedError(message, hint)

    def desired_state(self, actor: Actor, environment: str) -> DesiredState:
        """The environment's configuration, every deployment in it and the projects' trusted types."""
        self.require_data_plane(actor, environment, "read-state")
        env = self._platform.environments.get(environment)
        with self._platform.db.reader() as session:
            rows = session.scalars(
                select(DeploymentRow)
                .join(ProjectRow, ProjectRow.id == DeploymentRow.project_id)
                .where(DeploymentRow.environment == environment)
                .options(
                    selectinload(DeploymentRow.project),
                    selectinload(DeploymentRow.champion),
                    selectinload(DeploymentRow.challenger_version),
                    selectinload(DeploymentRow.failover),
                )
                .order_by(ProjectRow.name)
            ).all()
            states = [deployment_state(row) for row in rows]
            trusted = {row.project.name: list(row.project.trusted_types or []) for row in rows}
            checks = {
                row.project.name: dict(((row.project.settings or {}).get("monitoring") or {}).get("runs") or {})
                for row in rows
            }
        return DesiredState(
            environment=env,
            deployments=states,
            trusted_types=trusted,
            platform_trusted_types=list(self._platform.settings.trusted_type_prefixes),
            run_checks={project: value for project, value in checks.items() if value},
        )

    def bundle(self, actor: Actor, environment: str, digest: str) -> Bundle:
        """A bundle deployed in ``environment``, verified against its digest (nothing else is served)."""
        self.require_data_plane(actor, environment, "read-bundle")
        if digest not in deployed_digests(self.desired_state(actor, environment)):
            raise NotFoundError(
                f"no bundle {digest[:16]} is deployed in {environment}", "a replica loads only what is deployed"
            )
        return read_bundle_files(self._platform.artifacts, digest)

    def heartbeat(self, actor: Actor, environment: str, replica_id: str, **fields: Any) -> None:
        self.require_data_plane(actor, environment, "heartbeat")
        self._platform.replicas.heartbeat(actor, replica_id, environment=environment, **fields)

    def store_predictions(self, actor: Actor, environment: str, key: str, data: bytes) -> str:
        """Write one captured Parquet file into the prediction log, under the caller's environment only."""
        self.require_data_plane(actor, environment, "write-predictions")
        match = _PREDICTION_KEY.fullmatch(key or "")
        if match is None or match["env"] != environment:
            raise InvalidInputError(
                f"{key!r} is not a prediction-log key of {environment}",
                f"predictions/env={environment}/project=<project>/date=<YYYY-MM-DD>/<16-64 of hex and '-'>"
                "[.v<version>].parquet",
            )
        try:
            datetime.strptime(match["date"], "%Y-%m-%d")
        except ValueError:
            raise InvalidInputError(f"{match['date']!r} is not a date", "YYYY-MM-DD") from None
        if len(data) > MAX_PREDICTION_FILE_BYTES:
            raise InvalidInputError(
                f"prediction file of {len(data)} bytes is too large", f"at most {MAX_PREDICTION_FILE_BYTES}"
            )
        version = int(match["version"]) if match["version"] is not None else None
        _check_prediction_file(data, environment, match["project"], version)
        if self._platform.artifacts.exists(key):
            return key  # a spool segment uploaded again after a crash: stored once, never rewritten
        self._platform.artifacts.put_bytes(key, data)
        return key

    def authorize_prediction(
        self, actor: Actor, environment: str, token: str | None, address: str | None
    ) -> TokenDecision:
        """For a replica of a guarded environment: may this client token predict there? (each decision audited)"""
        self.require_data_plane(actor, environment, "check-token")
        try:
            # Refusals are audited by the replica's guard, in aggregate (record_refusals), not one by one.
            caller = self._platform.access.authorize_prediction(token, environment, address, audit_refusals=False)
        except (AuthenticationError, PermissionDeniedError) as exc:
            return TokenDecision(
                allowed=False, caller=getattr(exc, "actor", None), code=exc.code, message=exc.message, hint=exc.hint
            )
        return TokenDecision(allowed=True, caller=caller.name)

    def record_refusals(self, actor: Actor, environment: str, tallies: list[dict[str, Any]]) -> int:
        """A guarded replica's refused client tokens, one entry per token hash and reason per interval."""
        self.require_data_plane(actor, environment, "refusals")
        for tally in tallies[:MAX_REFUSAL_TALLIES]:
            who = str(tally.get("actor") or "anonymous")[:128]
            addresses = ",".join(str(a) for a in tally.get("addresses") or [])[:500] or None
            self._platform.audit.record_alone(
                Actor(name=who, address=addresses),
                "denied.predict" if tally.get("actor") else "predict.access",
                environment,
                outcome="denied",
                environment=environment,
                details={
                    "replica": actor.name,
                    **{key: tally.get(key) for key in ("reason", "status", "token_sha256", "count", "tokens")},
                    "first": str(tally.get("first")),
                    "last": str(tally.get("last")),
                },
            )
        return min(len(tallies), MAX_REFUSAL_TALLIES)

    def feedback(
        self,
        actor: Actor,
        environment: str,
        project: str,
        items: list[tuple[str, int, Any]],
        caller: str | None = None,
        *,
        classes: Iterable[Any] | None = None,
        answered: dict[str, int] | None = None,
    ) -> int:
        """Ground truth a replica took in; on a guarded replica, ``caller`` is whom the client's token named.

        ``answered`` is what the replica answered lately (request id -> rows), which its own prediction-log
        files may not hold yet; a replica can only vouch for its own environment's requests.
        """
        self.require_data_plane(actor, environment, "feedback")
        recorder = replace(actor, name=f"{caller} via {actor.name}"[:128]) if caller else actor
        known = dict(answered or {})

        def recent(ids: set[str]) -> dict[str, int]:
            return {rid: known[rid] for rid in ids if rid in known}

        return self._platform.feedback.record(recorder, project, environment, items, classes=classes, recent=recent)

    def record_score_run(self, actor: Actor, environment: str, project: str, outcome: dict[str, Any]) -> RunInfo:
        """A batch-scoring run done by a data-plane process, recorded like an embedded one."""
        self.require_data_plane(actor, environment, "record-run")
        return self._platform.scoring.record(actor, project, environment, **outcome)


def _check_schema(schema: pa.Schema, version: int | None) -> None:
    """The prediction-log columns, then (in a typed file only) typed columns of plain types and known names."""
    import pyarrow as pa

    hint = "send what CaptureWriter writes"
    expected = prediction_schema()
    base = pa.schema(list(schema)[: len(expected)])
    if not base.equals(expected, check_metadata=False):
        raise InvalidInputError("the prediction file does not have the prediction-log schema", hint)
    extra = list(schema)[len(expected) :]
    typed_types = (pa.int64(), pa.float64(), pa.bool_(), pa.string())
    if extra and version is None:
        raise InvalidInputError("a prediction file without a version in its name has typed columns", hint)
    if len(extra) > MAX_TYPED_COLUMNS:
        raise InvalidInputError(f"the prediction file has {len(extra)} typed columns", f"at most {MAX_TYPED_COLUMNS}")
    for column in extra:
        if not column.name.startswith(TYPED_PREFIXES) or column.type not in typed_types:
            raise InvalidInputError(
                f"the prediction file has an unexpected column {column.name[:100]!r} of type {column.type}",
                f"typed columns are in_<field>, out_prediction or out_proba_<class>; {hint}",
            )


def _check_prediction_file(data: bytes, environment: str, project: str, version: int | None = None) -> None:
    """A Parquet file of prediction rows of this environment and project (and version, when its name has one).

    Sizes are checked before anything is decoded in full: a few kilobytes of Parquet (one long value
    repeated through its dictionary, or a page that compresses a thousandfold) can decode to gigabytes.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    hint = "send what CaptureWriter writes"
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        _check_schema(parquet.schema_arrow, version)
        meta = parquet.metadata
        if meta.num_rows > MAX_PREDICTION_ROWS:
            raise InvalidInputError(f"the prediction file has {meta.num_rows} rows", f"at most {MAX_PREDICTION_ROWS}")
        pages = sum(
            meta.row_group(group).column(column).total_uncompressed_size
            for group in range(meta.num_row_groups)
            for column in range(meta.num_columns)
        )
        _check_decoded_size(pages)
        # Strings stay dictionary-encoded while read, so a repeated value is held once until its size is known.
        strings = [field.name for field in parquet.schema_arrow if pa.types.is_string(field.type)]
        table = pq.ParquetFile(io.BytesIO(data), read_dictionary=strings).read()
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(f"the prediction file is not Parquet: {exc}", hint) from None
    _check_decoded_size(_decoded_bytes(table))
    for column, expected in (("environment", environment), ("project", project)):
        values = set(table.column(column).unique().to_pylist())
        if values - {expected}:
            raise InvalidInputError(
                f"the prediction file holds rows of {column} {sorted(map(str, values - {expected}))}",
                f"a replica of {environment} writes only {column}={expected} rows under this key",
            )
    if version is not None:
        versions = set(table.column("version").unique().to_pylist())
        if versions - ({None} if version == 0 else {version}):
            raise InvalidInputError(
                f"the prediction file of v{version} holds rows of versions {sorted(map(str, versions))}",
                "a file named .v<N>.parquet holds the rows of version N only (.v0: rows no version answered)",
            )


def _decoded_bytes(table: pa.Table) -> int:
    """What the table takes once its dictionary-encoded columns are expanded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in table.columns:
        for chunk in column.chunks:
            if pa.types.is_dictionary(chunk.type):
                lengths = pc.binary_length(chunk.dictionary).take(chunk.indices)
                total += int(pc.sum(lengths).as_py() or 0) + 8 * len(chunk)
            else:
                total += chunk.nbytes
    return total


def _check_decoded_size(size: int) -> None:
    if size > MAX_PREDICTION_DECODED_BYTES:
        raise InvalidInputError(
            f"the prediction file decodes to {size} bytes",
            f"at most {MAX_PREDICTION_DECODED_BYTES}: flush smaller files",
        )
