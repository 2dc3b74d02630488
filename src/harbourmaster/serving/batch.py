"""Batch scoring as a data-plane job: ``harbourmaster score --url`` with a replica credential.

The scorer reads the environment's desired state and the champion's bundle (verified
against its digest) from the control plane, scores the file here with the same code
as embedded scoring, and has the control plane record the run. It never holds a
database or artifact-store credential.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from harbourmaster.core.progress import SILENT, Progress
from harbourmaster.core.run_checks import parse_run_checks
from harbourmaster.core.run_steps import RunTrace
from harbourmaster.errors import InvalidInputError
from harbourmaster.schemas import RunInfo
from harbourmaster.services.scoring import failure_message, score_file
from harbourmaster.serving.control_plane import RemoteControlPlane


def score_remote(
    control_plane: RemoteControlPlane, project: str, input_path: Path, output_path: Path, progress: Progress = SILENT
) -> RunInfo:
    """Score ``input_path`` with the champion of ``project`` in the control plane's environment."""
    state = control_plane.desired_state()
    deployment = next((d for d in state.deployments if d.project == project), None)
    if deployment is None or deployment.champion is None:
        raise InvalidInputError(
            f"{project} has no champion in {control_plane.environment}",
            f"deploy a version first: harbourmaster deploy {project} VERSION --env {control_plane.environment}",
        )
    champion = deployment.champion
    started_at = datetime.now(UTC)
    rows_in = rows_out = None
    trace = RunTrace()
    try:
        progress.stage(f"loading v{champion.number}")
        with trace.step("load") as step:
            bundle = control_plane.load_bundle(project, champion.digest, state.trusted_types.get(project, ()))
            step.note = f"v{champion.number}"
        checks = parse_run_checks(state.run_checks.get(project))
        rows_in, rows_out = score_file(
            bundle,
            champion.number,
            deployment.options,
            input_path,
            output_path,
            progress,
            checks=checks,
            trace=trace,
        )
        status, error = "succeeded", None
    except Exception as exc:
        status, error = "failed", failure_message(exc)
        if rows_in is None and trace.validation is not None:
            rows_in = trace.validation.rows
    outcome = {
        "version": champion.number,
        "status": status,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "input": str(input_path),
        "output": str(output_path),
        "error": error,
        "started_at": started_at.isoformat(),
        "steps": trace.dump_steps(),
        "validation_report": trace.dump_validation(),
    }
    return RunInfo.model_validate(control_plane.record_score_run(project, outcome))
