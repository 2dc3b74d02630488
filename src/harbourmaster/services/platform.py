"""The platform: every service wired to one metadata database and one artifact store."""

from __future__ import annotations

from functools import cached_property

from harbourmaster.config import Settings
from harbourmaster.services.access import AccessService
from harbourmaster.services.alerts import AlertService
from harbourmaster.services.approvals import ApprovalService
from harbourmaster.services.audit import AuditService
from harbourmaster.services.cases import CaseService
from harbourmaster.services.dataplane import DataPlaneService
from harbourmaster.services.deployment_status import DeploymentStatusService
from harbourmaster.services.deployments import DeploymentService
from harbourmaster.services.drift import DriftService
from harbourmaster.services.drift_view import DriftViewService
from harbourmaster.services.duties import DutyService
from harbourmaster.services.environments import EnvironmentService
from harbourmaster.services.evidence import EvidenceService
from harbourmaster.services.feedback import FeedbackService
from harbourmaster.services.history import HistoryService
from harbourmaster.services.identity import IdentityService
from harbourmaster.services.loadtest import LoadTestService
from harbourmaster.services.log_maintenance import PredictionLogService
from harbourmaster.services.monitoring import MonitoringService
from harbourmaster.services.notifiers import NotifierService
from harbourmaster.services.overview import OverviewService
from harbourmaster.services.pipeline_runs import PipelineRunMonitor
from harbourmaster.services.prediction_reads import PredictionReadService
from harbourmaster.services.promotions import PromotionService
from harbourmaster.services.quality import QualityService
from harbourmaster.services.registry import RegistryService
from harbourmaster.services.replicas import ReplicaService
from harbourmaster.services.retraining import RetrainService
from harbourmaster.services.rollouts import RolloutService
from harbourmaster.services.runs import RunService
from harbourmaster.services.scoring import ScoringService
from harbourmaster.services.sla import SlaMonitor, SlaService
from harbourmaster.services.training import TrainingService
from harbourmaster.store.artifacts import ArtifactStore
from harbourmaster.store.db import Database
from harbourmaster.store.private import private_dir


class Platform:
    """Entry point of the service layer; faces (CLI, SDK, API) hold one of these."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        private_dir(self.settings.home)
        self.db = Database(self.settings.database_url)
        self.artifacts = ArtifactStore(self.settings.artifacts_url, self.settings.storage_options)
        self.environments.ensure_defaults()

    @cached_property
    def registry(self) -> RegistryService:
        return RegistryService(self)

    @cached_property
    def access(self) -> AccessService:
        return AccessService(self)

    @cached_property
    def audit(self) -> AuditService:
        return AuditService(self)

    @cached_property
    def environments(self) -> EnvironmentService:
        return EnvironmentService(self)

    @cached_property
    def deployments(self) -> DeploymentService:
        return DeploymentService(self)

    @cached_property
    def identity(self) -> IdentityService:
        return IdentityService(self)

    @cached_property
    def duties(self) -> DutyService:
        return DutyService(self)

    @cached_property
    def approvals(self) -> ApprovalService:
        return ApprovalService(self)

    @cached_property
    def promotions(self) -> PromotionService:
        return PromotionService(self)

    @cached_property
    def history(self) -> HistoryService:
        return HistoryService(self)

    @cached_property
    def training(self) -> TrainingService:
        return TrainingService(self)

    @cached_property
    def replicas(self) -> ReplicaService:
        return ReplicaService(self)

    @cached_property
    def runs(self) -> RunService:
        return RunService(self)

    @cached_property
    def scoring(self) -> ScoringService:
        return ScoringService(self)

    @cached_property
    def feedback(self) -> FeedbackService:
        return FeedbackService(self)

    @cached_property
    def dataplane(self) -> DataPlaneService:
        return DataPlaneService(self)

    @cached_property
    def predictions(self) -> PredictionReadService:
        return PredictionReadService(self)

    @cached_property
    def prediction_log(self) -> PredictionLogService:
        return PredictionLogService(self)

    @cached_property
    def drift(self) -> DriftService:
        return DriftService(self)

    @cached_property
    def evidence(self) -> EvidenceService:
        return EvidenceService(self)

    @cached_property
    def loadtest(self) -> LoadTestService:
        return LoadTestService(self)

    @cached_property
    def quality(self) -> QualityService:
        return QualityService(self)

    @cached_property
    def alerts(self) -> AlertService:
        return AlertService(self)

    @cached_property
    def notifiers(self) -> NotifierService:
        return NotifierService(self)

    @cached_property
    def sla(self) -> SlaService:
        return SlaService(self)

    @cached_property
    def monitoring(self) -> MonitoringService:
        service = MonitoringService(self)
        service.register(PipelineRunMonitor())
        service.register(SlaMonitor())
        return service

    @cached_property
    def retraining(self) -> RetrainService:
        return RetrainService(self)

    @cached_property
    def rollouts(self) -> RolloutService:
        return RolloutService(self)

    @cached_property
    def overview(self) -> OverviewService:
        return OverviewService(self)

    @cached_property
    def cases(self) -> CaseService:
        return CaseService(self)

    @cached_property
    def deployment_status(self) -> DeploymentStatusService:
        return DeploymentStatusService(self)

    @cached_property
    def drift_view(self) -> DriftViewService:
        return DriftViewService(self)

    def close(self) -> None:
        self.db.dispose()
