"""Version bundles: build, save, load and verify the unit that carries a pipeline.

A bundle holds the fitted pipeline (one model file), the project code it needs
(under ``code/``) and a manifest with schema, profile, metrics and lineage. Its
digest is the SHA-256 of the manifest, which records the SHA-256 of every file.

The names below are imported on first use (PEP 562): importing one light submodule
(``bundle.libraries`` from the CLI, say) must not load pandas and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_SOURCES = {
    "Bundle": "builder",
    "build_bundle": "builder",
    "code_modules": "code",
    "code_revision": "code",
    "project_imports": "code",
    "snapshot_project_code": "code",
    "FORMATS": "formats",
    "ModelFormat": "formats",
    "TrustPolicy": "formats",
    "format_for": "formats",
    "LoadedBundle": "loaded",
    "BundleManifest": "manifest",
    "FileEntry": "manifest",
    "load_bundle": "storage",
    "read_bundle_files": "storage",
    "save_bundle": "storage",
}

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


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{source}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
