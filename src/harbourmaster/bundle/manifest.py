"""The manifest: what a bundle contains, with the hash of every file.

The bundle's digest is the SHA-256 of the manifest's canonical JSON, and the
manifest records the SHA-256 of every file, so one digest pins everything.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from harbourmaster.core.digest import canonical_json, sha256_bytes

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_relative_path(path: str) -> str:
    """Refuse bundle paths that could escape the folder they are written to."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(part in {"", ".", ".."} for part in parts)
        or re.match(r"^[A-Za-z]:", path)
    ):
        raise ValueError(f"{path!r} is not a safe relative bundle path")
    return path


class FileEntry(BaseModel):
    """Hash and size of one file of a bundle."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    size: int

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX64.match(value):
            raise ValueError(f"{value!r} is not a lowercase hex SHA-256")
        return value


class BundleManifest(BaseModel):
    """Everything a bundle holds; its canonical JSON hash is the bundle digest."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = 1
    format: str
    model_file: str
    files: dict[str, FileEntry]
    code_modules: list[str]
    prepare: str | None = None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    profile: dict[str, Any]
    metrics: dict[str, float]
    lineage: dict[str, Any]
    trusted_pickle: bool = False
    reference_row: dict[str, Any] | None = None

    @field_validator("files")
    @classmethod
    def _safe_paths(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for path in value:
            check_relative_path(path)
        return value

    @model_validator(mode="after")
    def _model_file_listed(self) -> BundleManifest:
        if self.model_file not in self.files:
            raise ValueError(f"model_file {self.model_file!r} is not among the bundle files")
        return self

    def canonical_bytes(self) -> bytes:
        """The exact bytes that are stored and hashed."""
        return canonical_json(self.model_dump(mode="json"))

    def digest(self) -> str:
        """SHA-256 (hex) of the manifest's canonical JSON."""
        return sha256_bytes(self.canonical_bytes())

    def code_files(self) -> dict[str, FileEntry]:
        """Entries under ``code/``, keyed by their path inside the code folder."""
        return {path[len("code/") :]: entry for path, entry in self.files.items() if path.startswith("code/")}
