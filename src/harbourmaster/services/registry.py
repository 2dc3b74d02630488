"""The registry: projects, numbered immutable versions, tags, and loading them back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from harbourmaster.bundle.builder import Bundle
from harbourmaster.bundle.loaded import LoadedBundle
from harbourmaster.bundle.storage import load_bundle, read_bundle_files, save_bundle
from harbourmaster.bundle.vetting import MAX_TRUSTED_TYPES, check_type_names, type_statuses, vet_bundle
from harbourmaster.bundle.warmup import warm_in_clean_process
from harbourmaster.core.digest import sha256_bytes
from harbourmaster.core.limits import check_text
from harbourmaster.core.permissions import Permission
from harbourmaster.core.project_spec import PROJECT_NAME_PATTERN
from harbourmaster.core.provenance import MetricsProvenance
from harbourmaster.core.schema import (
    InputSchema,
    OutputSchema,
    diff_input_schemas,
    diff_output_schemas,
)
from harbourmaster.core.version_diff import diff_metrics
from harbourmaster.errors import BundleIntegrityError, HarbourmasterError, InvalidInputError, NotFoundError
from harbourmaster.schemas import (
    CodeFile,
    FieldChange,
    ProjectInfo,
    ProjectTrust,
    ReferencedType,
    VersionDetail,
    VersionDiff,
    VersionInspection,
    VersionSummary,
)
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import ProjectRow, VersionRow, VersionTagRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

VersionRef = int | str
MAX_NUMBERING_ATTEMPTS = 20
# Project settings that decide what a model file may contain: never set by an upload.
TRUST_SETTINGS = frozenset({"trusted_types", "trust_pickle", "trusted_pickle", "code_modules"})


def check_project_name(name: str) -> str:
    if not PROJECT_NAME_PATTERN.fullmatch(name or ""):
        raise InvalidInputError(
            f"{name!r} is not a valid project name",
            "use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit",
        )
    return name


def _summary_fields(row: VersionRow) -> dict[str, Any]:
    return {
        "project": row.project.name,
        "number": row.number,
        "digest": row.digest,
        "format": row.format,
        "metrics": row.metrics,
        "metrics_source": row.metrics_source,
        "evaluation_rows": row.evaluation_rows,
        "description": row.description,
        "tags": {tag.key: tag.value for tag in row.tags},
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


def version_summary(row: VersionRow) -> VersionSummary:
    return VersionSummary(**_summary_fields(row))


def version_detail(row: VersionRow) -> VersionDetail:
    return VersionDetail(
        **_summary_fields(row),
        input_schema=row.input_schema,
        output_schema=row.output_schema,
        lineage=row.lineage,
        trusted_pickle=row.trusted_pickle,
        code_modules=row.code_modules or [],
    )


class RegistryService:
    """Projects and their versions. Versions are numbered 1, 2, 3 per project."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    # -- projects ---------------------------------------------------------------

    def create_project(self, actor: Actor, name: str, description: str = "") -> ProjectInfo:
        self._platform.access.require(actor, Permission.REGISTER, target=name)
        check_project_name(name)
        with self._platform.db.transaction() as session:
            existed = session.scalar(select(ProjectRow.id).where(ProjectRow.name == name)) is not None
            row = self._ensure_project(session, actor, name, description)
            if not existed:
                self._platform.audit.record(
                    session, actor, "project.create", name, after={"name": name, "description": description}
                )
            return self._project_info(session, row)

    def list_projects(self, actor: Actor) -> list[ProjectInfo]:
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            rows = session.scalars(select(ProjectRow).order_by(ProjectRow.name)).all()
            return [self._project_info(session, row) for row in rows]

    def get_project(self, actor: Actor, name: str) -> ProjectInfo:
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            return self._project_info(session, self.project_row(session, name))

    # -- versions ---------------------------------------------------------------

    def register_bundle(
        self,
        actor: Actor,
        project: str,
        bundle: Bundle,
        description: str = "",
        *,
        project_description: str | None = None,
        project_settings: dict[str, Any] | None = None,
        provenance: MetricsProvenance | None = None,
    ) -> VersionDetail:
        """Vet a bundle, store its files (content-addressed) and record it as the next version.

        The platform decides what the bundle may contain: its code modules are derived from
        its files, its format and trust flags are checked against the platform's settings, and
        a skops model file is scanned against the trusted types (nothing is loaded or imported).
        Every refusal is audited. Its metrics are ``reported`` unless a platform service that
        evaluated them itself says ``provenance`` (never taken from the wire: see
        ``core.provenance.MetricsProvenance``).
        """
        self._platform.access.require(actor, Permission.REGISTER, target=project)
        check_project_name(project)
        check_text(description, "version description")
        check_text(project_description, "project description")
        try:
            trust_keys = sorted(TRUST_SETTINGS & set(project_settings or {}))
            if trust_keys:
                raise InvalidInputError(
                    f"an upload cannot set {', '.join(trust_keys)}: what a model file may contain is "
                    "decided by the platform",
                    f"ask an admin to run: harbourmaster trust {project} --add-type TYPE",
                )
            verify_bundle(bundle)
            vetted = vet_bundle(bundle, self._platform.settings, self.project_trusted_types(project), project)
            # What no replica could load or answer with gets no number (in a clean child process).
            warm_in_clean_process(bundle, self._platform.settings, self.project_trusted_types(project), project)
        except HarbourmasterError as exc:
            self._platform.audit.record_alone(
                actor,
                "version.register",
                project,
                outcome="refused",
                details={"error": exc.message, "digest": _digest_or_none(bundle), "format": bundle.manifest.format},
            )
            raise
        save_bundle(self._platform.artifacts, bundle)
        manifest = bundle.manifest
        provenance = provenance or MetricsProvenance.reported(manifest.lineage)
        for _attempt in range(MAX_NUMBERING_ATTEMPTS):
            try:
                with self._platform.db.transaction() as session:
                    project_row = self._ensure_project(session, actor, project, project_description or "")
                    if project_settings is not None:
                        project_row.settings = {**project_row.settings, **project_settings}
                    latest = session.scalar(
                        select(func.max(VersionRow.number)).where(VersionRow.project_id == project_row.id)
                    )
                    row = VersionRow(
                        project=project_row,
                        number=(latest or 0) + 1,
                        digest=bundle.digest,
                        format=manifest.format,
                        trusted_pickle=vetted.trusted_pickle,
                        code_modules=list(vetted.code_modules),
                        input_schema=manifest.input_schema,
                        output_schema=manifest.output_schema,
                        metrics=manifest.metrics,
                        metrics_source=provenance.source,
                        evaluation_rows=provenance.rows,
                        lineage=manifest.lineage,
                        description=description,
                        created_by=actor.name,
                    )
                    session.add(row)
                    session.flush()
                    self._platform.audit.record(
                        session,
                        actor,
                        "version.register",
                        f"{project}:v{row.number}",
                        after={
                            "number": row.number,
                            "digest": row.digest,
                            "format": row.format,
                            "metrics": row.metrics,
                            "code_modules": row.code_modules,
                            "metrics_source": row.metrics_source,
                            "evaluation_rows": row.evaluation_rows,
                        },
                    )
                    return version_detail(row)
            except IntegrityError:
                continue  # another writer took this number (or created the project); retry
        raise InvalidInputError(
            f"could not number a new version of {project!r}: too many concurrent registrations",
            "retry the registration",
        )

    def list_versions(self, actor: Actor, project: str) -> list[VersionSummary]:
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            project_row = self.project_row(session, project)
            rows = session.scalars(
                select(VersionRow)
                .where(VersionRow.project_id == project_row.id)
                .options(selectinload(VersionRow.tags))
                .order_by(VersionRow.number)
            ).all()
            return [version_summary(row) for row in rows]

    def page_versions(
        self, actor: Actor, project: str, offset: int = 0, limit: int = 50
    ) -> tuple[list[VersionSummary], int]:
        """One page of a project's versions, newest first, and how many it has (for long lists)."""
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            project_row = self.project_row(session, project)
            total = session.scalar(select(func.count(VersionRow.id)).where(VersionRow.project_id == project_row.id))
            rows = session.scalars(
                select(VersionRow)
                .where(VersionRow.project_id == project_row.id)
                .options(selectinload(VersionRow.tags))
                .order_by(VersionRow.number.desc())
                .offset(max(0, offset))
                .limit(max(1, limit))
            ).all()
            return [version_summary(row) for row in rows], total or 0

    def get_version(self, actor: Actor, project: str, version: VersionRef) -> VersionDetail:
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            return version_detail(self.version_row(session, project, version))

    def diff_versions(self, actor: Actor, project: str, old: VersionRef, new: VersionRef) -> VersionDiff:
        before = self.get_version(actor, project, old)
        after = self.get_version(actor, project, new)
        lineage_changes = {
            key: FieldChange(before=before.lineage.get(key), after=after.lineage.get(key))
            for key in sorted(set(before.lineage) | set(after.lineage))
            if before.lineage.get(key) != after.lineage.get(key) and key not in {"created_at", "parent_version"}
        }
        return VersionDiff(
            project=project,
            old=before.number,
            new=after.number,
            input_changes=diff_input_schemas(
                InputSchema.model_validate(before.input_schema),
                InputSchema.model_validate(after.input_schema),
            ),
            output_changes=diff_output_schemas(
                OutputSchema.model_validate(before.output_schema),
                OutputSchema.model_validate(after.output_schema),
            ),
            metric_changes=diff_metrics(before.metrics, after.metrics),
            lineage_changes=lineage_changes,
        )

    def set_tag(self, actor: Actor, project: str, version: VersionRef, key: str, value: str = "") -> VersionDetail:
        self._platform.access.require(actor, Permission.REGISTER, target=project)
        if not key or len(key) > 128 or any(ch.isspace() for ch in key):
            raise InvalidInputError(f"tag key {key!r} is not valid", "use 1-128 characters without spaces")
        check_text(value, "tag value")
        with self._platform.db.transaction() as session:
            row = self.version_row(session, project, version)
            existing = next((tag for tag in row.tags if tag.key == key), None)
            before = {key: existing.value} if existing is not None else None
            if existing is None:
                row.tags.append(VersionTagRow(key=key, value=value, created_by=actor.name))
            else:
                existing.value = value
            session.flush()
            self._platform.audit.record(
                session, actor, "version.tag", f"{project}:v{row.number}", before=before, after={key: value}
            )
            return version_detail(row)

    def delete_tag(self, actor: Actor, project: str, version: VersionRef, key: str) -> VersionDetail:
        self._platform.access.require(actor, Permission.REGISTER, target=project)
        with self._platform.db.transaction() as session:
            row = self.version_row(session, project, version)
            existing = next((tag for tag in row.tags if tag.key == key), None)
            if existing is None:
                raise NotFoundError(
                    f"version {row.number} of {project!r} has no tag {key!r}",
                    f"list its tags with: harbourmaster show {project} {row.number}",
                )
            row.tags.remove(existing)
            session.flush()
            self._platform.audit.record(
                session, actor, "version.untag", f"{project}:v{row.number}", before={key: existing.value}
            )
            return version_detail(row)

    def read_bundle(self, actor: Actor, digest: str) -> Bundle:
        """A bundle's manifest and files, every one verified against the digest."""
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            if session.scalar(select(VersionRow.id).where(VersionRow.digest == digest).limit(1)) is None:
                raise NotFoundError(f"no version has bundle digest {digest[:16]}", "check the digest")
        return read_bundle_files(self._platform.artifacts, digest)

    def load_version(self, actor: Actor, project: str, version: VersionRef) -> LoadedBundle:
        """Load a version's pipeline, verifying every file against its digest."""
        detail = self.get_version(actor, project, version)
        return self.load_digest(actor, project, detail.digest)

    def load_digest(self, actor: Actor, project: str, digest: str) -> LoadedBundle:
        """Load a bundle of a project: runs its code, trusting the platform's types, the project's
        admin-set ones and the code modules the registry derived from its files."""
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            project_row = self.project_row(session, project)
            trusted = list(project_row.trusted_types or [])
            modules = session.scalar(
                select(VersionRow.code_modules)
                .where(VersionRow.project_id == project_row.id, VersionRow.digest == digest)
                .limit(1)
            )
        return load_bundle(
            self._platform.artifacts, digest, self._platform.settings, extra_trusted_types=trusted, code_modules=modules
        )

    # -- trust ------------------------------------------------------------------

    def project_trust(self, actor: Actor, project: str) -> ProjectTrust:
        """The types a project's model files may contain beyond the platform's own list."""
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            return self._trust_of(self.project_row(session, project))

    def set_trusted_types(
        self, actor: Actor, project: str, add: list[str] | None = None, remove: list[str] | None = None
    ) -> ProjectTrust:
        """Admin only: add or remove exact type names the project's model files may contain. Audited.

        Creates the project when it does not exist yet (so types can be trusted before its first version).
        """
        self._platform.access.require(actor, Permission.ADMINISTER, target=project)
        add, remove = list(add or []), list(remove or [])
        try:
            check_project_name(project)
            check_type_names([*add, *remove])
            with self._platform.db.transaction() as session:
                # An admin may trust types before the project's first version is registered.
                row = session.scalar(select(ProjectRow).where(ProjectRow.name == project))
                if row is None:
                    row = self._ensure_project(session, actor, project, "")
                    self._platform.audit.record(session, actor, "project.create", project, after={"name": project})
                before = list(row.trusted_types or [])
                missing = sorted(set(remove) - set(before))
                if missing:
                    raise InvalidInputError(
                        f"project {project!r} does not trust {', '.join(missing)}",
                        f"it trusts: {', '.join(before) or 'no extra types'}",
                    )
                after = sorted((set(before) | set(add)) - set(remove))
                if len(after) > MAX_TRUSTED_TYPES:
                    raise InvalidInputError(
                        f"a project may trust at most {MAX_TRUSTED_TYPES} types", "remove types it no longer needs"
                    )
                row.trusted_types = after
                session.flush()
                self._platform.audit.record(
                    session,
                    actor,
                    "project.trust",
                    project,
                    before={"trusted_types": before},
                    after={"trusted_types": after},
                )
                return self._trust_of(row)
        except HarbourmasterError as exc:
            if not isinstance(exc, NotFoundError):
                self._platform.audit.record_alone(
                    actor,
                    "project.trust",
                    project,
                    outcome="refused",
                    details={"error": exc.message, "add": add, "remove": remove},
                )
            raise

    def inspect_version(
        self, actor: Actor, project: str, version: VersionRef = "latest", file: str | None = None
    ) -> VersionInspection:
        """A version as a reviewer sees it: manifest, schemas, code listing, metrics, lineage and the
        types its model file names, read from the verified bundle without loading or importing it."""
        self._platform.access.require(actor, Permission.READ)
        with self._platform.db.reader() as session:
            row = self.version_row(session, project, version)
            detail = version_detail(row)
            trusted = list(row.project.trusted_types or [])
        bundle = read_bundle_files(self._platform.artifacts, detail.digest)
        manifest = bundle.manifest
        model = bundle.files[manifest.model_file]
        statuses = type_statuses(model, manifest.format, self._platform.settings, trusted, detail.code_modules)
        text = None
        if file is not None:
            file = file if file.startswith("code/") else f"code/{file}"
            if file not in bundle.files:
                raise NotFoundError(
                    f"version {detail.number} of {project!r} has no code file {file}",
                    "pick one from the code listing of: harbourmaster inspect " + project,
                )
            text = bundle.files[file].decode("utf-8", errors="replace")
        return VersionInspection(
            project=project,
            number=detail.number,
            digest=detail.digest,
            format=manifest.format,
            model_file=manifest.model_file,
            model_size=len(model),
            description=detail.description,
            created_by=detail.created_by,
            created_at=detail.created_at,
            tags=detail.tags,
            prepare=manifest.prepare,
            input_schema=detail.input_schema,
            output_schema=detail.output_schema,
            metrics=detail.metrics,
            metrics_provenance=detail.lineage.get("metrics_provenance") or detail.lineage.get("evaluation"),
            lineage=detail.lineage,
            code_modules=detail.code_modules,
            code_files=[
                CodeFile(path=f"code/{path}", size=entry.size, sha256=entry.sha256)
                for path, entry in sorted(manifest.code_files().items())
            ],
            referenced_types=[ReferencedType(name=name, status=status) for name, status in statuses],
            trusted_types=trusted,
            file=file,
            file_text=text,
        )

    # -- internals --------------------------------------------------------------

    def project_trusted_types(self, project: str) -> list[str]:
        """The project's admin-set trusted types (none for a project that does not exist yet)."""
        with self._platform.db.reader() as session:
            row = session.scalar(select(ProjectRow).where(ProjectRow.name == project))
            return list(row.trusted_types or []) if row is not None else []

    def _trust_of(self, row: ProjectRow) -> ProjectTrust:
        return ProjectTrust(
            project=row.name,
            trusted_types=list(row.trusted_types or []),
            platform_trusted_types=list(self._platform.settings.trusted_type_prefixes),
            trust_pickle=self._platform.settings.trust_pickle,
        )

    def _ensure_project(self, session: Session, actor: Actor, name: str, description: str) -> ProjectRow:
        check_text(description, "project description")
        row = session.scalar(select(ProjectRow).where(ProjectRow.name == name))
        if row is None:
            row = ProjectRow(name=name, description=description, created_by=actor.name)
            session.add(row)
            session.flush()
        elif description and row.description != description:
            row.description = description
        return row

    def project_row(self, session: Session, name: str) -> ProjectRow:
        row = session.scalar(select(ProjectRow).where(ProjectRow.name == name))
        if row is None:
            known = session.scalars(select(ProjectRow.name).order_by(ProjectRow.name)).all()
            raise NotFoundError(
                f"no project named {name!r}",
                f"known projects: {', '.join(known)}" if known else "train one first: harbourmaster train PROJECT_DIR",
            )
        return row

    def version_row(self, session: Session, project: str, version: VersionRef) -> VersionRow:
        project_row = self.project_row(session, project)
        number = parse_version_ref(version)
        query = select(VersionRow).where(VersionRow.project_id == project_row.id)
        if number is None:
            query = query.order_by(VersionRow.number.desc()).limit(1)
        else:
            query = query.where(VersionRow.number == number)
        row = session.scalar(query.options(selectinload(VersionRow.tags)))
        if row is None:
            raise NotFoundError(
                f"project {project!r} has no version {version}",
                f"list its versions with: harbourmaster versions {project}",
            )
        return row

    def _project_info(self, session: Session, row: ProjectRow) -> ProjectInfo:
        count, latest = session.execute(
            select(func.count(VersionRow.id), func.max(VersionRow.number)).where(VersionRow.project_id == row.id)
        ).one()
        return ProjectInfo(
            name=row.name,
            description=row.description,
            created_by=row.created_by,
            created_at=row.created_at,
            version_count=count,
            latest_version=latest,
        )


def parse_version_ref(version: VersionRef) -> int | None:
    """A version number, or None for "latest"."""
    if isinstance(version, int) and not isinstance(version, bool):
        number = version
    elif isinstance(version, str) and version.strip().lower() == "latest":
        return None
    elif isinstance(version, str) and version.strip().lstrip("v").isdigit():
        number = int(version.strip().lstrip("v"))
    else:
        raise InvalidInputError(f"{version!r} is not a version", "give a version number such as 3, or 'latest'")
    if number < 1:
        raise InvalidInputError(f"{version!r} is not a version", "version numbers start at 1")
    return number


def _digest_or_none(bundle: Bundle) -> str | None:
    try:
        return bundle.digest
    except ValueError:  # metadata that is not JSON-safe (NaN): the refusal is still recorded
        return None


def verify_bundle(bundle: Bundle) -> None:
    """Refuse a bundle whose files do not match its manifest (e.g. an upload gone wrong)."""
    manifest = bundle.manifest
    if set(bundle.files) != set(manifest.files):
        missing = sorted(set(manifest.files) - set(bundle.files))
        extra = sorted(set(bundle.files) - set(manifest.files))
        raise BundleIntegrityError(
            f"bundle files do not match its manifest (missing: {missing}, unexpected: {extra})",
            "send every file the manifest lists, and nothing else",
        )
    for path, entry in manifest.files.items():
        actual = sha256_bytes(bundle.files[path])
        if actual != entry.sha256:
            raise BundleIntegrityError(
                f"bundle file {path} is corrupt or altered: expected sha256 {entry.sha256}, found {actual}",
                "rebuild the bundle and send it again",
            )
