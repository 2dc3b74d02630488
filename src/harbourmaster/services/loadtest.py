"""Load tests: offer a version, serving as champion on a replica of an environment (``test``), a fixed
open-loop arrival rate for a while, and record whether it held the SLA of the environment it is to be
promoted into (``prod``: the next one by default) as the evidence check ``loadtest`` for promotion there
(what an ``evidence`` gate with ``check = "loadtest"`` on that environment reads).

What is sent: the inputs of the production environment's recent requests (its prediction log, rows its
champion answered), replayed in turn; without any, records sampled from the version's reference profile.
The production environment is the last one in the order (``prod`` by default). The rate: see
``core/loadtest.py`` (asked for, or the production peak x headroom, with a floor). The generator is
``loadgen`` (latency from intended send times; its own saturation counted). The control plane runs it,
so the replica's address is the one its heartbeat registered.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select

from harbourmaster.bundle.storage import read_manifest
from harbourmaster.core.loadtest import (
    DEFAULT_DURATION,
    DEFAULT_FLOOR,
    DEFAULT_HEADROOM,
    LATE_MS,
    check_options,
    choose_rate,
    figures,
    judge,
    peak_rate,
    sample_records,
    saturated,
    typed_value,
)
from harbourmaster.core.log_layout import QUERY_TYPES
from harbourmaster.core.permissions import Permission
from harbourmaster.core.profile import ReferenceProfile
from harbourmaster.core.schema import InputSchema
from harbourmaster.errors import ConflictError, InvalidInputError, NotFoundError
from harbourmaster.loadgen import Plan, encode_post, run_open_loop
from harbourmaster.services.actors import Actor
from harbourmaster.services.evidence import EvidenceInfo, Verdict, add_evidence
from harbourmaster.services.registry import VersionRef
from harbourmaster.services.sla import LOOKBACK
from harbourmaster.store import traffic_samples
from harbourmaster.store.prediction_log import PredictionLog
from harbourmaster.store.tables import DeploymentRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

CHECK = "loadtest"
MAX_REPLAYED = 5000  # newest captured rows replayed in turn
SAMPLED = 1000  # records drawn from the profile when production captured none
MAX_CONNECTIONS = 256


class LoadTestService:
    """Runs a load test against a replica and stores its verdict as evidence."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def run(
        self,
        actor: Actor,
        project: str,
        version: VersionRef,
        environment: str,
        *,
        rate: float | None = None,
        duration: float = DEFAULT_DURATION,
        headroom: float = DEFAULT_HEADROOM,
        floor: float = DEFAULT_FLOOR,
        connections: int | None = None,
        to: str | None = None,
        token: str | None = None,
    ) -> EvidenceInfo:
        """Load-test ``version`` of ``project`` on a live replica of ``environment`` where it is the champion,
        judged against the SLA of ``to``, the environment it is to be promoted into (default: the one after
        ``environment``, or itself when last); store and return the ``loadtest`` evidence for promotion into
        ``to`` (its details hold every figure). ``token``: sent to a guarded environment's replica (the
        caller's own, with ``predict`` there)."""
        problems = check_options(rate, duration, headroom, floor)
        if connections is not None and not 1 <= connections <= MAX_CONNECTIONS:
            problems.append(f"--connections {connections}: give 1 to {MAX_CONNECTIONS}")
        if problems:
            raise InvalidInputError(
                "; ".join(problems), "e.g. --rate 100 --duration 10 (see docs/monitoring.md, Load tests)"
            )
        platform = self._platform
        platform.access.require(actor, Permission.DEPLOY, environment=environment, target=project)
        platform.environments.get(environment)
        target = platform.environments.get(to) if to else platform.environments.next_after(environment)
        target = target or platform.environments.get(environment)
        production = max(platform.environments.list(), key=lambda env: env.position).name
        platform.access.require(actor, Permission.READ, environment=production, target=project)
        with platform.db.reader() as session:
            row = platform.registry.version_row(session, project, version)
            number, digest = row.number, row.digest
            schema = InputSchema.model_validate(row.input_schema)
            champion = self._champion(session, row.project_id, environment)
            prod_champion = self._champion(session, row.project_id, production)
            found = traffic_samples.series(session, datetime.now(UTC) - LOOKBACK, production, project)
        if champion != number:
            now = f"v{champion} is" if champion is not None else "no version is"
            raise ConflictError(
                f"{project} v{number} is not the champion of {environment} ({now}): a load test measures the "
                "version a replica answers with",
                f"deploy it first: harbourmaster deploy {project} {number} --env {environment}",
            )
        url = self._replica(actor, project, number, environment)
        peak = peak_rate(list(found.get((project, production), {}).values()))
        offered, rule = choose_rate(rate, peak, headroom, floor, f"{production} (last {_hours(LOOKBACK)} h)")
        problems = check_options(offered, duration, headroom, floor)
        if problems:
            raise InvalidInputError("; ".join(problems), "give --rate and --duration explicitly")
        records, source = self._records(project, number, digest, schema, production, prod_champion)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            host, port, _ = encode_post(f"{url}/v1/projects/{project}/predict", b"{}", headers)
        except ValueError as exc:
            raise ConflictError(
                f"the replica of {environment} registered the address {url}, which the load generator cannot reach: "
                f"{exc}",
                "load-test a replica that serves plain HTTP (harbourmaster serve registers http://HOST:PORT)",
            ) from None
        requests = [
            encode_post(f"{url}/v1/projects/{project}/predict", orjson.dumps(record), headers)[2] for record in records
        ]
        wanted = connections or min(MAX_CONNECTIONS, max(8, math.ceil(offered * 0.05)))
        plan = Plan(host, port, requests, offered, duration, connections=wanted, late_ms=LATE_MS, inspect=_tag)
        try:
            run = run_open_loop(plan)
        except ConnectionError as exc:
            raise ConflictError(
                f"the replica of {environment} at {url} does not answer: {exc}",
                f"check it: harbourmaster replicas --env {environment}",
            ) from None
        result = figures(
            offered,
            duration,
            [(o.intended, o.latency, o.status, o.tag) for o in run.outcomes],
            run.elapsed,
            run.late_dispatches,
            run.waited,
            run.max_dispatch_lag_ms,
            run.connections_used,
        )
        passed, reasons = judge(result, target.config.sla, target.name)
        summary = (
            f"v{number} {'held' if passed else 'did not hold'} {offered:g} req/s for {duration:g} s on a replica "
            f"of {environment}: "
            f"{'; '.join(reasons)} (p50 {_ms(result.p50_ms)}, p95 {_ms(result.p95_ms)}, "
            f"{result.throughput:.0f} answered req/s; rate: {rule}; requests: {source})"
        )
        details: dict[str, Any] = {
            **result.model_dump(),
            "passed": passed,
            "reasons": reasons,
            "generator_saturated": saturated(result),
            "rate_rule": rule,
            "peak_rate": peak,
            "headroom": headroom if rate is None else None,
            "requests_source": source,
            "replica": url,
            "tested_in": environment,
            "sla": target.config.sla.model_dump(exclude_none=True),
            "connection_errors": run.errors,
        }
        verdict = Verdict(passed=passed, summary=summary, reports=[], details=details)
        with platform.db.transaction() as session:
            [stored] = add_evidence(session, actor, project, number, digest, target.name, {CHECK: verdict})
            platform.audit.record(
                session,
                actor,
                "loadtest.run",
                f"{project}:v{number}",
                environment=environment,
                details={
                    "digest": digest,
                    "for": target.name,
                    "passed": passed,
                    "rate": offered,
                    "duration": duration,
                    "requests": result.requests,
                    "source": source,
                    "evidence": stored.id,
                },
            )
            return EvidenceInfo.model_validate(stored, from_attributes=True)

    @staticmethod
    def _champion(session: Any, project_id: int, environment: str) -> int | None:
        deployment = session.scalar(
            select(DeploymentRow).where(
                DeploymentRow.project_id == project_id, DeploymentRow.environment == environment
            )
        )
        return deployment.champion.number if deployment is not None and deployment.champion is not None else None

    def _replica(self, actor: Actor, project: str, number: int, environment: str) -> str:
        """The address of the live replica of ``environment`` that last reported ``number`` as champion."""
        replicas = [
            info
            for info in self._platform.replicas.list(actor, environment)
            if info.status == "alive"
            and info.address
            and ((info.loaded or {}).get(project) or {}).get("champion", {}).get("version") == number
        ]
        if not replicas:
            raise ConflictError(
                f"no live replica of {environment} serves {project} v{number} (a replica registers its address "
                "in its heartbeat)",
                f"start one: harbourmaster serve --env {environment}, then check: harbourmaster replicas",
            )
        return max(replicas, key=lambda info: info.last_seen).address.rstrip("/")

    def _records(
        self,
        project: str,
        number: int,
        digest: str,
        schema: InputSchema,
        production: str,
        prod_champion: int | None,
    ) -> tuple[list[dict[str, Any]], str]:
        """The records to send and where they come from: the newest requests production's champion
        answered (inputs only), or a sample of the version's reference profile."""
        if prod_champion is not None:
            columns = {column.name: QUERY_TYPES[column.dtype] for column in schema.columns}
            frame = PredictionLog(self._platform.artifacts).window(
                production, project, version=prod_champion, columns=columns, last_rows=MAX_REPLAYED
            )
            if not frame.empty:
                frame = frame.sort_values("ts").drop(columns=["ts"])
                records = [_record(row, schema) for row in frame.to_dict(orient="records")]
                return records, f"{len(records)} captured request(s) of {production} (answered by v{prod_champion})"
        try:
            profile = ReferenceProfile.model_validate(read_manifest(self._platform.artifacts, digest).profile)
        except (ValueError, NotFoundError) as exc:
            raise InvalidInputError(
                f"{production} captured no request of {project} and v{number} has no usable reference profile "
                f"to sample from ({exc})",
                "serve the project in production first, or register the version again",
            ) from None
        records = sample_records(profile, schema, SAMPLED, seed=number)
        return (
            records,
            f"{len(records)} record(s) sampled from v{number}'s reference profile ({production} captured none)",
        )


def _record(row: dict[str, Any], schema: InputSchema) -> dict[str, Any]:
    """A logged row as a request record: nulls of absent fields dropped, datetimes back to ISO text."""
    record: dict[str, Any] = {}
    for column in schema.columns:
        value = row.get(column.name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if column.nullable:
                record[column.name] = None
            continue
        if hasattr(value, "item"):
            value = value.item()  # numpy scalars
        record[column.name] = typed_value(value, column.dtype, column.categories)
    return record


def _tag(status: int, body: bytes) -> str | None:
    """``<path> v<version>`` of a replica's answer (champion, challenger, failover, rules)."""
    if status != 200:
        return None
    try:
        answer = orjson.loads(body)
        return f"{answer.get('path')} v{answer.get('version')}"
    except (orjson.JSONDecodeError, AttributeError):
        return None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _hours(delta: Any) -> str:
    return f"{delta.total_seconds() / 3600:g}"
