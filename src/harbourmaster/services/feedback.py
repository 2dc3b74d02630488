"""Ground truth: true values for served requests, stored beside the prediction log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from harbourmaster.errors import InvalidInputError
from harbourmaster.services.actors import Actor
from harbourmaster.store.prediction_log import write_feedback

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

MAX_ITEMS = 100_000


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
            if not isinstance(row, int) or isinstance(row, bool) or row < 0:
                raise InvalidInputError(f"feedback[{index}].row must be a non-negative integer", "row of the request")
            items.append((str(entry["request_id"]), row, entry["value"]))
    elif "request_ids" in body and "values" in body:
        ids, values = body["request_ids"], body["values"]
        if not isinstance(ids, list) or not isinstance(values, list) or len(ids) != len(values):
            raise InvalidInputError("'request_ids' and 'values' must be lists of equal length", "one value per id")
        items = [(str(rid), 0, value) for rid, value in zip(ids, values, strict=True)]
    else:
        raise InvalidInputError(
            "feedback needs 'feedback' or 'request_ids' and 'values'",
            'send {"feedback": [{"request_id": "...", "value": 1}]}',
        )
    if not items:
        raise InvalidInputError("feedback is empty", "send at least one value")
    if len(items) > MAX_ITEMS:
        raise InvalidInputError(f"too many feedback items ({len(items)})", f"send at most {MAX_ITEMS} per call")
    return items


class FeedbackService:
    """Stores ground truth as Parquet under feedback/env=.../project=.../date=..., joinable by request id."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def record(self, actor: Actor, project: str, environment: str, items: list[tuple[str, int, Any]]) -> int:
        """Store ground truth sent by ``actor`` (the authenticated caller) and audit it; returns the count."""
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
