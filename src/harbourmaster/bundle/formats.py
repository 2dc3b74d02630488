"""Model serialization formats: one small interface, one class per format.

A format turns a fitted model into bytes and back. Loading always goes through a
:class:`TrustPolicy` built from the platform's settings, never from the model
file itself: skops files may only contain allowed types, and pickle is refused
unless the operator explicitly trusts it.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harbourmaster.config import DEFAULT_TRUSTED_TYPE_PREFIXES
from harbourmaster.errors import InvalidInputError, UntrustedContentError

if TYPE_CHECKING:
    from harbourmaster.config import Settings

TRUSTED_TYPES_HINT = (
    "add it to HARBOURMASTER_TRUSTED_TYPES or [serialization] trusted_types in harbourmaster.toml if you trust it"
)
TRUST_PICKLE_HINT = "set HARBOURMASTER_TRUST_PICKLE=1 only for a version you trust"


@dataclass(frozen=True)
class TrustPolicy:
    """Which types a model file may contain, and whether pickle may be loaded."""

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
        return (
            type_name.startswith(self.trusted_type_prefixes)
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


def untrusted_type_error(type_names: Sequence[str], what: str = "the model file") -> Exception:
    """The error raised when a model needs types the policy does not allow."""
    listed = ", ".join(type_names)
    return UntrustedContentError(f"{what} contains types that are not trusted: {listed}", TRUSTED_TYPES_HINT)


class SkopsFormat:
    """scikit-learn pipelines stored with skops: safe loading of allowed types only."""

    name = "skops"
    file_name = "model.skops"

    def dump(self, model: Any) -> bytes:
        import skops.io

        return skops.io.dumps(model)

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

    def load(self, data: bytes, policy: TrustPolicy) -> Any:
        import skops.io

        found = self.untrusted_types(data)
        refused = policy.refused(found)
        if refused:
            raise untrusted_type_error(refused, self.file_name)
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

    def load(self, data: bytes, policy: TrustPolicy) -> Any:
        if not policy.trust_pickle:
            raise UntrustedContentError(
                "this version is stored as pickle, which can run arbitrary code when loaded",
                TRUST_PICKLE_HINT,
            )
        return pickle.loads(data)  # explicitly trusted by the operator


FORMATS: dict[str, ModelFormat] = {fmt.name: fmt for fmt in (SkopsFormat(), OnnxFormat(), PickleFormat())}


def format_for(name: str) -> ModelFormat:
    """The format registered under ``name``."""
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise InvalidInputError(f"unknown model format {name!r}", f"use one of: {known}") from None
