"""What the platform decides about a bundle before it is registered, and what a reviewer sees.

Everything here reads bytes and JSON only: no model is loaded and no project module is
imported, so the control plane can run it on any upload.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harbourmaster.bundle.builder import Bundle
from harbourmaster.bundle.code import check_code_modules
from harbourmaster.bundle.formats import (
    TRUST_PICKLE_HINT,
    OnnxFormat,
    PickleFormat,
    SkopsFormat,
    TrustPolicy,
    forbidden_type,
    format_for,
    referenced_types,
    untrusted_type_error,
)
from harbourmaster.bundle.libraries import LIBRARY_TYPES
from harbourmaster.bundle.storage import bundle_code_modules
from harbourmaster.config import Settings
from harbourmaster.errors import InvalidInputError, UntrustedContentError

MAX_TRUSTED_TYPES = 200
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class Vetted:
    """The platform's own verdict on a bundle: what loading it will trust."""

    code_modules: tuple[str, ...]
    trusted_pickle: bool


def vet_bundle(bundle: Bundle, settings: Settings, project_types: Sequence[str], project: str) -> Vetted:
    """Check a bundle's format, trust flags, code modules and model-file types; raise when refused.

    The manifest's own claims (``code_modules``, ``trusted_pickle``) are checked against the
    files and the platform's settings, never taken as given.
    """
    manifest = bundle.manifest
    fmt = format_for(manifest.format)
    if manifest.model_file != fmt.file_name:
        raise InvalidInputError(
            f"the manifest names model file {manifest.model_file!r} for format {fmt.name!r}",
            f"a {fmt.name} model file is {fmt.file_name}; build bundles with the Harbourmaster SDK",
        )
    modules = bundle_code_modules(manifest)
    if sorted(manifest.code_modules) != list(modules):
        raise UntrustedContentError(
            f"the manifest claims code modules {sorted(manifest.code_modules)}, "
            f"but the bundle's code files define {list(modules)}",
            "the platform derives code modules from the files under code/; build bundles with the SDK",
        )
    check_code_modules(modules)
    data = bundle.files[manifest.model_file]
    if isinstance(fmt, PickleFormat):
        if not settings.trust_pickle:
            raise UntrustedContentError(
                "this platform does not accept pickle model files: loading one can run any code, "
                "and a manifest's own 'trusted' flag is not trust",
                "store the model as skops (or onnx); the control plane's operator may "
                f"{TRUST_PICKLE_HINT.removeprefix('set ')} (HARBOURMASTER_TRUST_PICKLE on the server)",
            )
        fmt.check_globals(data)
    elif isinstance(fmt, SkopsFormat):
        policy = TrustPolicy.from_settings(settings, extra_trusted_types=project_types, code_modules=modules)
        refused = fmt.refused_types(data, policy)
        if refused:
            raise untrusted_type_error(refused, "the model file", project)
    elif isinstance(fmt, OnnxFormat):
        fmt.dump(data)  # parses the graph; nothing runs
    return Vetted(code_modules=modules, trusted_pickle=isinstance(fmt, PickleFormat))


def type_statuses(
    data: bytes, format_name: str, settings: Settings, project_types: Sequence[str], modules: Sequence[str]
) -> list[tuple[str, str]]:
    """Each type the model file names, with why it is (or is not) trusted; nothing is loaded."""
    names = referenced_types(data, format_name)
    untrusted = set(SkopsFormat().untrusted_types(data)) if format_name == "skops" else set(names)
    statuses = []
    for name in names:
        if forbidden_type(name):
            status = "forbidden"
        elif format_name == "pickle":
            status = "pickle"
        elif name not in untrusted:
            status = "skops-default"
        elif name.startswith(tuple(settings.trusted_type_prefixes)) or name in LIBRARY_TYPES:
            status = "platform"
        elif name in project_types:
            status = "project"
        elif name.split(".", 1)[0] in modules:
            status = "project-code"
        else:
            status = "untrusted"
        statuses.append((name, status))
    return statuses


def check_type_names(names: Sequence[str]) -> list[str]:
    """Validate type names an admin wants to trust: fully qualified, and never a forbidden one."""
    checked = []
    for name in names:
        if not isinstance(name, str) or len(name) > 200 or not _DOTTED.fullmatch(name):
            raise InvalidInputError(
                f"{name!r} is not a fully qualified type name",
                'write types as "package.module.ClassName", as the refusal message listed them',
            )
        if forbidden_type(name):
            raise UntrustedContentError(
                f"{name} can run commands, touch files or import code: the platform never loads it",
                "put the logic the pipeline needs in the project's own code instead",
            )
        checked.append(name)
    return checked
