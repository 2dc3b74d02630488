"""The Python SDK. ``Client()`` works on the embedded store; ``Client(url=...)``
talks to a ``harbourmaster server``. Both return the same records."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from harbourmaster._client_cases import CaseMethods
from harbourmaster._client_lifecycle import LifecycleMethods
from harbourmaster._client_monitoring import MonitoringMethods
from harbourmaster._client_operations import DeploymentMethods, GovernanceMethods
from harbourmaster._client_rollouts import RolloutMethods
from harbourmaster._client_trust import TrustMethods
from harbourmaster.bundle.builder import Bundle
from harbourmaster.bundle.code import (
    code_modules,
    code_revision,
    project_imports,
    snapshot_project_code,
)
from harbourmaster.bundle.loaded import LoadedBundle
from harbourmaster.bundle.manifest import BundleManifest
from harbourmaster.bundle.storage import load_bundle, save_bundle
from harbourmaster.config import Settings
from harbourmaster.core.data_checks import check_training_data
from harbourmaster.core.data_checks import describe as describe_problems
from harbourmaster.core.declared_schema import declared_target, parse_declarations
from harbourmaster.core.drift import DriftReport
from harbourmaster.core.loadtest import DEFAULT_DURATION, DEFAULT_FLOOR, DEFAULT_HEADROOM
from harbourmaster.core.metrics import evaluate, validate_metric_names
from harbourmaster.core.progress import SILENT, Progress
from harbourmaster.core.quality import QualityReport
from harbourmaster.core.run_steps import RunTrace
from harbourmaster.errors import (
    ERRORS_BY_CODE,
    ConnectionFailedError,
    DataProblemError,
    HarbourmasterError,
    InvalidInputError,
)
from harbourmaster.schemas import (
    ProjectInfo,
    ReplicaInfo,
    RunInfo,
    TrainResult,
    VersionDetail,
    VersionDiff,
    VersionSummary,
)
from harbourmaster.services import sandbox
from harbourmaster.services.actors import Actor
from harbourmaster.services.dataplane import IssuedReplicaCredential, ReplicaCredentialInfo
from harbourmaster.services.drift import DriftResultInfo
from harbourmaster.services.evidence import EvidenceInfo
from harbourmaster.services.packaging import REFERENCE_SAMPLE_ROWS, describe_params, package_version
from harbourmaster.services.registry import check_project_name
from harbourmaster.services.training import build_training_bundle, project_settings_of, read_project_spec
from harbourmaster.store.artifacts import ArtifactStore
from harbourmaster.store.data_sources import DataSource

if TYPE_CHECKING:
    import pandas as pd

VersionRef = int | str


class Client(
    DeploymentMethods, GovernanceMethods, TrustMethods, MonitoringMethods, LifecycleMethods, RolloutMethods, CaseMethods
):
    """Register, inspect and load versions, embedded or against a server.

    >>> client = Client()                                   # ./.harbourmaster
    >>> client = Client(url="http://127.0.0.1:8700", token="hm_...")
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        settings: Settings | None = None,
        timeout: float = 60.0,
    ) -> None:
        """Without ``url``: embedded mode, one person's sandbox (see ``services.sandbox``).

        Embedded mode opens the store at ``settings`` (``HARBOURMASTER_HOME``)
        directly as its local owner. It never reaches a guarded environment such
        as prod, and a shared store (one with users) is refused unless
        ``HARBOURMASTER_BREAK_GLASS`` gives an (audited) reason. With ``url``,
        everything goes through the control plane as the user of ``token``.
        """
        self.settings = settings or Settings.from_env()
        self.url = url.rstrip("/") if url else None
        if self.url:
            self._remote: _Remote | None = _Remote(self.url, token or os.environ.get("HARBOURMASTER_TOKEN"), timeout)
            self._platform = None
            self.actor = Actor.local_owner()  # replaced by the token's user on first need (_identify_remote_actor)
        else:
            self._remote = None
            self._platform, self.actor = sandbox.open_embedded(self.settings, break_glass=sandbox.break_glass_reason())

    @property
    def embedded(self) -> bool:
        """True in embedded mode (the local store, no server)."""
        return self._remote is None

    # -- reading ----------------------------------------------------------------

    def projects(self) -> list[ProjectInfo]:
        if self._remote:
            return [ProjectInfo.model_validate(item) for item in self._remote.get("/projects")]
        return self._platform.registry.list_projects(self.actor)

    def project(self, name: str) -> ProjectInfo:
        if self._remote:
            return ProjectInfo.model_validate(self._remote.get(f"/projects/{name}"))
        return self._platform.registry.get_project(self.actor, name)

    def versions(self, project: str) -> list[VersionSummary]:
        if self._remote:
            items = self._remote.get(f"/projects/{project}/versions")
            return [VersionSummary.model_validate(item) for item in items]
        return self._platform.registry.list_versions(self.actor, project)

    def version(self, project: str, version: VersionRef = "latest") -> VersionDetail:
        if self._remote:
            return VersionDetail.model_validate(self._remote.get(f"/projects/{project}/versions/{version}"))
        return self._platform.registry.get_version(self.actor, project, version)

    def diff(self, project: str, old: VersionRef, new: VersionRef) -> VersionDiff:
        if self._remote:
            return VersionDiff.model_validate(
                self._remote.get(f"/projects/{project}/diff", params={"old": old, "new": new})
            )
        return self._platform.registry.diff_versions(self.actor, project, old, new)

    def runs(self, project: str | None = None, limit: int = 50) -> list[RunInfo]:
        if self._remote:
            params: dict[str, Any] = {"limit": limit}
            if project:
                params["project"] = project
            return [RunInfo.model_validate(item) for item in self._remote.get("/runs", params=params)]
        return self._platform.training.list_runs(self.actor, project, limit)

    def run(self, run_id: int) -> RunInfo:
        """One run's whole record: its steps (rows in and out, durations), the validation findings, the error."""
        if self._remote:
            return RunInfo.model_validate(self._remote.get(f"/runs/{int(run_id)}"))
        return self._platform.runs.get(self.actor, run_id)

    def load(self, project: str, version: VersionRef = "latest") -> LoadedBundle:
        """The version's fitted pipeline, verified against its digest, ready to predict."""
        if not self._remote:
            return self._platform.registry.load_version(self.actor, project, version)
        detail = self.version(project, version)
        manifest = BundleManifest.model_validate(self._remote.get(f"/bundles/{detail.digest}/manifest"))
        files = {path: self._remote.get_bytes(f"/bundles/{detail.digest}/files/{path}") for path in manifest.files}
        # Keep a local, verified copy, then load through the same checks as embedded mode.
        cache = ArtifactStore(str(self.settings.cache_dir / "remote-artifacts"))
        save_bundle(cache, Bundle(manifest=manifest, files=files))
        settings, trusted = self.platform_settings(project)  # the control plane's and the project's types
        return load_bundle(cache, detail.digest, settings, trusted, code_modules=detail.code_modules or None)

    # -- writing ----------------------------------------------------------------

    def create_project(self, name: str, description: str = "") -> ProjectInfo:
        if self._remote:
            return ProjectInfo.model_validate(
                self._remote.post("/projects", json={"name": name, "description": description})
            )
        return self._platform.registry.create_project(self.actor, name, description)

    def tag(self, project: str, version: VersionRef, key: str, value: str = "") -> VersionDetail:
        if self._remote:
            return VersionDetail.model_validate(
                self._remote.request(
                    "PUT",
                    f"/projects/{project}/versions/{version}/tags/{key}",
                    json={"value": value},
                )
            )
        return self._platform.registry.set_tag(self.actor, project, version, key, value)

    def untag(self, project: str, version: VersionRef, key: str) -> VersionDetail:
        if self._remote:
            return VersionDetail.model_validate(
                self._remote.request("DELETE", f"/projects/{project}/versions/{version}/tags/{key}")
            )
        return self._platform.registry.delete_tag(self.actor, project, version, key)

    def train(
        self, project_dir: str | Path, *, data: DataSource | None = None, progress: Progress = SILENT
    ) -> TrainResult:
        """Run a project's training pipeline and register the new version.

        Embedded, the run is recorded with its outcome and its metrics are
        ``computed`` (the platform drew the held-out split). Against a server the
        pipeline runs here (where the project and its data are) and the bundle
        is uploaded with a summary of the run; its metrics are then ``reported``,
        since the control plane cannot recompute them without running the code.
        """
        if not self._remote:
            return self._platform.training.train(self.actor, Path(project_dir), data=data, progress=progress)
        project_dir = Path(project_dir).absolute()
        spec = read_project_spec(project_dir)
        try:
            parent = self.project(spec.project.name).latest_version
        except HarbourmasterError:
            parent = None
        self._identify_remote_actor()
        started = time.monotonic()
        previous = self.version(spec.project.name, parent).input_schema if parent is not None else None
        trace = RunTrace()
        bundle, summary = build_training_bundle(
            self.actor,
            project_dir,
            spec,
            data=data,
            parent_version=parent,
            settings=self.settings,
            policy=self.build_policy(spec.project.name, spec.serialization.trusted_types),
            progress=progress,
            previous_schema=previous,
            trace=trace,
        )
        summary["duration_seconds"] = round(time.monotonic() - started, 3)  # the run is recorded with it
        summary["steps"], summary["validation"] = trace.dump_steps(), trace.dump_validation()
        summary["project_settings"] = project_settings_of(spec)
        progress.stage("uploading the version")
        self.create_project(spec.project.name, spec.project.description)
        version = self._upload(spec.project.name, bundle, spec.project.description, summary)
        run = next(run for run in self.runs(spec.project.name) if run.version_number == version.number)
        return TrainResult(run=run, version=version)

    def register(
        self,
        project: str,
        pipeline: Any,
        training_data: pd.DataFrame,
        target: str | pd.Series | None = None,
        metrics: dict[str, float] | Sequence[str] | None = None,
        *,
        eval_data: pd.DataFrame | None = None,
        format: str = "skops",
        code_dir: str | Path | None = None,
        trust_pickle: bool = False,
        description: str = "",
        parameters: dict[str, Any] | None = None,
        sensitive: Sequence[str] = (),
        schema: Mapping[str, Mapping[str, Any]] | None = None,
        reference_sample_rows: int = REFERENCE_SAMPLE_ROWS,
    ) -> VersionDetail:
        """Register a pipeline fitted in a notebook as the project's next version.

        ``training_data`` holds the raw features (and the target column when
        ``target`` names one). ``metrics`` are either values you computed or
        metric names evaluated here on ``eval_data`` (which includes the target).
        Either way the platform records them as ``reported`` (it did not compute
        them): metric gates judge only versions trained by the platform
        (``harbourmaster train``), unless an environment allows reported metrics.
        Custom transformer classes must live in modules under ``code_dir`` so
        that the version loads in another process. Columns named in ``sensitive`` are
        profiled without their values (counts and null rates only). ``schema`` declares
        what inference would guess wrong, as ``[schema]`` does in a project file:
        ``{"order_id": {"role": "id"}, "day": {"type": "datetime", "optional": True}}``
        (keys: type, role, min, max, categories, nullable, optional; see docs/project-file.md).
        A column declared ``role="target"`` is the target when ``target`` is not given. Up to
        ``reference_sample_rows`` training rows (without the sensitive columns) are kept in the bundle
        for exact drift tests.
        """
        import pandas as pd

        declarations = parse_declarations(schema)
        check_project_name(project)
        if not isinstance(training_data, pd.DataFrame):
            raise InvalidInputError(
                f"training_data is a {type(training_data).__name__}, not a pandas DataFrame",
                "pass the DataFrame the pipeline was fitted on",
            )
        self._identify_remote_actor()
        named_target = declared_target(declarations)
        if target is None:
            target = named_target
        elif named_target is not None and named_target != (given := target if isinstance(target, str) else target.name):
            raise InvalidInputError(
                f"schema declares {named_target!r} the target but target is {given!r}",
                "name one target: drop role='target' from schema, or pass the same column as target",
            )
        if isinstance(target, str) and target in training_data.columns:
            problems = check_training_data(training_data, target, declarations)
            if problems:
                raise DataProblemError(**describe_problems(problems, "training_data"))
        features, target_series, target_name = _split_target(training_data, target)
        metric_values, evaluation_rows = self._metric_values(pipeline, metrics, eval_data, target_name)
        code_files: dict[str, bytes] = {}
        lineage: dict[str, Any] = {"source": "notebook", "target": target_name}
        if metric_values:  # evaluated here, by the registrant: the platform records them as reported
            lineage["evaluation"] = {"metrics": sorted(metric_values), "rows": evaluation_rows}
        if parameters:
            lineage["parameters"] = describe_params(parameters)  # objects named, never repr with an address
        try:
            lineage["parent_version"] = self.project(project).latest_version
        except HarbourmasterError:
            lineage["parent_version"] = None
        if code_dir is not None:
            code_files = snapshot_project_code(Path(code_dir))
            lineage["code"] = code_revision(Path(code_dir), code_files)
        bundle_args = {
            "features": features,
            "target": target_series,
            "metrics": metric_values,
            "lineage": lineage,
            "created_by": self.actor.name,
            "format": format,
            "code_files": code_files,
            "trusted_pickle": trust_pickle,
            "sensitive": list(sensitive),
            "reference_sample_rows": reference_sample_rows,
            "policy": self.build_policy(project),
            "project": project,
            "schema": declarations,
        }
        if code_dir is not None:
            with project_imports(Path(code_dir), code_modules(code_files)):
                bundle = package_version(pipeline, **bundle_args)
        else:
            bundle = package_version(pipeline, **bundle_args)
        if self._remote:
            return self._upload(project, bundle, description, None)
        return self._platform.registry.register_bundle(self.actor, project, bundle, description)

    # -- the data plane: replicas, the prediction log, replica credentials -------

    def replicas(self, environment: str | None = None, include_stopped: bool = False) -> list[ReplicaInfo]:
        if self._remote:
            params: dict[str, Any] = {"include_stopped": include_stopped}
            if environment:
                params["environment"] = environment
            return [ReplicaInfo.model_validate(item) for item in self._remote.get("/replicas", params=params)]
        return self._platform.replicas.list(self.actor, environment, include_stopped=include_stopped)

    def predictions(self, project: str, environment: str, limit: int = 20) -> dict[str, Any]:
        """The newest ``limit`` rows of the prediction log (``rows``) and the total ``count``."""
        if self._remote:
            return self._remote.get(f"/predictions/{project}/{environment}", params={"limit": limit})
        return self._platform.replicas.predictions(self.actor, project, environment, limit)

    def drift(
        self,
        project: str,
        environment: str,
        window: str | None = None,
        options: dict[str, Any] | None = None,
        reference_version: int | None = None,
    ) -> DriftReport:
        """Compute and store the drift report of a deployment (``window``: N rows, 30m/6h/1d, or A..B;
        ``options``: drift settings for this report, e.g. ``{"features": {"age": {"method": "psi"}}}``;
        ``reference_version``: measure the window against that version's reference, not the champion's)."""
        if self._remote:
            body = {"window": window, "options": options or {}, "reference_version": reference_version}
            return DriftReport.model_validate(self._remote.post(f"/drift/{project}/{environment}", json=body))
        return self._platform.drift.report(
            self.actor, project, environment, window=window, options=options, reference_version=reference_version
        )

    def drift_history(
        self, project: str, environment: str, feature: str | None = None, limit: int = 1000
    ) -> list[DriftResultInfo]:
        """Stored drift results of a deployment, newest first (``feature="__dataset__"``: the verdicts)."""
        if self._remote:
            params: dict[str, Any] = {"limit": limit, **({"feature": feature} if feature else {})}
            items = self._remote.get(f"/drift/{project}/{environment}/history", params=params)
            return [DriftResultInfo.model_validate(item) for item in items]
        return self._platform.drift.history(self.actor, project, environment, feature=feature, limit=limit)

    def quality(
        self, project: str, environment: str, window: str | None = None, version: int | None = None
    ) -> QualityReport:
        """Compute and store the model quality of a deployment: its window's predictions joined to their
        ground truth, against the held-out metrics (``version``: a challenger's rows instead of the champion's)."""
        if self._remote:
            body = {"window": window, "version": version}
            return QualityReport.model_validate(self._remote.post(f"/quality/{project}/{environment}", json=body))
        return self._platform.quality.report(self.actor, project, environment, window=window, version=version)

    def quality_history(self, project: str, environment: str, limit: int = 100) -> list[QualityReport]:
        """Stored quality reports of a deployment, newest first."""
        if self._remote:
            items = self._remote.get(f"/quality/{project}/{environment}/history", params={"limit": limit})
            return [QualityReport.model_validate(item) for item in items]
        return self._platform.quality.history(self.actor, project, environment, limit=limit)

    def record_evidence(
        self,
        project: str,
        version: int | str,
        environment: str,
        checks: list[str] | None = None,
        window: str | None = None,
    ) -> list[EvidenceInfo]:
        """Compute and store the evidence ``checks`` (``drift``, ``quality``; default both) of a version
        for promotion into ``environment``, against its champion there (see docs/monitoring.md)."""
        if self._remote:
            body = {"checks": checks, "window": window}
            items = self._remote.post(f"/evidence/{project}/{version}/{environment}", json=body)
            return [EvidenceInfo.model_validate(item) for item in items]
        return self._platform.evidence.record(self.actor, project, version, environment, checks=checks, window=window)

    def load_test(
        self,
        project: str,
        version: int | str,
        environment: str,
        *,
        rate: float | None = None,
        duration: float = DEFAULT_DURATION,
        headroom: float = DEFAULT_HEADROOM,
        floor: float = DEFAULT_FLOOR,
        connections: int | None = None,
        to: str | None = None,
    ) -> EvidenceInfo:
        """Load-test a version serving as champion on a replica of ``environment`` at a fixed open-loop rate
        (default: production's peak x ``headroom``, at least ``floor``), judged against the SLA of ``to``
        (default: the environment after ``environment``), and store the ``loadtest`` evidence for promotion
        into ``to`` (see docs/monitoring.md). Lasts about ``duration`` seconds."""
        options: dict[str, Any] = {
            "to": to,
            "rate": rate,
            "duration": duration,
            "headroom": headroom,
            "floor": floor,
            "connections": connections,
        }
        if self._remote:
            item = self._remote.post(
                f"/loadtest/{project}/{version}/{environment}", json=options, timeout=duration + 120.0
            )
            return EvidenceInfo.model_validate(item)
        return self._platform.loadtest.run(self.actor, project, version, environment, **options)

    def evidence(
        self, project: str, version: int | str | None = None, environment: str | None = None
    ) -> list[EvidenceInfo]:
        """Stored evidence of a project (of one version, for one environment), newest first."""
        if self._remote:
            params = {k: v for k, v in (("version", version), ("environment", environment)) if v is not None}
            return [
                EvidenceInfo.model_validate(item) for item in self._remote.get(f"/evidence/{project}", params=params)
            ]
        return self._platform.evidence.list(self.actor, project, version=version, environment=environment)

    def create_replica_credential(
        self, environment: str, name: str = "replica", expires_in_days: float | None = None
    ) -> IssuedReplicaCredential:
        """A token for the replicas (and batch scorers) of one environment; shown only here (admins)."""
        if self._remote:
            body = {"environment": environment, "name": name, "expires_in_days": expires_in_days}
            raw = self._remote.post("/replica-credentials", json=body)
            return IssuedReplicaCredential(
                raw["id"], raw["environment"], raw["name"], raw["token"], _datetime(raw["expires_at"])
            )
        lifetime = timedelta(days=expires_in_days) if expires_in_days else None
        return self._platform.dataplane.create_credential(self.actor, environment, name, lifetime)

    def replica_credentials(self, environment: str | None = None) -> list[ReplicaCredentialInfo]:
        if self._remote:
            params = {"environment": environment} if environment else {}
            items = self._remote.get("/replica-credentials", params=params)
            return [ReplicaCredentialInfo.model_validate(item) for item in items]
        return self._platform.dataplane.list_credentials(self.actor, environment)

    def revoke_replica_credential(self, credential_id: int) -> ReplicaCredentialInfo:
        if self._remote:
            return ReplicaCredentialInfo.model_validate(
                self._remote.request("DELETE", f"/replica-credentials/{credential_id}")
            )
        return self._platform.dataplane.revoke_credential(self.actor, credential_id)

    def close(self) -> None:
        if self._remote:
            self._remote.close()
        elif self._platform:
            self._platform.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------

    def _metric_values(
        self,
        pipeline: Any,
        metrics: dict[str, float] | Sequence[str] | None,
        eval_data: pd.DataFrame | None,
        target_name: str | None,
    ) -> tuple[dict[str, float], int | None]:
        """The metric values and the number of rows they were evaluated on here (None: typed in)."""
        if metrics is None:
            return {}, None
        if isinstance(metrics, dict):
            try:
                return {str(name): float(value) for name, value in metrics.items()}, None
            except (TypeError, ValueError) as exc:
                raise InvalidInputError("metrics must map names to numbers", "e.g. metrics={'accuracy': 0.97}") from exc
        names = validate_metric_names([metrics] if isinstance(metrics, str) else list(metrics))
        if eval_data is None or target_name is None:
            raise InvalidInputError(
                "metric names need held-out data to be computed on",
                "pass eval_data=<held-out frame with the target column> and target=<column>",
            )
        eval_features, eval_target, _ = _split_target(eval_data, target_name)
        return evaluate(pipeline, eval_features, eval_target, names), len(eval_features)

    def _identify_remote_actor(self) -> None:
        """Against a server, lineage names the token's user (as the server's records do)."""
        if self._remote and self.actor.kind == "local-owner":
            me = self._remote.get("/whoami")
            self.actor = Actor(name=me["name"], roles=frozenset(me["roles"]))

    def _upload(self, project: str, bundle: Bundle, description: str, run: dict[str, Any] | None) -> VersionDetail:
        assert self._remote is not None
        data = {"manifest": bundle.manifest.model_dump_json(), "description": description}
        if run is not None:
            run = dict(run)
            settings = run.pop("project_settings", None)
            if settings is not None:
                data["project_settings"] = json.dumps(settings)
                data["project_description"] = description
            data["run"] = json.dumps(run)
        files = [(path, (path, content, "application/octet-stream")) for path, content in bundle.files.items()]
        return VersionDetail.model_validate(self._remote.post(f"/projects/{project}/versions", data=data, files=files))


def _datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _split_target(
    frame: pd.DataFrame, target: str | pd.Series | None
) -> tuple[pd.DataFrame, pd.Series | None, str | None]:
    import pandas as pd

    if target is None:
        return frame, None, None
    if isinstance(target, pd.Series):
        return frame, target, str(target.name) if target.name is not None else None
    if target not in frame.columns:
        raise InvalidInputError(
            f"target column {target!r} is not in the data (columns: {', '.join(map(str, frame.columns[:20]))})",
            "pass the name of the column the model predicts",
        )
    return frame.drop(columns=[target]), frame[target], target


class _Remote:
    """HTTP transport: JSON in and out, server errors back into their exception class."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=timeout)
        self.url = url

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def get_bytes(self, path: str, **kwargs: Any) -> bytes:
        return self._send("GET", path, **kwargs).content

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectionFailedError(
                f"cannot reach the Harbourmaster server at {self.url}: {exc}",
                "check the URL and that `harbourmaster server` is running",
            ) from exc
        if response.is_success and response.status_code != 202:
            return response  # 202: the step was parked for a second admin, answered as an error body
        try:
            error = response.json()["error"]
            cls = ERRORS_BY_CODE.get(error.get("code"), HarbourmasterError)
            exc = cls(error.get("message") or response.text, error.get("hint"))
        except (ValueError, KeyError, TypeError):
            exc = HarbourmasterError(f"server answered {response.status_code}: {response.text[:200]}")
        exc.http_status = response.status_code
        raise exc

    def close(self) -> None:
        self._http.close()
