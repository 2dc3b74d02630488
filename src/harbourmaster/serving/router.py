"""The routing table a replica serves from, and the fallback chain each request walks.

A ``RoutingTable`` is immutable: the reconciler builds a new one and swaps one
reference, so a request that took the old table finishes on the versions it
started with (hot swap with no failed request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harbourmaster.bundle.predictor import Batch, Predictor
from harbourmaster.core.fallback import DeploymentOptions, FallbackConfig, HumilityCheck, evaluate_rules
from harbourmaster.core.profile import ReferenceProfile
from harbourmaster.core.routing import choose_side
from harbourmaster.core.validation import Validator
from harbourmaster.schemas import DeploymentState
from harbourmaster.serving.lanes import InlineGate, Lane, Saturated
from harbourmaster.serving.metrics import ServingMetrics
from harbourmaster.serving.microbatch import Microbatcher

log = logging.getLogger("harbourmaster.serving")

INLINE_MAX_ROWS = 8  # larger batches always go to the lane's threads (and are not timed for the gate)


@dataclass(frozen=True)
class Link:
    """One model of the chain with what it needs on the request path."""

    role: str  # champion | challenger | failover
    predictor: Predictor
    humility: HumilityCheck | None
    lane: Lane
    batcher: Microbatcher | None = None
    gate: InlineGate | None = None  # small calls may run on the event loop (library code only, see lanes.py)


@dataclass(frozen=True)
class ProjectRoute:
    """Everything needed to answer one project's requests, built off the request path."""

    state: DeploymentState
    options: DeploymentOptions
    validator: Validator
    champion: Link
    challenger: Link | None
    challenger_mode: str | None
    failover: Link | None
    fallback: FallbackConfig
    fallback_function: Callable[[pd.DataFrame], Any] | None
    rules_lane: Lane | None = None  # where the fallback function runs

    @property
    def project(self) -> str:
        return self.state.project

    @property
    def revision(self) -> int:
        return self.state.revision

    def predictors(self) -> list[Link]:
        return [link for link in (self.champion, self.challenger, self.failover) if link is not None]


@dataclass(frozen=True)
class RoutingTable:
    routes: dict[str, ProjectRoute] = field(default_factory=dict)
    ready: bool = False


@dataclass
class Outcome:
    """What answered a request."""

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None
    version: int | None
    path: str  # champion | challenger | failover | rules
    reason: str | None = None  # why the chain left the first model, if it did
    detail: str | None = None


class ModelUnavailable(Exception):
    """Every link of the chain failed and no fallback rule answered (``saturated``: a full lane was one cause)."""

    def __init__(self, reason: str, detail: str, saturated: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.saturated = saturated


def humility_for(predictor: Predictor, options: DeploymentOptions) -> HumilityCheck | None:
    if not options.humility.enabled:
        return None
    profile = ReferenceProfile.model_validate(predictor.bundle.manifest.profile)
    return HumilityCheck(profile, options.humility)


def pick_side(route: ProjectRoute, records: list[dict[str, Any]], sticky: str | None) -> str:
    """Champion or challenger for a canary; the sticky value comes from a header or the first record."""
    if route.challenger is None or route.challenger_mode != "canary":
        return "champion"
    key = route.state.challenger.sticky_key if route.state.challenger else None
    value = sticky
    if value is None and key and records:
        found = records[0].get(key)
        value = None if found is None else str(found)
    return choose_side(route.state.challenger.weight if route.state.challenger else 0.0, value)


async def _call(link: Link, batch: Batch, budget_ms: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    if link.batcher is not None:
        call = link.batcher.submit(batch)
    else:
        gate = link.gate if len(batch.records) <= INLINE_MAX_ROWS else None
        call = link.lane.run(link.predictor.predict, batch, gate=gate)
    if budget_ms is None:
        return await call
    return await asyncio.wait_for(call, budget_ms / 1000.0)


async def run_chain(route: ProjectRoute, batch: Batch, side: str, metrics: ServingMetrics) -> Outcome:
    """Walk champion (or canary challenger) -> champion -> failover -> rules until one answers.

    Every model call runs in its link's lane (in its threads; on the event loop only through an open
    ``InlineGate``: library code, small batches, an idle lane); a link whose lane is full is skipped at
    once (reason ``saturated``), so a slow champion cannot take its failover's capacity.
    """
    links: list[Link] = []
    if side == "challenger" and route.challenger is not None:
        links.append(route.challenger)
    links.append(route.champion)
    if route.failover is not None:
        links.append(route.failover)
    budget = route.options.latency_budget_ms
    first_reason: str | None = None
    saturated = False
    detail = ""
    details: list[str] = []  # what each link that did not answer said, in order: nobody is blamed for another
    for index, link in enumerate(links):
        reason = None
        if link.humility is not None:
            broken = sorted({name for record in batch.records for name in link.humility.violations(record)})
            if broken:
                reason, detail = "humility", f"outside the training range: {', '.join(broken[:10])}"
        if reason is None:
            started = time.perf_counter()
            try:
                labels, proba = await _call(link, batch, budget)
            except Saturated as exc:
                reason, detail, saturated = "saturated", f"version {link.predictor.number}: {exc}", True
                metrics.saturated(route.project, link.role)
            except TimeoutError:
                reason, detail = "latency", f"version {link.predictor.number} exceeded {budget} ms"
            except Exception as exc:
                reason, detail = "error", f"version {link.predictor.number} raised {type(exc).__name__}: {exc}"
            else:
                if budget is not None and (time.perf_counter() - started) * 1000.0 > budget:
                    reason, detail = "latency", f"version {link.predictor.number} exceeded {budget} ms"
                else:
                    reason = link.predictor.invalid(labels, proba, len(batch))
                    if reason is None:
                        predictions, probabilities = link.predictor.answers(labels, proba)
                        said = "; ".join(details) or None
                        return Outcome(predictions, probabilities, link.predictor.number, link.role, first_reason, said)
                    detail = (
                        f"version {link.predictor.number} returned {'NaN' if reason == 'nan' else 'an invalid output'}"
                    )
        first_reason = first_reason or reason
        details.append(f"{link.role} {detail}" if len(links) > 1 else detail)
        target = links[index + 1].role if index + 1 < len(links) else "rules"
        metrics.fallback(route.project, link.role, reason, target)
    assert first_reason is not None
    if route.fallback.configured and first_reason in route.fallback.on:
        answered = await _rules(route, batch, metrics, budget)
        if answered is not None:
            return Outcome(answered, None, None, "rules", first_reason, "; ".join(details))
        details.append("no fallback rule matched")
    raise ModelUnavailable(first_reason, "; ".join(details), saturated)


async def _rules(
    route: ProjectRoute, batch: Batch, metrics: ServingMetrics, budget_ms: float | None
) -> list[Any] | None:
    function, lane = route.fallback_function, route.rules_lane
    if function is not None and lane is not None:
        try:
            call = lane.run(_function_answers, function, batch)
            return await (call if budget_ms is None else asyncio.wait_for(call, budget_ms / 1000.0))
        except Exception as exc:  # counted and logged; the rule table (if any) gets its turn
            kind = {TimeoutError: "latency", Saturated: "saturated"}.get(type(exc), "error")
            log.warning("%s: fallback function %s failed (%s): %r", route.project, route.fallback.function, kind, exc)
            metrics.fallback_function_failed(route.project, kind)
    answers: list[Any] = []
    for record in batch.records:
        matched, output = evaluate_rules(route.fallback, record)
        if not matched:
            return None
        answers.append(output)
    return answers


def _function_answers(function: Callable[[pd.DataFrame], Any], batch: Batch) -> list[Any]:
    """The fallback function's answers, one per record (anything else is an error)."""
    result = function(pd.DataFrame.from_records(batch.records))
    values = [_plain(v) for v in np.asarray(result).reshape(-1).tolist()]
    if len(values) != len(batch):
        raise ValueError(f"returned {len(values)} answers for {len(batch)} records")
    return values


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
