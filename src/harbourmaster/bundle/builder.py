"""Building a bundle from a fitted pipeline, its project code and its metadata."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from harbourmaster.bundle.code import code_modules as find_code_modules
from harbourmaster.bundle.formats import (
    TRUST_PICKLE_HINT,
    PickleFormat,
    SkopsFormat,
    TrustPolicy,
    format_for,
    untrusted_type_error,
)
from harbourmaster.bundle.manifest import BundleManifest, FileEntry, check_relative_path
from harbourmaster.core.digest import sha256_bytes
from harbourmaster.errors import InvalidInputError, UntrustedContentError

CODE_PREFIX = "code/"
REFERENCE_SAMPLE_FILE = "reference/sample.parquet"  # bounded sample of the training rows, for exact drift tests


@dataclass(frozen=True)
class Bundle:
    """An immutable bundle in memory: its manifest and the bytes of every file."""

    manifest: BundleManifest
    files: dict[str, bytes]

    @cached_property
    def digest(self) -> str:
        return self.manifest.digest()


def build_bundle(
    model: Any,
    *,
    format: str,
    code_files: dict[str, bytes],
    prepare: str | None,
    input_schema: dict[str, Any],
    output_schema: dict[str, Any],
    profile: dict[str, Any],
    metrics: dict[str, float],
    lineage: dict[str, Any],
    reference_row: dict[str, Any] | None,
    trusted_pickle: bool = False,
    policy: TrustPolicy | None = None,
    reference_sample: bytes | None = None,
    project: str | None = None,
) -> Bundle:
    """Serialize ``model`` and assemble a verified, content-addressed bundle.

    ``policy`` (default: the platform's built-in one) decides which skops types
    are acceptable; the project's own code modules are always added to it.
    ``reference_sample`` (Parquet bytes) is stored as ``reference/sample.parquet``. A
    model that could not be loaded back under it is refused here, before it is
    registered (``project`` is named in the hint).
    """
    fmt = format_for(format)
    if fmt.name == "pickle" and not trusted_pickle:
        raise UntrustedContentError(
            "format 'pickle' can run arbitrary code when loaded and is refused by default",
            "use format 'skops' (or 'onnx'); only if skops cannot store this model, opt in with "
            "trust_pickle = true under [serialization] in harbourmaster.toml (or Client.register(..., "
            f"trust_pickle=True)) and {TRUST_PICKLE_HINT}",
        )
    bad_metrics = [name for name, value in metrics.items() if not math.isfinite(value)]
    if bad_metrics:
        raise InvalidInputError(
            f"metrics must be finite numbers: {', '.join(sorted(bad_metrics))}",
            "drop or fix metrics that are NaN or infinite",
        )

    modules = find_code_modules(code_files)
    model_bytes = fmt.dump(model)
    if isinstance(fmt, PickleFormat):
        fmt.check_globals(model_bytes)
    if isinstance(fmt, SkopsFormat):
        base = policy or TrustPolicy.default()
        check = TrustPolicy(
            trusted_type_prefixes=base.trusted_type_prefixes,
            trusted_types=base.trusted_types,
            code_modules=tuple(base.code_modules) + modules,
        )
        refused = fmt.refused_types(model_bytes, check)
        if refused:
            raise untrusted_type_error(refused, "the fitted pipeline", project)

    files: dict[str, bytes] = {fmt.file_name: model_bytes}
    if reference_sample is not None:
        files[REFERENCE_SAMPLE_FILE] = bytes(reference_sample)
    for path, data in code_files.items():
        try:
            files[CODE_PREFIX + check_relative_path(path)] = bytes(data)
        except ValueError as exc:
            raise InvalidInputError(str(exc), "pass paths relative to the project folder") from exc

    try:
        manifest = BundleManifest(
            format=fmt.name,
            model_file=fmt.file_name,
            files={path: FileEntry(sha256=sha256_bytes(data), size=len(data)) for path, data in sorted(files.items())},
            code_modules=list(modules),
            prepare=prepare,
            input_schema=input_schema,
            output_schema=output_schema,
            profile=profile,
            metrics=metrics,
            lineage=lineage,
            trusted_pickle=trusted_pickle,
            reference_row=reference_row,
        )
        bundle = Bundle(manifest=manifest, files=files)
        _ = bundle.digest  # JSON-safety check of all metadata, once
    except ValueError as exc:  # pydantic validation, or NaN in canonical JSON
        raise InvalidInputError(
            f"the bundle metadata is not valid: {exc}",
            "metadata must be JSON-safe: replace NaN/inf with null",
        ) from exc
    return bundle
