"""A progressive rollout's decisions (pure, no I/O): the plan of a canary, and the rules that judge one
step from the two sides' traffic over the step's interval.

Each rule looks at the challenger's and the champion's figures (requests, error rate, p99 latency,
fallback rate) and the environment's SLA, and returns a ``RuleVerdict``: ``breach`` (roll back),
``wait`` (no verdict yet) or ``pass``, each with its reason. ``decide`` runs them in order: a breach
wins, then a wait; when all pass and the bake time is over, the rollout takes its next step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harbourmaster.core.environments import SlaConfig
from harbourmaster.core.sla import Counts, quantile
from harbourmaster.errors import InvalidInputError

STRATEGIES = ("immediate", "blue-green", "canary", "shadow")
DEFAULT_STEPS: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
DEFAULT_BAKE_SECONDS = 600.0
DEFAULT_SHADOW_SECONDS = 1800.0
MIN_REQUESTS = 50  # per side and step: no verdict on a handful of requests
# The challenger may be this much worse than the champion before it counts as a breach (besides the SLA).
ERROR_MARGIN = 0.01  # absolute error-rate points
LATENCY_FACTOR = 2.0  # p99 may be up to twice the champion's ...
LATENCY_SLACK_MS = 100.0  # ... plus this: a p99 over a few hundred requests is noisy, and histogram buckets coarse
FALLBACK_MARGIN = 0.02
MIN_AGREEMENT = 0.95  # a shadow's answers agreeing with the champion's, for an automatic completion

Outcome = Literal["pass", "wait", "breach"]
Action = Literal["wait", "advance", "complete", "rollback"]


def parse_steps(text: str | Sequence[float] | None) -> tuple[float, ...]:
    """Canary weights in percent, rising, ending at 100 (``"5,25,50,100"``)."""
    if text is None or text == "":
        return DEFAULT_STEPS
    try:
        steps = tuple(float(part) for part in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise InvalidInputError(f"--steps {text!r} is not a list of percentages", "e.g. --steps 5,25,50,100") from None
    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)) or steps[-1] != 100:
        raise InvalidInputError(
            f"--steps {text!r}: weights must rise, each above 0 and at most 100, and end at 100",
            "e.g. --steps 5,25,50,100",
        )
    return steps


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_seconds(text: str | float | None, default: float, name: str) -> float:
    """``10m``, ``30s``, ``1.5h`` or a plain number of seconds."""
    if text is None or text == "":
        return default
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if not match:
            raise InvalidInputError(f"{name} {text!r} is not a duration", f"e.g. {name} 10m, 30s or 1h")
        scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
        seconds = float(match.group(1)) * scale
    if not 0 < seconds <= 7 * 86400:
        raise InvalidInputError(f"{name} {text!r} is out of range", "give more than 0 and at most 7 days")
    return seconds


def rollout_plan(
    strategy: str = "immediate",
    *,
    steps: str | Sequence[float] | None = None,
    bake: str | float | None = None,
    shadow_for: str | float | None = None,
    sticky_key: str | None = None,
    decide: str = "auto",
    min_requests: int | None = None,
) -> dict[str, Any]:
    """A promotion's rollout, checked whole: strategy, canary steps, bake seconds and options."""
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy {strategy!r} is unknown", f"use one of: {', '.join(STRATEGIES)}")
    if decide not in ("auto", "manual"):
        raise InvalidInputError(f"--decide {decide!r} is unknown", "use auto or manual")
    if min_requests is not None and not 1 <= min_requests <= 10_000_000:
        raise InvalidInputError(f"minimum traffic {min_requests} is out of range", "give at least 1 request")
    options: dict[str, Any] = {"decide": decide}
    if sticky_key:
        options["sticky_key"] = sticky_key
    if min_requests is not None:
        options["min_requests"] = min_requests
    if strategy == "shadow":
        options["shadow_seconds"] = parse_seconds(shadow_for, DEFAULT_SHADOW_SECONDS, "--shadow-for")
    return {
        "strategy": strategy,
        "steps": list(parse_steps(steps)) if strategy == "canary" else [],
        "bake_seconds": parse_seconds(bake, DEFAULT_BAKE_SECONDS, "--bake"),
        "options": options,
    }


@dataclass(frozen=True)
class SideFigures:
    """One side's traffic over a step's interval."""

    requests: float
    error_rate: float | None
    fallback_rate: float | None
    p99_ms: float | None

    @classmethod
    def of(cls, counts: Counts) -> SideFigures:
        total = counts.requests
        p99 = quantile(0.99, counts)
        return cls(
            requests=total,
            error_rate=counts.errors / total if total else None,
            fallback_rate=counts.fallbacks / total if total else None,
            p99_ms=None if p99 is None else p99 * 1000.0,
        )

    def describe(self) -> str:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{value:.2%}"

        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.1f} ms"
        return (
            f"{self.requests:.0f} requests, errors {pct(self.error_rate)}, "
            f"fallbacks {pct(self.fallback_rate)}, p99 {p99}"
        )


@dataclass(frozen=True)
class StepInput:
    """What the rules see for one step: both sides' figures, the SLA, the minimum traffic."""

    challenger: SideFigures
    champion: SideFigures
    sla: SlaConfig
    min_requests: int = MIN_REQUESTS
    weight: float = 100.0  # the challenger's share now (at 100 the champion gets no traffic to compare)


@dataclass(frozen=True)
class RuleVerdict:
    rule: str
    outcome: Outcome
    reason: str


class MinTraffic:
    """No verdict before the challenger has answered enough requests in this step."""

    name = "min-traffic"

    def judge(self, step: StepInput) -> RuleVerdict:
        seen = step.challenger.requests
        if seen < step.min_requests:
            return RuleVerdict(self.name, "wait", f"challenger saw {seen:.0f} of {step.min_requests} requests needed")
        return RuleVerdict(self.name, "pass", f"challenger saw {seen:.0f} requests")


@dataclass(frozen=True)
class RateRule:
    """A rate of the challenger (errors, fallbacks) against the SLA's bound and the champion's rate."""

    name: str
    field: str  # error_rate | fallback_rate
    margin: float

    def judge(self, step: StepInput) -> RuleVerdict:
        mine: float | None = getattr(step.challenger, self.field)
        theirs: float | None = getattr(step.champion, self.field)
        limit: float | None = getattr(step.sla, self.field)
        label = self.field.replace("_", " ")
        if mine is None:
            return RuleVerdict(self.name, "wait", f"no challenger {label} yet")
        if limit is not None and mine > limit:
            return RuleVerdict(self.name, "breach", f"challenger {label} {mine:.2%} is above the SLA's {limit:.2%}")
        compare = theirs is not None and step.champion.requests >= step.min_requests
        if compare and mine > theirs + self.margin:
            return RuleVerdict(
                self.name,
                "breach",
                f"challenger {label} {mine:.2%} is worse than the champion's {theirs:.2%} (+{self.margin:.0%} allowed)",
            )
        versus = f", champion {theirs:.2%}" if compare else ""
        return RuleVerdict(self.name, "pass", f"challenger {label} {mine:.2%}{versus}")


class LatencyRule:
    """The challenger's p99 against the SLA's and against the champion's."""

    name = "latency-p99"

    def judge(self, step: StepInput) -> RuleVerdict:
        mine, theirs, limit = step.challenger.p99_ms, step.champion.p99_ms, step.sla.p99_ms
        if mine is None:
            return RuleVerdict(self.name, "wait", "no timed challenger request yet")
        if limit is not None and mine > limit:
            return RuleVerdict(self.name, "breach", f"challenger p99 {mine:.1f} ms is above the SLA's {limit:g} ms")
        compare = theirs is not None and step.champion.requests >= step.min_requests
        if compare and mine > theirs * LATENCY_FACTOR + LATENCY_SLACK_MS:
            return RuleVerdict(
                self.name,
                "breach",
                f"challenger p99 {mine:.1f} ms is more than {LATENCY_FACTOR:g}x the champion's {theirs:.1f} ms "
                f"(+{LATENCY_SLACK_MS:g} ms)",
            )
        versus = f", champion {theirs:.1f} ms" if compare else ""
        return RuleVerdict(self.name, "pass", f"challenger p99 {mine:.1f} ms{versus}")


RULES = (
    RateRule("error-rate", "error_rate", ERROR_MARGIN),
    LatencyRule(),
    RateRule("fallback-rate", "fallback_rate", FALLBACK_MARGIN),
)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    verdicts: tuple[RuleVerdict, ...] = ()


def decide(step: StepInput, *, baked: bool, last_step: bool) -> Decision:
    """What the controller does now with a canary step.

    A breach rolls back at once, even before the minimum traffic (enough requests have failed to
    tell); otherwise nothing is decided before the minimum traffic or the bake time.
    """
    verdicts = tuple(rule.judge(step) for rule in RULES)
    enough = MinTraffic().judge(step)
    breaches = [v for v in verdicts if v.outcome == "breach"]
    failed = step.challenger.error_rate or 0.0
    if breaches and (enough.outcome == "pass" or failed * step.challenger.requests >= step.min_requests / 5):
        return Decision("rollback", "; ".join(v.reason for v in breaches), (enough, *verdicts))
    if enough.outcome == "wait":
        return Decision("wait", enough.reason, (enough, *verdicts))
    waiting = [v for v in verdicts if v.outcome == "wait"]
    if waiting:
        return Decision("wait", "; ".join(v.reason for v in waiting), (enough, *verdicts))
    if not baked:
        return Decision("wait", "baking: " + "; ".join(v.reason for v in verdicts), (enough, *verdicts))
    summary = "; ".join(v.reason for v in verdicts)
    return Decision("complete" if last_step else "advance", summary, (enough, *verdicts))


@dataclass(frozen=True)
class ShadowInput:
    """A shadow period's comparison: the challenger's copies against the champion's answers."""

    compared: int  # requests with both answers
    agreed: int
    shadow_errors: int
    min_requests: int = MIN_REQUESTS
    min_agreement: float = MIN_AGREEMENT


def decide_shadow(shadow: ShadowInput, *, elapsed: bool, automatic: bool) -> Decision:
    """After the shadow period: complete (automatic, agreement high enough, no errors), hold for a person,
    or wait for traffic."""
    if not elapsed:
        return Decision("wait", "mirroring")
    if shadow.compared < shadow.min_requests:
        return Decision("wait", f"{shadow.compared} of {shadow.min_requests} mirrored requests compared")
    rate = shadow.agreed / shadow.compared
    summary = f"{shadow.compared} mirrored requests, agreement {rate:.1%}, {shadow.shadow_errors} challenger error(s)"
    good = rate >= shadow.min_agreement and shadow.shadow_errors == 0
    if automatic and good:
        return Decision("complete", summary)
    return Decision("wait", summary + (" - waiting for a person" if good else " - below the bar, waiting for a person"))
