"""Audit: the signed log, filtered and paginated; the chain's verification status; export."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from harbourmaster.console.paging import page_window, pager
from harbourmaster.console.render import render
from harbourmaster.console.session import form_actor, platform_of, session_actor
from harbourmaster.core.limits import MAX_KEY, MAX_NAME
from harbourmaster.core.permissions import Permission
from harbourmaster.services.actors import Actor

router = APIRouter()
NAV: tuple[str, str] | None = ("Audit", "/audit")
PERMISSION = Permission.AUDIT  # the link shows to auditors and admins only
OUTCOMES = ("allowed", "denied", "failed")


@dataclass(frozen=True)
class LastVerification:
    """The latest verification of the chain asked for from this server's console."""

    at: datetime
    by: str
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    anchored_seq: int | None
    problems: tuple[str, ...]
    seconds: float


def _time(value: str | None, what: str) -> datetime | None:
    from harbourmaster.errors import InvalidInputError

    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"{what} {value!r} is not a time", "use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from exc
    return parsed if parsed.tzinfo else parsed.astimezone()  # a browser's datetime-local is the reader's time


@router.get("/audit")
async def audit_page(
    request: Request,
    action: str | None = Query(None, max_length=MAX_NAME),
    by: str | None = Query(None, max_length=MAX_NAME),
    target: str | None = Query(None, max_length=MAX_KEY),
    environment: str | None = Query(None, max_length=MAX_NAME),
    outcome: str | None = Query(None, max_length=16),
    since: str | None = Query(None, max_length=40),
    until: str | None = Query(None, max_length=40),
    offset: int | None = Query(None, ge=0, le=10_000_000),
    size: int | None = Query(None, ge=1, le=200),
    before: int | None = Query(None, ge=1),
    after: int | None = Query(None, ge=0),
    actor: Actor = Depends(session_actor),
) -> HTMLResponse:
    """Newest first; the older and newer links page by key (``before``/``after`` an entry's number), so the
    last pages of 100,000 entries cost what the first does; ``offset`` alone still works (and numbers rows)."""
    platform = platform_of(request)
    start, count = page_window(offset, size)
    filters = {
        "action": action or "",
        "by": by or "",
        "target": target or "",
        "environment": environment or "",
        "outcome": outcome or "",
        "since": since or "",
        "until": until or "",
    }
    entries, total = await run_in_threadpool(
        lambda: platform.audit.search(
            actor,
            action=action or None,
            by=by or None,
            target=target or None,
            environment=environment or None,
            outcome=outcome or None,
            since=_time(since, "since"),
            until=_time(until, "until"),
            offset=start,
            limit=count,
            before_seq=before,
            after_seq=after,
        )
    )
    if after is not None and len(entries) < count:  # fewer newer entries than a page: the newest page
        start = 0
    environments = [env.name for env in platform.environments.list()]
    return render(
        request,
        "audit.html",
        entries=entries,
        filters=filters,
        outcomes=OUTCOMES,
        environments=environments,
        pager=pager(
            request,
            start,
            count,
            len(entries),
            total,
            start + len(entries) < total,
            older=("before", str(entries[-1]["seq"])) if entries else None,
            newer=("after", str(entries[0]["seq"])) if entries else None,
        ),
        last=getattr(request.app.state, "console_last_verification", None),
    )


@router.post("/audit/chain")
async def verify_chain(request: Request, actor: Actor = Depends(form_actor)) -> HTMLResponse:
    """Verify the whole chain now (signatures, anchors, linked rows), as ``harbourmaster audit verify``.

    It reads every entry, so it grows with the log (seconds at 100,000 entries): the page asks for it
    with a button, and shows the last result this server got (when, by whom) meanwhile. A POST: an
    intact chain is anchored, which writes."""
    started = time.perf_counter()
    report = await run_in_threadpool(platform_of(request).audit.verify, actor)
    last = LastVerification(
        at=datetime.now(UTC),
        by=actor.name,
        ok=report.ok,
        checked=report.checked,
        head_seq=report.head_seq,
        head_hash=report.head_hash,
        anchored_seq=report.anchored_seq,
        problems=tuple(report.problems[:20]),
        seconds=time.perf_counter() - started,
    )
    request.app.state.console_last_verification = last
    return render(request, "audit_chain.html", last=last)


@router.get("/audit/export")
async def export(
    request: Request,
    format: str = Query("jsonl", pattern="^(jsonl|csv)$"),
    since: str | None = Query(None, max_length=40),
    actor: Actor = Depends(session_actor),
) -> Response:
    """The same signed export as ``harbourmaster audit export`` (entries since a time, with the trailer)."""
    body = await run_in_threadpool(platform_of(request).audit.export, actor, _time(since, "since"), format)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="audit.{format}"'})
