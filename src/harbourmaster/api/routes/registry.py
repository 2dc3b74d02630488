"""Projects, versions, tags, bundles and runs over HTTP. Each route calls one service."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile  # what request.form() yields (fastapi's is a subclass)

from harbourmaster.api.bounds import Name, Text
from harbourmaster.api.deps import current_actor, get_platform
from harbourmaster.api.permissions import requires
from harbourmaster.bundle.builder import Bundle
from harbourmaster.bundle.manifest import BundleManifest
from harbourmaster.core.limits import MAX_TEXT
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import InvalidInputError, NotFoundError
from harbourmaster.schemas import (
    ProjectInfo,
    ProjectTrust,
    RunInfo,
    VersionDetail,
    VersionDiff,
    VersionInspection,
    VersionSummary,
)
from harbourmaster.services.actors import Actor
from harbourmaster.services.platform import Platform

router = APIRouter(prefix="/api/v1", tags=["registry"])


class ProjectCreate(BaseModel):
    name: Name
    description: Text = ""


class TagValue(BaseModel):
    value: Text = ""


class TrustChange(BaseModel):
    add: list[str] = Field(default_factory=list, max_length=200)
    remove: list[str] = Field(default_factory=list, max_length=200)


@router.get("/projects", openapi_extra=requires(Permission.READ))
def list_projects(
    platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[ProjectInfo]:
    return platform.registry.list_projects(actor)


@router.post("/projects", status_code=201, openapi_extra=requires(Permission.REGISTER))
def create_project(
    body: ProjectCreate,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> ProjectInfo:
    return platform.registry.create_project(actor, body.name, body.description)


@router.get("/projects/{project}", openapi_extra=requires(Permission.READ))
def get_project(
    project: str, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> ProjectInfo:
    return platform.registry.get_project(actor, project)


@router.get("/projects/{project}/versions", openapi_extra=requires(Permission.READ))
def list_versions(
    project: str, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> list[VersionSummary]:
    return platform.registry.list_versions(actor, project)


@router.post("/projects/{project}/versions", status_code=201, openapi_extra=requires(Permission.REGISTER))
async def register_version(
    project: str,
    request: Request,
    manifest: str = Form(..., description="the bundle manifest (JSON)"),
    description: str = Form("", max_length=MAX_TEXT),
    run: str = Form("", description="optional JSON summary of the training run"),
    project_description: str = Form(
        "", max_length=MAX_TEXT, description="the project's description, from its project file"
    ),
    project_settings: str = Form(
        "", description="optional JSON of the project's own configuration (never trust settings: see /trust)"
    ),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> VersionDetail:
    """Register a bundle built by the SDK: the manifest plus one file part per bundle file."""
    try:
        parsed = BundleManifest.model_validate_json(manifest)
    except ValidationError as exc:
        raise InvalidInputError(
            f"the manifest is not a valid bundle manifest: {exc.errors()[0]['msg']}",
            "build bundles with the Harbourmaster SDK",
        ) from exc
    form = await request.form()
    files: dict[str, bytes] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files[key] = await value.read()
    bundle = Bundle(manifest=parsed, files=files)
    summary = _json_object(run, "run") if run else None
    settings = _json_object(project_settings, "project_settings") if project_settings else None
    version = await run_in_threadpool(
        platform.registry.register_bundle,
        actor,
        project,
        bundle,
        description,
        project_description=project_description or None,
        project_settings=settings,
    )
    if summary is not None:
        await run_in_threadpool(platform.training.record_run, actor, project, version.number, summary)
    return version


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"form field {field} is not JSON: {exc}", "send a JSON object") from exc
    if not isinstance(value, dict):
        raise InvalidInputError(f"form field {field} is not a JSON object", "send a JSON object")
    return value


@router.get("/projects/{project}/versions/{version}", openapi_extra=requires(Permission.READ))
def get_version(
    project: str,
    version: str,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> VersionDetail:
    return platform.registry.get_version(actor, project, version)


@router.get("/projects/{project}/versions/{version}/inspect", openapi_extra=requires(Permission.READ))
def inspect_version(
    project: str,
    version: str,
    file: str | None = None,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> VersionInspection:
    """A version for review (manifest, schemas, code listing, types): nothing is loaded or imported."""
    return platform.registry.inspect_version(actor, project, version, file)


@router.get("/projects/{project}/trust", openapi_extra=requires(Permission.READ))
def project_trust(
    project: str, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> ProjectTrust:
    return platform.registry.project_trust(actor, project)


@router.post("/projects/{project}/trust", openapi_extra=requires(Permission.ADMINISTER))
def change_project_trust(
    project: str,
    body: TrustChange,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> ProjectTrust:
    """Add or remove types a project's model files may contain (admins only; audited)."""
    return platform.registry.set_trusted_types(actor, project, body.add, body.remove)


@router.get("/projects/{project}/diff", openapi_extra=requires(Permission.READ))
def diff_versions(
    project: str,
    old: str,
    new: str,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> VersionDiff:
    return platform.registry.diff_versions(actor, project, old, new)


@router.put("/projects/{project}/versions/{version}/tags/{key}", openapi_extra=requires(Permission.REGISTER))
def set_tag(
    project: str,
    version: str,
    key: str,
    body: TagValue,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> VersionDetail:
    return platform.registry.set_tag(actor, project, version, key, body.value)


@router.delete("/projects/{project}/versions/{version}/tags/{key}", openapi_extra=requires(Permission.REGISTER))
def delete_tag(
    project: str,
    version: str,
    key: str,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> VersionDetail:
    return platform.registry.delete_tag(actor, project, version, key)


@router.get("/bundles/{digest}/manifest", openapi_extra=requires(Permission.READ))
def bundle_manifest(
    digest: str, platform: Platform = Depends(get_platform), actor: Actor = Depends(current_actor)
) -> Response:
    bundle = platform.registry.read_bundle(actor, _checked_digest(digest))
    return Response(bundle.manifest.model_dump_json(), media_type="application/json")


@router.get("/bundles/{digest}/files/{path:path}", openapi_extra=requires(Permission.READ))
def bundle_file(
    digest: str,
    path: str,
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> Response:
    """One file of a bundle, served only after the whole bundle verified against its digest."""
    bundle = platform.registry.read_bundle(actor, _checked_digest(digest))
    if path not in bundle.files:
        raise NotFoundError(f"bundle {digest[:12]} has no file {path}", "see its manifest")
    return Response(bundle.files[path], media_type="application/octet-stream")


@router.get("/runs", openapi_extra=requires(Permission.READ))
def list_runs(
    project: str | None = None,
    limit: int = Query(default=50, ge=1, le=1000),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> list[RunInfo]:
    return platform.training.list_runs(actor, project, limit)


@router.get("/runs/{run_id}", openapi_extra=requires(Permission.READ))
def get_run(
    run_id: int = Path(ge=1, le=2**31 - 1),
    platform: Platform = Depends(get_platform),
    actor: Actor = Depends(current_actor),
) -> RunInfo:
    """One run's whole record: steps with rows in and out and durations, validation findings, error."""
    return platform.runs.get(actor, run_id)


def _checked_digest(digest: str) -> str:
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise InvalidInputError(f"{digest!r} is not a bundle digest", "use the 64-hex sha256 digest")
    return digest
