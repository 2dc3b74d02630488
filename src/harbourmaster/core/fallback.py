"""Deployment serving options and the fallback chain's configuration (pure, no I/O).

Options say how a replica serves one deployment: what to do with unknown input
fields, the latency budget a model must keep, adaptive micro-batching and the
humility rule (refuse to trust a model on inputs outside what it was trained on).
The fallback config is the last link of the chain: a declarative rule table
(first matching rule wins, else ``default``) or a Python function in the project.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harbourmaster.core.profile import NumericProfile, ReferenceProfile
from harbourmaster.errors import InvalidInputError

__all__ = [
    "FALLBACK_REASONS",
    "ConcurrencyOptions",
    "Condition",
    "DeploymentOptions",
    "FallbackConfig",
    "HumilityCheck",
    "HumilityOptions",
    "MicrobatchOptions",
    "Rule",
    "evaluate_rules",
    "merge_deployment_options",
    "validate_deployment_options",
    "validate_fallback_config",
]

FALLBACK_REASONS = ("error", "latency", "nan", "invalid_output", "humility", "saturated")
_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class MicrobatchOptions(BaseModel):
    """Adaptive micro-batching: concurrent requests are scored together."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    max_batch: int = Field(default=32, ge=1, le=4096)
    max_wait_ms: float = Field(default=2.0, ge=0, le=1000)


class HumilityOptions(BaseModel):
    """Inputs outside the training range (widened by ``margin`` of it) skip the model."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    features: list[str] | None = None  # None: every numeric feature of the profile
    margin: float = Field(default=0.0, ge=0, le=100)


class ConcurrencyOptions(BaseModel):
    """Capacity of each link (champion, challenger, failover, fallback function) of one project in one replica."""

    model_config = ConfigDict(extra="forbid")

    max_in_flight: int = Field(default=4, ge=1, le=256)  # calls running at once (abandoned ones included)
    max_queued: int = Field(default=64, ge=0, le=100_000)  # calls waiting for a slot; more -> skipped / 503
    # Library-only versions (no project code) whose calls all take at most this long run small batches on the
    # event loop instead of a thread (no hand-off); 0 never does. See serving/lanes.py, InlineGate.
    inline_ms: float = Field(default=2.0, ge=0, le=50)


class DeploymentOptions(BaseModel):
    """How a replica serves one deployment."""

    model_config = ConfigDict(extra="forbid")

    unknown_fields: Literal["reject", "ignore"] = "reject"
    latency_budget_ms: float | None = Field(default=None, gt=0)
    microbatch: MicrobatchOptions = Field(default_factory=MicrobatchOptions)
    humility: HumilityOptions = Field(default_factory=HumilityOptions)
    max_records: int = Field(default=10_000, ge=1, le=1_000_000)
    concurrency: ConcurrencyOptions = Field(default_factory=ConcurrencyOptions)


Op = Literal["<", "<=", ">", ">=", "==", "!=", "in", "not_in", "is_null", "not_null"]


class Condition(BaseModel):
    """One test on one feature of a record."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    op: Op
    value: Any = None

    def holds(self, record: dict[str, Any]) -> bool:
        """Whether the condition is true for ``record`` (a failed comparison is false)."""
        actual = record.get(self.feature)
        if self.op == "is_null":
            return actual is None
        if self.op == "not_null":
            return actual is not None
        if actual is None:
            return False
        try:
            match self.op:
                case "<":
                    return actual < self.value
                case "<=":
                    return actual <= self.value
                case ">":
                    return actual > self.value
                case ">=":
                    return actual >= self.value
                case "==":
                    return actual == self.value
                case "!=":
                    return actual != self.value
                case "in":
                    return actual in self.value
                case "not_in":
                    return actual not in self.value
        except TypeError:
            return False
        return False  # pragma: no cover


class Rule(BaseModel):
    """If every condition in ``when`` holds, answer ``output``."""

    model_config = ConfigDict(extra="forbid")

    when: list[Condition] = Field(default_factory=list)
    output: Any

    @field_validator("when", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


class FallbackConfig(BaseModel):
    """The rules of last resort: a rule table with a default, or a project function."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    default: Any = None
    function: str | None = None  # "module:function" in the project code, records frame -> predictions
    on: list[Literal["error", "latency", "nan", "invalid_output", "humility", "saturated"]] = Field(
        default_factory=lambda: list(FALLBACK_REASONS)
    )

    @field_validator("function")
    @classmethod
    def _entrypoint(cls, value: str | None) -> str | None:
        if value is not None and not _ENTRYPOINT.match(value):
            raise ValueError(f"{value!r} is not 'module:function'")
        return value

    @property
    def configured(self) -> bool:
        """Whether there is anything to answer with."""
        return bool(self.rules) or self.default is not None or self.function is not None


def evaluate_rules(config: FallbackConfig, record: dict[str, Any]) -> tuple[bool, Any]:
    """(matched, output) for one record: the first matching rule, else the default."""
    for rule in config.rules:
        if all(condition.holds(record) for condition in rule.when):
            return True, rule.output
    if config.default is not None:
        return True, config.default
    return False, None


class HumilityCheck:
    """Per-feature bounds from a reference profile; names the features a record breaks."""

    __slots__ = ("bounds",)

    def __init__(self, profile: ReferenceProfile, options: HumilityOptions) -> None:
        self.bounds: list[tuple[str, float, float]] = []
        names = options.features if options.features is not None else list(profile.features)
        for name in names:
            feature = profile.features.get(name)
            if not isinstance(feature, NumericProfile) or feature.minimum is None or feature.maximum is None:
                continue
            slack = (feature.maximum - feature.minimum) * options.margin
            self.bounds.append((name, feature.minimum - slack, feature.maximum + slack))

    def violations(self, record: dict[str, Any]) -> list[str]:
        """Features of ``record`` outside their bounds (nulls and non-numbers are not judged)."""
        out: list[str] = []
        for name, low, high in self.bounds:
            value = record.get(name)
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and (math.isnan(value) or value < low or value > high)
            ):
                out.append(name)
        return out


def _validated(model: type[BaseModel], data: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidInputError(f"invalid {what}: {problems}", "see docs/serving.md for the accepted keys") from None


def validate_fallback_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a fallback config; return it normalised (raises InvalidInputError)."""
    return _validated(FallbackConfig, config, "fallback config")


def validate_deployment_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check deployment options; return them normalised (raises InvalidInputError)."""
    return _validated(DeploymentOptions, options, "deployment options")


def merge_deployment_options(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``changes`` laid over it (a nested section keeps the keys a change does not name),
    checked and normalised (raises InvalidInputError)."""
    merged = dict(current)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return validate_deployment_options(merged)
