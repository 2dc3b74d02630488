"""Ground truth: true values for served requests, stored beside the prediction log."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from harbourmaster.errors import InvalidInputError
from harbourmaster.services.actors import Actor
from harbourmaster.store.prediction_log import PredictionLog, write_feedback

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

MAX_ITEMS = 100_000
MAX_REQUEST_ID = 200  # characters
SHOWN = 5  # problems named in one error message

# request ids -> rows of each that was answered (missing ids: not known there)
Lookup = Callable[[set[str]], dict[str, int]]


def parse_feedback(body: Any) -> list[tuple[str, int, Any]]:
    """(request_id, row, value) from ``{"feedback": [{"request_id", "value", "row"?}]}``
    or ``{"request_ids": [...], "values": [...]}``; raises InvalidInputError naming the problem."""
    if not isinstance(body, dict):
        raise InvalidInputError(
            "feedback must be a JSON object", 'send {"feedback": [{"request_id": ..., "value": ...}]}'
        )
    items: list[tuple[str, int, Any]] = []
    if "feedback" in body:
        entries = body["feedback"]
        if not isinstance(entries, list):
            raise InvalidInputError("'feedback' must be a list", "one object per request")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or "request_id" not in entry or "value" not in entry:
                raise InvalidInputError(
                    f"feedback[{index}] needs 'request_id' and 'value'", "row (default 0) is optional"
                )
            row = entry.get("row", 0)
            if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < 2**31:
                raise InvalidInputError(f"feedback[{index}].row must be a non-negative integer", "row of the request")
            items.append((_request_id(entry["request_id"], f"feedback[{index}].request_id"), row, entry["value"]))
    elif "request_ids" in body and "values" in body:
        ids, values = body["request_ids"], body["values"]
        if not isinstance(ids, list) or not isinstance(values, list) or len(ids) != len(values):
            raise InvalidInputError("'request_ids' and 'values' must be lists of equal length", "one value per id")
        items = [
            (_request_id(rid, f"request_ids[{index}]"), 0, value)
            for index, (rid, value) in enumerate(zip(ids, values, strict=True))
        ]
    else:
        raise InvalidInputError(
            "feedback needs 'feedback' or 'request_ids' and 'values'",
            'send {"feedback": [{"request_id": "...", "value": 1}]}',
        )
    if not items:
        raise InvalidInputError("feedback is empty", "send at least one value")
    if len(items) > MAX_ITEMS:
        raise InvalidInputError(f"too many feedback items ({len(items)})", f"send at most {MAX_ITEMS} per call")
    for index, (_rid, _row, value) in enumerate(items):
        if isinstance(value, dict | list) or value is None:
            raise InvalidInputError(
                f"feedback value #{index} is {type(value).__name__}, not a label or number", "send the true value"
            )
    return items


def _request_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_REQUEST_ID:
        raise InvalidInputError(
            f"{where} must be a request id (a non-empty string of at most {MAX_REQUEST_ID} characters)",
            "use the request_id a prediction answered with",
        )
    return value


def _label(value: Any) -> str:
    """A value as the class key it names (1, 1.0 and "1" all name class 1)."""
    if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
        value = int(value)
    return str(value)


def check_feedback(items: list[tuple[str, int, Any]], lookup: Lookup, classes: Iterable[Any] | None) -> None:
    """Refuse feedback for a request or row that was never answered, or a label outside ``classes``.

    ``lookup`` gives the number of rows of each answered request it knows; ``classes`` (None for a
    regression) are the labels the deployed versions can predict.
    """
    if classes is not None:
        allowed = {str(c) for c in classes}
        wrong = [(i, v) for i, (_, _, v) in enumerate(items) if _label(v) not in allowed]
        if wrong:
            shown = ", ".join(f"#{i}: {v!r}" for i, v in wrong[:SHOWN])
            raise InvalidInputError(
                f"{len(wrong)} feedback value(s) are not classes of this model ({shown})",
                f"the classes are: {', '.join(sorted(allowed))}",
            )
    known = lookup({request_id for request_id, _, _ in items})
    unknown = sorted({rid for rid, _, _ in items if rid not in known})
    if unknown:
        raise InvalidInputError(
            f"{len(unknown)} request id(s) were not answered in this environment: {', '.join(unknown[:SHOWN])}",
            "send feedback for request ids that predictions answered with (a request answered in the last "
            "seconds by another replica may not be in the log yet: retry)",
        )
    rows = [(rid, row) for rid, row, _ in items if row >= known[rid]]
    if rows:
        shown = ", ".join(f"{rid} row {row} (of {known[rid]})" for rid, row in rows[:SHOWN])
        raise InvalidInputError(f"{len(rows)} feedback row(s) do not exist: {shown}", "rows count from 0")


class FeedbackService:
    """Stores ground truth as Parquet under feedback/env=.../project=.../date=..., joinable by request id."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def answered(self, environment: str, project: str, request_ids: set[str]) -> dict[str, int]:
        """Rows of each of ``request_ids`` answered (status 200) in the prediction log."""
        if not request_ids:
            return {}
        found = PredictionLog(self._platform.artifacts).query(
            "SELECT request_id, max(row) + 1 AS n FROM predictions "
            "WHERE status = 200 AND request_id IN (SELECT unnest(?)) GROUP BY request_id",
            environment,
            project,
            [sorted(request_ids)],
        )
        return {str(rid): int(n) for rid, n in zip(found["request_id"], found["n"], strict=True)}

    def record(
        self,
        actor: Actor,
        project: str,
        environment: str,
        items: list[tuple[str, int, Any]],
        *,
        classes: Iterable[Any] | None = None,
        recent: Lookup | None = None,
    ) -> int:
        """Store ground truth sent by ``actor`` (the authenticated caller) for answered requests, checked
        first (see ``check_feedback``), and audit it; returns the count.

        ``recent`` answers for requests known without reading the log (a replica's recent answers).
        """

        def lookup(ids: set[str]) -> dict[str, int]:
            known = recent(ids) if recent is not None else {}
            missing = ids - known.keys()
            return {**known, **self.answered(environment, project, missing)} if missing else known

        check_feedback(items, lookup, classes)
        now = datetime.now(UTC)
        rows = [
            {
                "request_id": request_id,
                "row": row,
                "ts": now,
                "environment": environment,
                "project": project,
                "value": orjson.dumps(value).decode(),
                "actor": actor.name,
            }
            for request_id, row, value in items
        ]
        try:
            write_feedback(self._platform.artifacts, rows)
        except Exception as exc:
            self._audit(actor, project, environment, len(rows), "failed", f"{type(exc).__name__}: {exc}")
            raise
        self._audit(actor, project, environment, len(rows), "allowed", None)
        return len(rows)

    def _audit(self, actor: Actor, project: str, environment: str, count: int, outcome: str, error: str | None) -> None:
        details: dict[str, Any] = {"items": count}
        if error:
            details["error"] = error[:500]
        self._platform.audit.record_alone(
            actor, "feedback.record", project, outcome=outcome, environment=environment, details=details
        )
