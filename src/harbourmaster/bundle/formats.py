"""Model serialization formats: one small interface, one class per format.

A format turns a fitted model into bytes and back. Loading always goes through a
:class:`TrustPolicy` built from the platform's settings, never from the model
file itself: skops files may only contain allowed types, and pickle is refused
unless the operator explicitly trusts it.
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import pickle
import pickletools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harbourmaster.bundle.libraries import LIBRARY_TYPES, require_installed
from harbourmaster.config import DEFAULT_TRUSTED_TYPE_PREFIXES
from harbourmaster.errors import InvalidInputError, UntrustedContentError

if TYPE_CHECKING:
    from harbourmaster.config import Settings

TRUST_PICKLE_HINT = "set HARBOURMASTER_TRUST_PICKLE=1 only for a version you trust"

# Never loaded, whatever any setting says: names that run commands, touch files or the
# network, import or evaluate code, or reach the platform's own internals. A module name
# covers everything inside it ("os" covers "os.system"); others are exact names.
FORBIDDEN_MODULES: frozenset[str] = frozenset(
    {
        "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "importlib", "runpy", "code", "codeop",
        "pickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "shutil", "socket", "_socket",
        "ssl", "http", "urllib", "ftplib", "smtplib", "ctypes", "_ctypes", "cffi", "multiprocessing",
        "concurrent", "threading", "_thread", "signal", "pty", "pdb", "webbrowser", "tempfile", "io", "_io",
        "pathlib", "glob", "fileinput", "zipfile", "tarfile", "sqlite3", "asyncio", "mmap", "gc", "inspect",
        "types", "posixpath", "ntpath", "platform", "sysconfig", "site", "harbourmaster",
        "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.lib.npyio",
        "numpy.lib.format", "numpy.lib.utils", "numpy.lib._datasource", "numpy._pytesttester",
        "sklearn.utils._testing", "sklearn.utils._show_versions", "sklearn.datasets", "sklearn.externals",
    }
)  # fmt: skip
FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        *(
            f"builtins.{name}"
            for name in (
                "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr", "globals",
                "locals", "vars", "input", "breakpoint", "help", "exit", "quit", "print", "memoryview",
            )
        ),
        *(f"{module}.{name}" for module in ("operator", "_operator") for name in ("attrgetter", "methodcaller")),
        *(
            f"numpy.{name}"
            for name in ("load", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
                         "fromfile", "memmap", "fromregex")
        ),
    }
)  # fmt: skip


def forbidden_type(type_name: str) -> bool:
    """Whether a model file naming ``type_name`` is refused whatever is trusted."""
    if type_name in FORBIDDEN_NAMES:
        return True
    parts = type_name.split(".")
    return any(".".join(parts[:end]) in FORBIDDEN_MODULES for end in range(1, len(parts) + 1))


def trusted_types_hint(type_names: Sequence[str], project: str | None = None) -> str:
    """How to trust types: a command that an admin can run (and the platform-wide setting)."""
    flags = " ".join(f"--add-type {name}" for name in type_names) or "--add-type TYPE"
    return (
        f"if you trust them, an admin allows them for this project with: harbourmaster trust {project or 'PROJECT'} "
        f"{flags} (or platform-wide with HARBOURMASTER_TRUSTED_TYPES on the control plane); "
        "otherwise keep such logic in the project's own code"
    )


@dataclass(frozen=True)
class TrustPolicy:
    """Which types a model file may contain, and whether pickle may be loaded.

    Built by the platform from its settings, the admin-set types of the project and the
    code modules derived from the bundle's own files, never from the model file or manifest.
    """

    trusted_type_prefixes: tuple[str, ...]
    trusted_types: tuple[str, ...] = ()
    code_modules: tuple[str, ...] = ()
    trust_pickle: bool = False

    @classmethod
    def default(cls, code_modules: Sequence[str] = ()) -> TrustPolicy:
        """The platform's built-in policy, plus the bundle's own code modules."""
        return cls(DEFAULT_TRUSTED_TYPE_PREFIXES, code_modules=tuple(code_modules))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        extra_trusted_types: Sequence[str] = (),
        code_modules: Sequence[str] = (),
    ) -> TrustPolicy:
        """The policy of a running platform: pickle trust comes from settings only."""
        return cls(
            trusted_type_prefixes=tuple(settings.trusted_type_prefixes),
            trusted_types=tuple(extra_trusted_types),
            code_modules=tuple(code_modules),
            trust_pickle=settings.trust_pickle,
        )

    def allows(self, type_name: str) -> bool:
        """Whether a fully qualified type name (``module.Class``) may be loaded."""
        if forbidden_type(type_name):
            return False
        return (
            type_name.startswith(self.trusted_type_prefixes)
            or type_name in LIBRARY_TYPES
            or type_name in self.trusted_types
            or type_name.split(".", 1)[0] in self.code_modules
        )

    def refused(self, type_names: Iterable[str]) -> list[str]:
        """The names among ``type_names`` that this policy does not allow, sorted."""
        return sorted({name for name in type_names if not self.allows(name)})


@runtime_checkable
class ModelFormat(Protocol):
    """How one serialization format dumps and loads a model."""

    name: str
    file_name: str

    def dump(self, model: Any) -> bytes:
        """Serialize a fitted model."""
        ...

    def load(self, data: bytes, policy: TrustPolicy) -> Any:
        """Deserialize a model, honouring the trust policy."""
        ...


def untrusted_type_error(
    type_names: Sequence[str], what: str = "the model file", project: str | None = None
) -> UntrustedContentError:
    """The error raised when a model needs types the policy does not allow."""
    forbidden = [name for name in type_names if forbidden_type(name)]
    if forbidden:
        return UntrustedContentError(
            f"{what} references {', '.join(forbidden)}, which the platform never loads "
            "(it can run commands, touch files or import code)",
            "remove it from the pipeline; if a step needs such logic, write it as a function or class "
            "in the project's own code",
        )
    listed = ", ".join(type_names)
    return UntrustedContentError(
        f"{what} contains types that are not trusted: {listed}", trusted_types_hint(type_names, project)
    )


def referenced_types(data: bytes, format_name: str) -> list[str]:
    """Every type or function a model file names, read without loading it (sorted)."""
    if format_name == "skops":
        return SkopsFormat().referenced_types(data)
    if format_name == "pickle":
        return pickle_globals(data)
    return []


def _python3_name(module: str, name: str) -> str:
    """``module.name`` as Python 3 unpickling resolves it (old pickles say ``commands``, ``__builtin__``)."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def pickle_globals(data: bytes) -> list[str]:
    """The globals a pickle imports (``module.name``), found by reading its opcodes only."""
    names: set[str] = set()
    strings: list[str] = []  # strings pushed so far (STACK_GLOBAL takes the last two)
    memo: dict[int, str | None] = {}
    top: str | None = None  # the string on top of the stack, when there is one
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in {"GLOBAL", "INST"} and isinstance(arg, str):
                names.add(_python3_name(*arg.partition(" ")[::2]))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.add(_python3_name(strings[-2], strings[-1]))
            if opcode.name == "MEMOIZE":
                memo[len(memo)] = top
                continue
            if opcode.name in {"PUT", "BINPUT", "LONG_BINPUT"}:
                memo[int(arg)] = top
                continue
            top = None
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                top = arg
            elif opcode.name in {"GET", "BINGET", "LONG_BINGET"}:
                top = memo.get(int(arg))
            if top is not None:
                strings.append(top)
    except Exception as exc:  # any decoding problem: the file is not a pickle we can read
        raise InvalidInputError(f"the model file is not a readable pickle: {exc}", "register it again") from exc
    return sorted(names)


class SkopsFormat:
    """scikit-learn pipelines stored with skops: safe loading of allowed types only."""

    name = "skops"
    file_name = "model.skops"

    def dump(self, model: Any) -> bytes:
        import skops.io

        return skops.io.dumps(model)

    def referenced_types(self, data: bytes) -> list[str]:
        """Every type and function named in the file's schema (primitives aside), without loading it."""
        import zipfile

        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                schema = json.loads(archive.read("schema.json"))
        except Exception as exc:  # not a zip, no schema, bad JSON
            raise InvalidInputError(
                f"{self.file_name} is not a readable skops file: {exc}",
                "register the version again from its training run",
            ) from exc
        names: set[str] = set()
        pending: list[Any] = [schema]
        while pending:
            node = pending.pop()
            if isinstance(node, dict):
                module, name = node.get("__module__"), node.get("__class__")
                if isinstance(module, str) and isinstance(name, str) and node.get("__loader__") != "JsonNode":
                    names.add(f"{module}.{name}")
                pending.extend(node.values())
            elif isinstance(node, list):
                pending.extend(node)
        return sorted(names)

    def untrusted_types(self, data: bytes) -> list[str]:
        """Types in a skops file that skops itself does not trust by default."""
        import skops.io

        try:
            return list(skops.io.get_untrusted_types(data=data))
        except Exception as exc:  # a zip/JSON decoding error of any kind
            raise InvalidInputError(
                f"{self.file_name} is not a readable skops file: {exc}",
                "register the version again from its training run",
            ) from exc

    def refused_types(self, data: bytes, policy: TrustPolicy) -> list[str]:
        """Types of the file that ``policy`` refuses: untrusted by skops and not allowed, or forbidden."""
        forbidden = filter(forbidden_type, self.referenced_types(data))
        return sorted({*policy.refused(self.untrusted_types(data)), *forbidden})

    def load(self, data: bytes, policy: TrustPolicy) -> Any:
        import skops.io

        refused = self.refused_types(data, policy)
        if refused:
            raise untrusted_type_error(refused, self.file_name)
        require_installed(self.referenced_types(data), self.file_name)
        found = self.untrusted_types(data)
        # Only the types the platform allows, never the file's own list.
        allowed = [name for name in found if policy.allows(name)]
        return skops.io.loads(data, trusted=allowed)


class OnnxFormat:
    """ONNX graphs run by onnxruntime; the loaded model is an :class:`OnnxModel`."""

    name = "onnx"
    file_name = "model.onnx"

    def dump(self, model: Any) -> bytes:
        if isinstance(model, bytes | bytearray | memoryview):
            data = bytes(model)
        elif hasattr(model, "SerializeToString"):
            data = model.SerializeToString()
        else:
            raise InvalidInputError(
                f"format 'onnx' needs an onnx.ModelProto or its bytes, got {type(model).__name__}",
                "convert the pipeline first, e.g. skl2onnx.to_onnx(pipeline, X[:1])",
            )
        import onnx

        try:
            onnx.load_model_from_string(data)
        except Exception as exc:
            raise InvalidInputError(f"the ONNX model cannot be parsed: {exc}", "export the model again") from exc
        return data

    def load(self, data: bytes, policy: TrustPolicy) -> Any:
        from harbourmaster.bundle.onnx_model import OnnxModel

        return OnnxModel(data)


class PickleFormat:
    """Arbitrary Python objects with pickle: loaded only when the operator trusts it."""

    name = "pickle"
    file_name = "model.pkl"

    def dump(self, model: Any) -> bytes:
        return pickle.dumps(model, protocol=5)

    def check_globals(self, data: bytes) -> None:
        """Refuse a pickle that names a forbidden global (read from its opcodes, nothing run).

        A best effort only: trusting pickle means trusting its author.
        """
        forbidden = [name for name in pickle_globals(data) if forbidden_type(name)]
        if forbidden:
            raise untrusted_type_error(forbidden, self.file_name)

    def load(self, data: bytes, policy: TrustPolicy) -> Any:
        if not policy.trust_pickle:
            raise UntrustedContentError(
                "this version is stored as pickle, which can run arbitrary code when loaded",
                TRUST_PICKLE_HINT,
            )
        self.check_globals(data)
        return pickle.loads(data)  # explicitly trusted by the operator


FORMATS: dict[str, ModelFormat] = {fmt.name: fmt for fmt in (SkopsFormat(), OnnxFormat(), PickleFormat())}


def format_for(name: str) -> ModelFormat:
    """The format registered under ``name``."""
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise InvalidInputError(f"unknown model format {name!r}", f"use one of: {known}") from None
