"""Project code that travels inside a bundle, and importing it in isolation.

A fitted pipeline may use the project's own classes (``features.ClipOutliers``).
The project's Python files and config are snapshotted into the bundle, so what
was trained is what runs, even where the project folder does not exist.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.metadata
import keyword
import os
import site
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from harbourmaster.core.digest import canonical_json, sha256_bytes
from harbourmaster.errors import InvalidInputError, UntrustedContentError

CODE_SUFFIXES = frozenset({".py", ".toml", ".yaml", ".yml", ".json"})
SKIPPED_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", ".harbourmaster", "node_modules", "site-packages"})

# sys.path and sys.modules are process-wide: one isolated import at a time.
_IMPORT_LOCK = threading.RLock()


def snapshot_project_code(project_dir: Path, max_bytes: int = 20_000_000) -> dict[str, bytes]:
    """Every Python and config file under ``project_dir``, by relative posix path."""
    root = Path(project_dir)
    if not root.is_dir():
        raise InvalidInputError(f"project folder {root} does not exist", "run the command from the project folder")
    files: dict[str, bytes] = {}
    total = 0
    for current, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(names):
            path = Path(current) / name
            if name.startswith(".") or path.suffix.lower() not in CODE_SUFFIXES:
                continue
            if not path.is_file():
                continue
            data = path.read_bytes()
            total += len(data)
            if total > max_bytes:
                raise InvalidInputError(
                    f"the project code under {root} is larger than {max_bytes} bytes "
                    f"(at {path.relative_to(root).as_posix()})",
                    "move data files (including large .json) out of the project folder",
                )
            files[path.relative_to(root).as_posix()] = data
    return files


def code_modules(files: Iterable[str]) -> tuple[str, ...]:
    """Top-level importable modules and packages among snapshot paths, sorted."""
    paths = set(files)
    names: set[str] = set()
    for path in paths:
        parts = path.split("/")
        if len(parts) == 1 and parts[0].endswith(".py"):
            candidate = parts[0][: -len(".py")]
        elif len(parts) > 1 and f"{parts[0]}/__init__.py" in paths:
            candidate = parts[0]
        else:
            continue
        if candidate.isidentifier() and not keyword.iskeyword(candidate):
            names.add(candidate)
    return tuple(sorted(names))


# Importable from a code folder at the front of sys.path even without a .py source: refused in bundles.
_RESERVED_MODULES = frozenset({"sitecustomize", "usercustomize", "__main__"})


def check_code_paths(paths: Iterable[str]) -> None:
    """Refuse code files a project snapshot never holds (compiled modules, .pth files ...)."""
    odd = sorted(path for path in paths if Path(path).suffix.lower() not in CODE_SUFFIXES)
    if odd:
        raise UntrustedContentError(
            f"the bundle's code holds files that are not project source: {', '.join(odd[:10])}",
            "bundle code may only hold " + ", ".join(sorted(CODE_SUFFIXES)) + " files; build bundles with the SDK",
        )


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def _installed_paths() -> tuple[str, ...]:
    """The folders Python and installed packages live in (not the current folder, a notebook's
    folder or a test runner's: a project's own modules may sit there)."""
    roots = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    resolved = [str(Path(root).resolve()) for root in roots if root]
    return tuple(
        entry for entry in sys.path if entry and any(str(Path(entry).resolve()).startswith(root) for root in resolved)
    )


def module_owner(name: str) -> str | None:
    """What already owns a top-level module name in this Python, or None when nothing does."""
    if name in sys.stdlib_module_names or name in sys.builtin_module_names or name in _RESERVED_MODULES:
        return "the Python standard library"
    owners = _distributions().get(name)
    if owners:
        return f"the installed package {owners[0]!r}"
    spec = importlib.machinery.PathFinder.find_spec(name, list(_installed_paths()))
    if spec is not None and spec.origin is not None:  # a namespace portion (no origin) never shadows a module
        return f"an installed module ({spec.origin})"
    return None


def check_code_modules(modules: Iterable[str]) -> tuple[str, ...]:
    """Refuse project modules named like the standard library or an installed package.

    A project module ``json`` (or ``sklearn``) would replace the real one while the bundle
    loads, and a type named after it would be trusted as the project's own.
    """
    names = tuple(sorted(set(modules)))
    for name in names:
        owner = module_owner(name)
        if owner is not None:
            raise UntrustedContentError(
                f"the project's module {name!r} has the name of a module of {owner}",
                f"rename your module (e.g. {name}.py to {_project_name_for(name)}.py) and the imports that use it",
            )
    return names


def _project_name_for(name: str) -> str:
    return f"{name.strip('_')}_features" if name.strip("_") else "project_features"


def _git(project_dir: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(project_dir), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def code_revision(project_dir: Path, files: dict[str, bytes]) -> dict[str, Any]:
    """The git commit of the project (and whether it is dirty) when git tracks its files,
    plus always a hash of the files themselves (what actually travels in the bundle)."""
    pairs = sorted((path, sha256_bytes(data)) for path, data in files.items())
    files_sha256 = sha256_bytes(canonical_json(pairs))
    sha = _git(project_dir, "rev-parse", "HEAD")
    # A folder inside a work tree but untracked or ignored is not described by the commit.
    tracked = _git(project_dir, "ls-files", "--", ".") if sha else None
    if sha and tracked and tracked.strip():
        status = _git(project_dir, "status", "--porcelain", "--", ".")
        return {"kind": "git", "sha": sha.strip(), "dirty": bool(status and status.strip()), "sha256": files_sha256}
    return {"kind": "files", "sha256": files_sha256}


def _owned(name: str, modules: set[str]) -> bool:
    return name.split(".", 1)[0] in modules


@contextmanager
def project_imports(code_dir: Path, modules: Sequence[str]) -> Iterator[None]:
    """Make the project's modules in ``code_dir`` importable, isolated from others.

    Modules already imported under the same top-level names (another project's
    ``features``, say) are set aside for the duration and put back afterwards;
    objects created inside keep their classes.
    """
    entry = str(Path(code_dir).resolve())
    names = set(modules)
    with _IMPORT_LOCK:
        saved = {name: mod for name, mod in list(sys.modules.items()) if _owned(name, names)}
        for name in saved:
            del sys.modules[name]
        sys.path.insert(0, entry)
        importlib.invalidate_caches()
        try:
            yield
        finally:
            for name in [name for name in list(sys.modules) if _owned(name, names)]:
                del sys.modules[name]
            sys.modules.update(saved)
            with suppress(ValueError):
                sys.path.remove(entry)
            sys.path_importer_cache.pop(entry, None)
            importlib.invalidate_caches()
