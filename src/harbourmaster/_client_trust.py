"""The SDK's review and trust methods (mixed into ``harbourmaster.Client``): inspect a version
without loading it, and the admin-set types a project's model files may contain."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harbourmaster.bundle.formats import TrustPolicy
from harbourmaster.errors import NotFoundError
from harbourmaster.schemas import ProjectTrust, VersionInspection

if TYPE_CHECKING:
    from harbourmaster.client import _Remote
    from harbourmaster.config import Settings
    from harbourmaster.services.actors import Actor
    from harbourmaster.services.platform import Platform

VersionRef = int | str


class TrustMethods:
    """Review a version before anyone loads it; trust types for a project (admins)."""

    _remote: _Remote | None
    _platform: Platform | None
    actor: Actor
    settings: Settings

    def inspect(self, project: str, version: VersionRef = "latest", *, file: str | None = None) -> VersionInspection:
        """Manifest, schemas, code listing (and one file's source), metrics, lineage and the types
        the model file names. Executes nothing: no model is loaded, no project module imported."""
        if self._remote:
            params: dict[str, Any] = {"file": file} if file else {}
            path = f"/projects/{project}/versions/{version}/inspect"
            return VersionInspection.model_validate(self._remote.get(path, params=params))
        return self._platform.registry.inspect_version(self.actor, project, version, file)

    def trusted_types(self, project: str) -> ProjectTrust:
        """The types the project's model files may contain beyond the platform's own list."""
        if self._remote:
            return ProjectTrust.model_validate(self._remote.get(f"/projects/{project}/trust"))
        return self._platform.registry.project_trust(self.actor, project)

    def trust(self, project: str, *, add: list[str] | None = None, remove: list[str] | None = None) -> ProjectTrust:
        """Admins: add or remove exact type names the project's model files may contain (audited)."""
        if self._remote:
            body = {"add": list(add or []), "remove": list(remove or [])}
            return ProjectTrust.model_validate(self._remote.post(f"/projects/{project}/trust", json=body))
        return self._platform.registry.set_trusted_types(self.actor, project, list(add or []), list(remove or []))

    def platform_settings(self, project: str) -> tuple[Settings, list[str]]:
        """These settings with the platform's trusted types, and the project's admin-set types.

        What registration and the replicas trust, so that a bundle built or loaded here is checked the same
        way (against a server, ``HARBOURMASTER_TRUSTED_TYPES`` is the control plane's, not this machine's).
        A project that does not exist yet has no types of its own.
        """
        try:
            trust = self.trusted_types(project)
        except NotFoundError:
            return self.settings, []
        return self._with_platform_types(trust), list(trust.trusted_types)

    def build_policy(self, project: str, declared: Sequence[str] = ()) -> TrustPolicy:
        """The policy a new bundle of ``project`` is checked against before it is sent to the registry.

        Against a server, a project it does not know yet has no trust record to read the control plane's
        list from: then only the names never loaded are refused here, and registration (which has the list)
        decides the rest, naming any refused type and the command that trusts it.
        """
        try:
            trust = self.trusted_types(project)
        except NotFoundError:
            if self._remote is not None:
                return TrustPolicy(trusted_type_prefixes=("",))  # every name, except the forbidden ones
            return TrustPolicy.from_settings(self.settings, extra_trusted_types=declared)
        extra = [*declared, *trust.trusted_types]
        return TrustPolicy.from_settings(self._with_platform_types(trust), extra_trusted_types=extra)

    def _with_platform_types(self, trust: ProjectTrust) -> Settings:
        prefixes = tuple(dict.fromkeys([*self.settings.trusted_type_prefixes, *trust.platform_trusted_types]))
        return dataclasses.replace(self.settings, trusted_type_prefixes=prefixes)
