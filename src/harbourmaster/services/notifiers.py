"""Notifiers: where alert changes are sent (a log line, a JSON webhook, a Slack-compatible webhook),
how admins configure them, and the delivery of queued notifications with retries.

A notification is queued as a row of ``alert_deliveries`` in the same transaction as the alert
change, under an idempotency key (alert, change, notifier). Delivery happens later, off any
request path: a delivery is claimed (so two dispatchers never send it at once), sent with its
key as ``Idempotency-Key`` header and ``delivery_id`` field, and marked delivered; a failure is
recorded and retried with exponential backoff until the attempts run out (then ``failed``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from harbourmaster.core.alerts import SEVERITY_RANK
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import ConflictError, InvalidInputError, NotFoundError
from harbourmaster.services.actors import Actor
from harbourmaster.store.tables import AlertDeliveryRow, NotifierRow

if TYPE_CHECKING:
    from harbourmaster.services.platform import Platform

log = logging.getLogger("harbourmaster.alerts")

MAX_BACKOFF_SECONDS = 600.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class NotifierInfo(BaseModel):
    id: int
    name: str
    kind: str
    target: str  # the URL with its secret parts hidden
    min_severity: str
    created_by: str
    created_at: datetime


class DeliveryInfo(BaseModel):
    id: int
    key: str
    alert_id: int
    notifier: str
    event: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryFailed(Exception):
    """A notifier could not deliver (the message says why); the delivery is retried."""


class Notifier(Protocol):
    """Sends one notification; raises ``DeliveryFailed`` when the receiver did not take it."""

    def send(self, key: str, payload: dict[str, Any]) -> None: ...


class LogNotifier:
    """Writes the alert change to the control plane's log (``harbourmaster.alerts``)."""

    def send(self, key: str, payload: dict[str, Any]) -> None:
        alert = payload["alert"]
        level = (
            logging.CRITICAL if alert["severity"] == "critical" and payload["event"] != "resolved" else logging.WARNING
        )
        log.log(level, "alert %s %s: %s [delivery %s]", alert["id"], payload["event"], text_of(payload), key)


@dataclass
class WebhookNotifier:
    """POSTs the notification as JSON; any 2xx is delivered. ``slack`` sends Slack's ``{"text": ...}``."""

    url: str
    timeout: float
    slack: bool = False

    def send(self, key: str, payload: dict[str, Any]) -> None:
        body = {"text": text_of(payload)} if self.slack else payload
        headers = {"Idempotency-Key": key, "User-Agent": "harbourmaster-alerts"}
        try:
            response = httpx.post(self.url, json=body, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise DeliveryFailed(f"{mask_url(self.url)} did not answer within {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"cannot reach {mask_url(self.url)}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise DeliveryFailed(f"{mask_url(self.url)} answered {response.status_code}: {response.text[:200]}")


NotifierFactory = Callable[[str | None, float], Notifier]  # (url, timeout) -> a notifier

# Kind -> how to build one from its stored URL; a new kind plugs in with ``register_notifier_kind``.
NOTIFIER_KINDS: dict[str, NotifierFactory] = {
    "log": lambda _url, _timeout: LogNotifier(),
    "webhook": lambda url, timeout: WebhookNotifier(url or "", timeout),
    "slack": lambda url, timeout: WebhookNotifier(url or "", timeout, slack=True),
}
URL_FREE_KINDS = {"log"}


def register_notifier_kind(kind: str, factory: NotifierFactory, *, takes_url: bool = True) -> None:
    """Add a kind of notifier (e.g. e-mail, a pager's API) that admins can then configure."""
    NOTIFIER_KINDS[kind] = factory
    if not takes_url:
        URL_FREE_KINDS.add(kind)


def text_of(payload: dict[str, Any]) -> str:
    """One line for people: what fired (or resolved), where, and the evidence."""
    alert = payload["alert"]
    where = f" in {alert['environment']}" if alert.get("environment") else ""
    evidence = f" (evidence: {alert['evidence']})" if alert.get("evidence") else ""
    state = "RESOLVED" if payload["event"] == "resolved" else alert["severity"].upper()
    return f"[{state}] {alert['rule']} on {alert['subject']}{where}: {alert['summary']}{evidence}"


def mask_url(url: str | None) -> str:
    """A webhook URL with its secret parts hidden: scheme and host, the path's first segment, ``…``."""
    if not url:
        return "-"
    parts = urlsplit(url)
    first = parts.path.strip("/").split("/", 1)[0]
    shown = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    return f"{shown}/{first[:12]}…" if first else f"{shown}/…"


def _info(row: NotifierRow) -> NotifierInfo:
    return NotifierInfo(
        id=row.id,
        name=row.name,
        kind=row.kind,
        target=mask_url(row.url) if row.url else "control-plane log",
        min_severity=row.min_severity,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _check_url(kind: str, url: str | None) -> str | None:
    if kind in URL_FREE_KINDS:
        if url:
            raise InvalidInputError(f"a {kind} notifier takes no URL", "drop --webhook, or use --kind webhook")
        return None
    hint = "give --webhook https://hooks.example.com/..."
    if not url:
        raise InvalidInputError(f"a {kind} notifier needs a webhook URL", hint)
    parts = urlsplit(url)
    # The URL is a secret: a refusal says what is wrong with it without repeating it.
    if parts.scheme not in ("http", "https"):
        scheme = f"its scheme is {parts.scheme!r}" if parts.scheme else "it has no scheme"
        raise InvalidInputError(f"a {kind} notifier needs an http(s) URL; {scheme}", hint)
    if not parts.hostname:
        raise InvalidInputError(f"a {kind} notifier needs a URL with a host; {mask_url(url)} has none", hint)
    try:
        port = parts.port
    except ValueError:  # not a number, or beyond 65535
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise InvalidInputError(
            f"the webhook URL's port is not a number from 1 to 65535 ({parts.scheme}://{parts.hostname}:…)", hint
        )
    if len(url or "") > 2000:
        raise InvalidInputError("the webhook URL is longer than 2000 characters", "use a shorter URL")
    return url


class NotifierService:
    """Admins add, list and remove notifiers (audited, the URL masked); dispatchers deliver."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def add(
        self, actor: Actor, name: str, kind: str, url: str | None = None, min_severity: str = "warning"
    ) -> NotifierInfo:
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"notifier:{name}")
        if not _NAME.match(name):
            raise InvalidInputError(
                f"{name!r} is not a notifier name", "use lowercase letters, digits, '-' or '_' (at most 64)"
            )
        if kind not in NOTIFIER_KINDS:
            raise InvalidInputError(f"unknown notifier kind {kind!r}", f"use one of: {', '.join(NOTIFIER_KINDS)}")
        if min_severity not in ("warning", "critical"):
            raise InvalidInputError(f"unknown severity {min_severity!r}", "use warning or critical")
        checked = _check_url(kind, url)
        with self._platform.db.transaction() as session:
            if session.scalar(select(NotifierRow.id).where(NotifierRow.name == name)) is not None:
                raise ConflictError(f"a notifier named {name} exists", "remove it first, or pick another name")
            row = NotifierRow(name=name, kind=kind, url=checked, min_severity=min_severity, created_by=actor.name)
            session.add(row)
            session.flush()
            info = _info(row)
            self._platform.audit.record(
                session, actor, "notifier.add", f"notifier:{name}", after=info.model_dump(exclude={"created_at"})
            )
        return info

    def list(self, actor: Actor) -> list[NotifierInfo]:
        self._platform.access.require(actor, Permission.ADMINISTER, target="notifiers")
        with self._platform.db.reader() as session:
            return [_info(row) for row in session.scalars(select(NotifierRow).order_by(NotifierRow.name))]

    def remove(self, actor: Actor, name: str) -> NotifierInfo:
        self._platform.access.require(actor, Permission.ADMINISTER, target=f"notifier:{name}")
        with self._platform.db.transaction() as session:
            row = session.scalar(select(NotifierRow).where(NotifierRow.name == name))
            if row is None:
                raise NotFoundError(f"no notifier named {name}", "see harbourmaster notifiers list")
            info = _info(row)
            session.delete(row)
            self._platform.audit.record(
                session, actor, "notifier.remove", f"notifier:{name}", before=info.model_dump(exclude={"created_at"})
            )
        return info

    def deliveries(self, actor: Actor, alert_id: int | None = None, limit: int = 100) -> list[DeliveryInfo]:
        """Recent deliveries (what was sent where, how many attempts, the last error)."""
        self._platform.access.require(actor, Permission.READ, target="alert-deliveries")
        query = select(AlertDeliveryRow).order_by(AlertDeliveryRow.id.desc()).limit(limit)
        if alert_id is not None:
            query = query.where(AlertDeliveryRow.alert_id == alert_id)
        with self._platform.db.reader() as session:
            return [
                DeliveryInfo(
                    id=row.id,
                    key=row.key,
                    alert_id=row.alert_id,
                    notifier=row.notifier_name,
                    event=row.event,
                    status=row.status,
                    attempts=row.attempts,
                    last_error=row.last_error,
                    created_at=row.created_at,
                    delivered_at=row.delivered_at,
                )
                for row in session.scalars(query)
            ]

    # -- queueing and delivering ----------------------------------------------------------

    def queue(
        self, session: Session, alert_id: int, state_seq: int, event: str, severity: str, payload: dict[str, Any]
    ) -> int:
        """Queue the change for every notifier that wants this severity, in the caller's transaction."""
        queued = 0
        for notifier in session.scalars(select(NotifierRow).order_by(NotifierRow.id)):
            if event != "resolved" and SEVERITY_RANK[severity] < SEVERITY_RANK[notifier.min_severity]:
                continue
            key = f"hm-alert-{alert_id}-{state_seq}-{event}-n{notifier.id}"
            session.add(
                AlertDeliveryRow(
                    key=key,
                    alert_id=alert_id,
                    notifier_id=notifier.id,
                    notifier_name=notifier.name,
                    event=event,
                    payload={**payload, "delivery_id": key},
                    status="pending",
                    attempts=0,
                )
            )
            queued += 1
        return queued

    def deliver_due(self, *, now: Callable[[], datetime] | None = None, limit: int = 100) -> int:
        """Send every delivery that is due (one attempt each); returns how many were delivered now.

        Never raises for a receiver's failure: it is recorded on the delivery and retried later.
        """
        clock = now or (lambda: datetime.now(UTC))
        settings = self._platform.settings.monitoring
        with self._platform.db.reader() as session:
            due = session.scalars(
                select(AlertDeliveryRow.id)
                .where(AlertDeliveryRow.status.in_(("pending", "sending")))
                .where(AlertDeliveryRow.next_attempt_at <= clock())
                .order_by(AlertDeliveryRow.id)
                .limit(limit)
            ).all()
        delivered = 0
        for delivery_id in due:
            claimed = self._claim(delivery_id, clock(), settings.notify_timeout)
            if claimed is None:
                continue  # another dispatcher took it, or it was delivered meanwhile
            key, payload, notifier, attempts, configured = claimed
            try:
                if notifier is None:
                    raise DeliveryFailed(
                        "the notifier was removed before this could be sent"
                        if not configured
                        else "this notifier's kind is not installed on this control plane"
                    )
                notifier.send(key, payload)
            except DeliveryFailed as exc:
                self._failed(delivery_id, attempts, str(exc), clock(), final=notifier is None)
            except Exception as exc:  # a notifier bug must not stop the others
                log.exception("notifier raised while delivering %s", key)
                self._failed(delivery_id, attempts, f"{type(exc).__name__}: {exc}", clock(), final=False)
            else:
                self._delivered(delivery_id, clock())
                delivered += 1
        return delivered

    def _claim(
        self, delivery_id: int, now: datetime, timeout: float
    ) -> tuple[str, dict[str, Any], Notifier | None, int, bool] | None:
        """Take the delivery for one attempt (a lease, so a crashed sender's claim expires)."""
        lease = now + timedelta(seconds=timeout + 30)
        with self._platform.db.transaction() as session:
            claimed = session.execute(
                update(AlertDeliveryRow)
                .where(AlertDeliveryRow.id == delivery_id)
                .where(AlertDeliveryRow.status.in_(("pending", "sending")))
                .where(AlertDeliveryRow.next_attempt_at <= now)
                .values(status="sending", next_attempt_at=lease, attempts=AlertDeliveryRow.attempts + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            if claimed != 1:
                return None
            row = session.get(AlertDeliveryRow, delivery_id)
            assert row is not None
            notifier_row = session.get(NotifierRow, row.notifier_id) if row.notifier_id is not None else None
            notifier = self._notifier(notifier_row, timeout) if notifier_row is not None else None
            return row.key, dict(row.payload), notifier, row.attempts, notifier_row is not None

    @staticmethod
    def _notifier(row: NotifierRow, timeout: float) -> Notifier | None:
        factory = NOTIFIER_KINDS.get(row.kind)
        return factory(row.url, timeout) if factory is not None else None

    def _delivered(self, delivery_id: int, now: datetime) -> None:
        with self._platform.db.transaction() as session:
            row = session.get(AlertDeliveryRow, delivery_id)
            if row is not None:
                row.status, row.delivered_at, row.last_error = "delivered", now, None

    def _failed(self, delivery_id: int, attempts: int, error: str, now: datetime, *, final: bool) -> None:
        settings = self._platform.settings.monitoring
        with self._platform.db.transaction() as session:
            row = session.get(AlertDeliveryRow, delivery_id)
            if row is None:
                return
            row.last_error = error[:2000]
            if final or attempts >= settings.notify_attempts:
                row.status = "failed"
                log.error(
                    "notifier %s: delivery %s failed after %d attempt(s): %s",
                    row.notifier_name,
                    row.key,
                    attempts,
                    error,
                )
            else:
                delay = min(settings.notify_backoff * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
                row.status, row.next_attempt_at = "pending", now + timedelta(seconds=delay)
                log.warning(
                    "notifier %s: delivery %s attempt %d failed (retry in %.0fs): %s",
                    row.notifier_name,
                    row.key,
                    attempts,
                    delay,
                    error,
                )


def payload_of(alert: Any, event: str) -> dict[str, Any]:
    """The JSON a webhook receives for an alert change (``delivery_id`` is added per notifier)."""

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "event": event,
        "alert": {
            "id": alert.id,
            "rule": alert.rule,
            "monitor": alert.monitor,
            "subject": alert.subject,
            "status": alert.status,
            "severity": alert.severity,
            "project": alert.project,
            "environment": alert.environment,
            "summary": alert.summary,
            "value": alert.value,
            "evidence": alert.evidence,
            "first_fired_at": iso(alert.first_fired_at),
            "last_fired_at": iso(alert.last_fired_at),
            "resolved_at": iso(alert.resolved_at),
        },
    }
