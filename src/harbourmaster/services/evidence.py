"""Evidence for promotion gates: checks the platform computes about a candidate version (by digest)
for one target environment, stored with a verdict, a summary and links to the reports behind it.

- ``drift``: on the target environment's current window of its champion's traffic, the candidate's
  reference is measured against the window as well as the champion's (two stored drift reports). It
  passes when the candidate has fewer drifted features than the champion, or as many and a mean drift
  score (over the measured features) no higher.
- ``quality``: when both the champion and the candidate answered at least ``min_labelled_rows``
  labelled rows of the target environment's window (a candidate serving there as challenger), their
  window metrics are compared (two stored quality reports); otherwise their held-out metrics recorded
  at registration are. It passes when no shared metric of the candidate is worse than the champion's
  by more than the project's ``[monitoring.quality] tolerance`` (relative).

- ``drift_fixed``: the same window against both references, feature by feature (``core/retraining.py``):
  passes when no feature drifts newly against the candidate's reference and at least one that drifted
  against the champion's no longer does (or none drifted at all).
- ``beats_champion``: measured by scoring both versions on the held-out labelled production rows, which
  runs model code, so it is recorded by ``harbourmaster evaluate`` (``services/retraining.py``), not here.
- ``loadtest``: recorded by ``harbourmaster loadtest`` (``services/loadtest.py``), not by ``record``.

With no champion in the target environment there is nothing to compare with: both checks pass and say
so. The ``evidence`` gate (``core/gates.py``) reads the newest record of each check for the digest.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from harbourmaster.core.drift import DriftReport
from harbourmaster.core.drift_window import parse_window
from harbourmaster.core.metrics import SUPPORTED_METRICS
from harbourmaster.core.permissions import Permission
from harbourmaster.core.quality import relative_drop
from harbourmaster.errors import BundleIntegrityError, InvalidInputError
from harbourmaster.services.actors import Actor
from harbourmaster.services.registry import VersionRef
from harbourmaster.store.tables import DeploymentRow, GateEvidenceRow, VersionRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

CHECKS: tuple[str, ...] = (
    "drift",
    "quality",
    "beats_champion",
    "drift_fixed",
    "loadtest",
)
DEFAULT_CHECKS: tuple[str, ...] = ("drift", "quality")  # what ``record`` measures when no check is named
# Checks recorded by a command of their own, because measuring them runs model code or sends load (never
# in the control plane): the command that records each, which ``record`` names when asked for one.
RECORDED_ELSEWHERE: dict[str, str] = {
    "beats_champion": "harbourmaster evaluate {project} {version} --env {environment}",
    "loadtest": "harbourmaster loadtest {project} {version} --env test",
}


class EvidenceInfo(BaseModel):
    """One stored check of a version for an environment."""

    id: int
    project: str
    version: int
    digest: str
    environment: str
    check: str
    passed: bool
    summary: str
    reports: list[str]  # links: drift-report:ID, quality-report:ID
    details: dict[str, Any]
    recorded_by: str
    recorded_at: datetime


class Verdict(BaseModel):
    """One check's outcome, as stored."""

    passed: bool
    summary: str
    reports: list[str] = []
    details: dict[str, Any] = {}


class EvidenceService:
    """Records evidence (``record``), lists it, and hands the promotion gates the newest of each check."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def record(
        self,
        actor: Actor,
        project: str,
        version: VersionRef,
        environment: str,
        *,
        checks: list[str] | None = None,
        window: str | None = None,
    ) -> list[EvidenceInfo]:
        """Compute the ``checks`` (default: ``DEFAULT_CHECKS``) of ``version`` against the champion of ``environment``
        over ``window`` (default: the project's drift / quality window) and store them. Reads the
        environment's prediction log, so it needs ``read`` there (audited for a guarded environment)."""
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        self._platform.environments.get(environment)
        if window is not None:
            parse_window(window)  # a bad window is refused before anything is measured
        wanted = list(dict.fromkeys(checks or DEFAULT_CHECKS))
        unknown = [check for check in wanted if check not in CHECKS]
        if unknown:
            raise InvalidInputError(
                f"unknown evidence check(s): {', '.join(map(repr, unknown))}", f"checks: {', '.join(CHECKS)}"
            )
        elsewhere = [check for check in wanted if check in RECORDED_ELSEWHERE]
        if elsewhere:
            how = RECORDED_ELSEWHERE[elsewhere[0]].format(project=project, version=version, environment=environment)
            raise InvalidInputError(
                f"the {elsewhere[0]} evidence is recorded by running it (it scores production rows with the "
                "versions' code, or sends load to a replica), which the control plane never does",
                f"record it with: {how}",
            )
        with self._platform.db.reader() as session:
            candidate = self._platform.registry.version_row(session, project, version)
            project_id = candidate.project_id
            deployment = session.scalar(
                select(DeploymentRow).where(
                    DeploymentRow.project_id == project_id, DeploymentRow.environment == environment
                )
            )
            champion = deployment.champion if deployment is not None else None
            number, digest, metrics = candidate.number, candidate.digest, dict(candidate.metrics or {})
            source = candidate.metrics_source
            theirs = _Held(champion) if champion is not None else None
        verdicts: dict[str, Verdict] = {}
        for check in wanted:
            if theirs is None:
                verdicts[check] = Verdict(
                    passed=True, summary=f"no champion in {environment}: nothing to compare v{number} with"
                )
            elif theirs.number == number:
                verdicts[check] = Verdict(passed=True, summary=f"v{number} is the champion of {environment}")
            elif check == "drift":
                verdicts[check] = self._drift(actor, project, environment, number, theirs.number, window)
            elif check == "drift_fixed":
                verdicts[check] = self._drift_fixed(actor, project, environment, number, theirs.number, window)
            else:
                verdicts[check] = self._quality(project, environment, (number, metrics, source), theirs, window)
        with self._platform.db.transaction() as session:
            rows = add_evidence(session, actor, project, number, digest, environment, verdicts)
            self._platform.audit.record(
                session,
                actor,
                "evidence.record",
                f"{project}:v{number}",
                environment=environment,
                details={
                    "digest": digest,
                    "checks": {check: verdict.passed for check, verdict in verdicts.items()},
                    "evidence": [row.id for row in rows],
                },
            )
            return [EvidenceInfo.model_validate(row, from_attributes=True) for row in rows]

    def list(
        self, actor: Actor, project: str, *, version: VersionRef | None = None, environment: str | None = None
    ) -> list[EvidenceInfo]:
        """Stored evidence of a project (one version's, for one environment), newest first."""
        self._platform.access.require(actor, Permission.READ, target=project)
        with self._platform.db.reader() as session:
            query = select(GateEvidenceRow).where(GateEvidenceRow.project == project)
            if version is not None:
                query = query.where(
                    GateEvidenceRow.digest == self._platform.registry.version_row(session, project, version).digest
                )
            else:
                self._platform.registry.project_row(session, project)
            if environment is not None:
                query = query.where(GateEvidenceRow.environment == environment)
            rows = session.scalars(query.order_by(GateEvidenceRow.id.desc()).limit(1000))
            return [EvidenceInfo.model_validate(row, from_attributes=True) for row in rows]

    def for_gate(self, project: str, digest: str, environment: str) -> dict[str, dict[str, Any]]:
        """The newest record of each check of a digest for an environment, as the ``evidence`` gate reads it."""
        with self._platform.db.reader() as session:
            rows = session.scalars(
                select(GateEvidenceRow)
                .where(
                    GateEvidenceRow.project == project,
                    GateEvidenceRow.digest == digest,
                    GateEvidenceRow.environment == environment,
                )
                .order_by(GateEvidenceRow.id.desc())
            )
            newest: dict[str, dict[str, Any]] = {}
            for row in rows:
                newest.setdefault(
                    row.check,
                    {
                        "id": row.id,
                        "passed": row.passed,
                        "summary": row.summary,
                        "reports": list(row.reports),
                        "recorded_at": row.recorded_at,
                        "recorded_by": row.recorded_by,
                    },
                )
            return newest

    def store_verdict(
        self,
        actor: Actor,
        project: str,
        version: VersionRef,
        environment: str,
        check: str,
        *,
        passed: bool,
        summary: str,
        reports: list[str],
        details: dict[str, Any],
    ) -> EvidenceInfo:
        """Store one verdict measured by another service (e.g. ``beats_champion``), audited like ``record``."""
        if check not in CHECKS:
            raise InvalidInputError(f"unknown evidence check {check!r}", f"checks: {', '.join(CHECKS)}")
        self._platform.access.require(actor, Permission.READ, environment=environment, target=project)
        with self._platform.db.reader() as session:
            candidate = self._platform.registry.version_row(session, project, version)
            number, digest = candidate.number, candidate.digest
        verdict = Verdict(passed=passed, summary=summary, reports=reports, details=details)
        with self._platform.db.transaction() as session:
            [row] = add_evidence(session, actor, project, number, digest, environment, {check: verdict})
            self._platform.audit.record(
                session,
                actor,
                "evidence.record",
                f"{project}:v{number}",
                environment=environment,
                details={"digest": digest, "checks": {check: passed}, "evidence": [row.id]},
            )
            return EvidenceInfo.model_validate(row, from_attributes=True)

    # -- checks ----------------------------------------------------------------------

    def _drift_fixed(
        self, actor: Actor, project: str, environment: str, number: int, champion: int, window: str | None
    ) -> Verdict:
        from harbourmaster.core.retraining import compare_drift

        measured = self._both_drifts(actor, project, environment, number, champion, window)
        if isinstance(measured, Verdict):
            return measured
        mine, theirs, links = measured
        comparison = compare_drift(mine, theirs)
        return Verdict(
            passed=comparison.passed,
            summary=comparison.summary,
            reports=links,
            details={"window": theirs.window, "rows": theirs.rows, "comparison": comparison.model_dump(mode="json")},
        )

    def _drift(
        self, actor: Actor, project: str, environment: str, number: int, champion: int, window: str | None
    ) -> Verdict:
        measured = self._both_drifts(actor, project, environment, number, champion, window)
        if isinstance(measured, Verdict):
            return measured
        mine, theirs, links = measured
        a, b = _drift_figures(mine), _drift_figures(theirs)
        passed = a[0] < b[0] or (a[0] == b[0] and a[1] <= b[1])
        verb = "drifts less than" if passed else "does not drift less than"
        return Verdict(
            passed=passed,
            summary=f"v{number} {verb} champion v{champion} on {theirs.rows} rows of {environment} "
            f"({theirs.window}): {a[0]} drifted feature(s), mean score {a[1]:.3f}, against {b[0]}, {b[1]:.3f}",
            reports=links,
            details={
                "window": theirs.window,
                "rows": theirs.rows,
                "candidate": {"drifted": mine.drifted_features, "mean_score": a[1]},
                "champion": {"drifted": theirs.drifted_features, "mean_score": b[1]},
            },
        )

    def _both_drifts(
        self, actor: Actor, project: str, environment: str, number: int, champion: int, window: str | None
    ) -> tuple[DriftReport, DriftReport, list[str]] | Verdict:
        """The same window's drift against the candidate's reference and the champion's (and their links),
        or the failed verdict saying why they cannot be compared."""
        drift = self._platform.drift
        theirs = drift.report(actor, project, environment, window=window)
        try:
            mine = drift.report(actor, project, environment, window=window, reference_version=number)
        except BundleIntegrityError as exc:  # e.g. an older bundle without a reference profile
            return Verdict(
                passed=False,
                summary=f"v{number}'s drift cannot be measured: {exc.message}",
                reports=[f"drift-report:{theirs.id}"],
            )
        links = [f"drift-report:{mine.id}", f"drift-report:{theirs.id}"]
        if theirs.rows == 0:
            return Verdict(
                passed=False,
                summary=f"the window {theirs.window} of {environment} holds no answer of champion v{champion}: "
                "nothing to measure the drift on (wait for traffic, or choose a wider window)",
                reports=links,
            )
        return mine, theirs, links

    def _quality(
        self,
        project: str,
        environment: str,
        candidate: tuple[int, dict[str, Any], str],
        champion: _Held,
        window: str | None,
    ) -> Verdict:
        number, held_out, source = candidate
        quality = self._platform.quality
        settings = quality.settings(project)
        tolerance = settings.tolerance
        theirs = quality.measure(project, environment, window=window)
        mine = quality.measure(project, environment, window=window, version=number)
        for report in (theirs, mine):
            quality.save(report)
        needed = settings.min_labelled_rows
        if theirs.labelled >= needed and mine.labelled >= needed:
            basis = f"on labelled rows of {environment} ({theirs.window}: {mine.labelled} of v{number}'s, "
            basis += f"{theirs.labelled} of v{champion.number}'s)"
            a, b, links = mine.values, theirs.values, [f"quality-report:{mine.id}", f"quality-report:{theirs.id}"]
        else:
            basis = (
                f"on held-out metrics (fewer than {needed} labelled rows of each in {environment} {theirs.window}: "
                f"{mine.labelled} of v{number}'s, {theirs.labelled} of v{champion.number}'s; "
                f"metrics {source} / {champion.source})"
            )
            a = {k: float(v) for k, v in held_out.items() if k in SUPPORTED_METRICS and _number(v)}
            b = {k: float(v) for k, v in champion.metrics.items() if k in SUPPORTED_METRICS and _number(v)}
            links = [f"quality-report:{mine.id}", f"quality-report:{theirs.id}"]
        if settings.metrics is not None:
            a = {k: v for k, v in a.items() if k in settings.metrics}
        shared = sorted(a.keys() & b.keys())
        if not shared:
            return Verdict(
                passed=False,
                summary=f"no metric of v{number} to compare with champion v{champion.number} {basis}",
                reports=links,
            )
        drops = {name: relative_drop(name, a[name], b[name]) for name in shared}
        worse = [name for name in shared if drops[name] > tolerance]
        figures = ", ".join(f"{name} {a[name]:.4f} vs {b[name]:.4f}" for name in shared)
        if worse:
            summary = (
                f"v{number} is worse than champion v{champion.number} beyond {tolerance:.0%} "
                f"in {', '.join(worse)} {basis}: {figures}"
            )
        else:
            summary = (
                f"v{number} is not worse than champion v{champion.number} beyond {tolerance:.0%} {basis}: {figures}"
            )
        return Verdict(
            passed=not worse,
            summary=summary,
            reports=links,
            details={"candidate": a, "champion": b, "drops": drops, "tolerance": tolerance},
        )


class _Held:
    """The champion's figures, read inside the session."""

    def __init__(self, row: VersionRow) -> None:
        self.number = row.number
        self.metrics = dict(row.metrics or {})
        self.source = row.metrics_source


def _drift_figures(report: DriftReport) -> tuple[int, float]:
    scores = [feature.score for feature in report.features if feature.statistic is not None]
    return len(report.drifted_features), statistics.fmean(scores) if scores else 0.0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def add_evidence(
    session: Session,
    actor: Actor,
    project: str,
    number: int,
    digest: str,
    environment: str,
    verdicts: dict[str, Verdict],
) -> list[GateEvidenceRow]:
    """Add one evidence row per verdict of version ``number`` (``digest``) for ``environment`` to ``session``
    (flushed, so the rows have ids); the caller audits it in the same transaction."""
    now = datetime.now(UTC)
    rows = [
        GateEvidenceRow(
            project=project,
            version=number,
            digest=digest,
            environment=environment,
            check=check,
            passed=verdict.passed,
            summary=verdict.summary,
            reports=verdict.reports,
            details=verdict.details,
            recorded_by=actor.name,
            recorded_at=now,
        )
        for check, verdict in verdicts.items()
    ]
    session.add_all(rows)
    session.flush()
    return rows
