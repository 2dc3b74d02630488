"""Version bundles: build, save, load and verify the unit that carries a pipeline.

A bundle holds the fitted pipeline (one model file), the project code it needs
(under ``code/``) and a manifest with schema, profile, metrics and lineage. Its
digest is the SHA-256 of the manifest, which records the SHA-256 of every file.
"""

from harbourmaster.bundle.builder import Bundle, build_bundle
from harbourmaster.bundle.code import (
    code_modules,
    code_revision,
    project_imports,
    snapshot_project_code,
)
from harbourmaster.bundle.formats import FORMATS, ModelFormat, TrustPolicy, format_for
from harbourmaster.bundle.loaded import LoadedBundle
from harbourmaster.bundle.manifest import BundleManifest, FileEntry
from harbourmaster.bundle.storage import load_bundle, read_bundle_files, save_bundle

__all__ = [
    "FORMATS",
    "Bundle",
    "BundleManifest",
    "FileEntry",
    "LoadedBundle",
    "ModelFormat",
    "TrustPolicy",
    "build_bundle",
    "code_modules",
    "code_revision",
    "format_for",
    "load_bundle",
    "project_imports",
    "read_bundle_files",
    "save_bundle",
    "snapshot_project_code",
]
