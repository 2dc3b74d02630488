"""Notifier delivery against real HTTP receivers on 127.0.0.1: a receiver that fails the first attempt
gets the alert once (the retry carries the same idempotency key), one that times out and one that
answers 500 end as recorded notifier failures (never an exception, the alert kept), two dispatchers
never send one delivery twice, and a Slack-compatible webhook gets Slack's ``text``."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from sqlalchemy import select
from tests.governance.helpers import SYSTEM, USERS, actor

from harbourmaster.core.alerts import Severity, Verdict
from harbourmaster.errors import InvalidInputError, PermissionDeniedError
from harbourmaster.services.notifiers import mask_url
from harbourmaster.services.platform import Platform
from harbourmaster.store.tables import AlertDeliveryRow, AuditEventRow
from monitoring.receiver import webhook_receiver


def _fast_retries(platform: Platform, **overrides: float) -> None:
    policy = {"notify_backoff": 0.0, "notify_attempts": 3, "notify_timeout": 2.0, **overrides}
    platform.settings = dataclasses.replace(
        platform.settings, monitoring=dataclasses.replace(platform.settings.monitoring, **policy)
    )


def _fire(platform: Platform, subject: str = "replica:r1", firing: bool = True) -> int:
    verdict = Verdict(
        rule="replica.silent",
        subject=subject,
        firing=firing,
        severity=Severity.CRITICAL,
        summary="replica r1 silent for 40s",
        environment="dev",
        evidence=subject,
        monitor="replica",
    )
    [change] = platform.alerts.apply([verdict])
    return change.alert_id


def _drain(platform: Platform, rounds: int = 6) -> None:
    for _ in range(rounds):  # bounded: one attempt per due delivery per round
        platform.notifiers.deliver_due()


def test_a_receiver_failing_the_first_attempt_gets_the_alert_once(platform: Platform) -> None:
    _fast_retries(platform)
    with webhook_receiver(fail_first=1) as receiver:
        platform.notifiers.add(SYSTEM, "ops", "webhook", receiver.url)
        alert_id = _fire(platform)
        assert platform.notifiers.deliver_due() == 0  # first attempt: 500, recorded, retried later
        [delivery] = platform.notifiers.deliveries(SYSTEM, alert_id)
        assert (delivery.status, delivery.attempts) == ("pending", 1) and "answered 500" in (delivery.last_error or "")
        _drain(platform)
        [accepted] = receiver.accepted()
        assert len(receiver.requests) == 2 and {r.key for r in receiver.requests} == {delivery.key}
        assert accepted.body["delivery_id"] == delivery.key and accepted.body["event"] == "firing"
        alert = accepted.body["alert"]
        assert (alert["id"], alert["rule"], alert["severity"], alert["evidence"]) == (
            alert_id,
            "replica.silent",
            "critical",
            "replica:r1",
        )
        [delivered] = platform.notifiers.deliveries(SYSTEM, alert_id)
        assert (delivered.status, delivered.attempts, delivered.last_error) == ("delivered", 2, None)

        _fire(platform, firing=False)  # resolution: one more delivery, its own key
        _drain(platform)
        events = [(r.body["event"], r.key) for r in receiver.accepted()]
        assert [e for e, _ in events] == ["firing", "resolved"] and len({k for _, k in events}) == 2


@pytest.mark.parametrize("behaviour", [{"delay": 1.5}, {"always_status": 500}], ids=["times-out", "answers-500"])
def test_a_failing_receiver_is_a_recorded_failure_and_the_alert_is_kept(platform: Platform, behaviour: dict) -> None:
    _fast_retries(platform, notify_timeout=0.5, notify_attempts=2)
    with webhook_receiver(**behaviour) as receiver:
        platform.notifiers.add(SYSTEM, "flaky", "webhook", receiver.url)
        platform.notifiers.add(SYSTEM, "journal", "log")
        alert_id = _fire(platform)
        _drain(platform, rounds=4)
        deliveries = {d.notifier: d for d in platform.notifiers.deliveries(SYSTEM, alert_id)}
        flaky = deliveries["flaky"]
        assert (flaky.status, flaky.attempts) == ("failed", 2)
        expected = "did not answer within 0.5s" if "delay" in behaviour else "answered 500"
        assert expected in (flaky.last_error or "") and "secret-part" not in (flaky.last_error or "")
        assert deliveries["journal"].status == "delivered"  # the other notifier is not held up
        assert platform.alerts.get(SYSTEM, alert_id).status == "firing"
        assert {r.key for r in receiver.requests} == {flaky.key}  # the same key on every attempt
        _drain(platform, rounds=2)
        assert len(receiver.requests) == 2  # a failed delivery is not retried for ever


def test_two_dispatchers_never_send_one_delivery_twice(platform: Platform) -> None:
    _fast_retries(platform)
    with webhook_receiver(delay=0.05) as receiver:
        platform.notifiers.add(SYSTEM, "ops", "webhook", receiver.url)
        ids = [_fire(platform, subject=f"replica:r{i}") for i in range(8)]
        workers = [threading.Thread(target=platform.notifiers.deliver_due) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        keys = [r.key for r in receiver.requests]
        assert len(keys) == len(set(keys)) == len(ids)
        with platform.db.reader() as session:
            assert set(session.scalars(select(AlertDeliveryRow.status))) == {"delivered"}


def test_a_slack_webhook_gets_slack_text(platform: Platform) -> None:
    _fast_retries(platform)
    with webhook_receiver() as receiver:
        platform.notifiers.add(SYSTEM, "chat", "slack", receiver.url, min_severity="critical")
        _fire(platform)
        _drain(platform, rounds=1)
        [message] = receiver.wait_for(1)
        assert set(message.body) == {"text"}
        assert message.body["text"] == "[CRITICAL] replica.silent on replica:r1 in dev: replica r1 silent for 40s " + (
            "(evidence: replica:r1)"
        )
        assert message.key.startswith("hm-alert-")


def test_notifiers_are_for_admins_audited_and_their_urls_stay_secret(platform: Platform) -> None:
    for name, (roles, _grants) in USERS.items():
        platform.identity.create_user(SYSTEM, name, roles)
    url = "https://hooks.slack.com/services/T000/B000/very-secret-token"
    with pytest.raises(PermissionDeniedError):
        platform.notifiers.add(actor(platform, "olga"), "chat", "slack", url)
    info = platform.notifiers.add(actor(platform, "root"), "chat", "slack", url)
    assert info.target == mask_url(url) == "https://hooks.slack.com/services…"
    assert "very-secret-token" not in info.model_dump_json()
    assert "very-secret-token" not in platform.notifiers.list(actor(platform, "root"))[0].model_dump_json()
    with platform.db.reader() as session:
        audited = session.scalars(select(AuditEventRow).where(AuditEventRow.action.like("notifier.%"))).all()
    assert [e.action for e in audited] == ["notifier.add"] and "very-secret-token" not in str(audited[0].after)
    for bad in (
        ("x", "pager", None),
        ("x", "webhook", "ftp://host/x"),
        ("x", "log", "https://h/x"),
        ("Bad Name", "log", None),
    ):
        with pytest.raises(InvalidInputError) as refused:
            platform.notifiers.add(actor(platform, "root"), *bad)
        assert refused.value.hint
    platform.notifiers.remove(actor(platform, "root"), "chat")
    assert platform.notifiers.list(actor(platform, "root")) == []


def test_a_delivery_whose_notifier_was_removed_is_a_recorded_failure(platform: Platform) -> None:
    _fast_retries(platform)
    with webhook_receiver() as receiver:
        platform.notifiers.add(SYSTEM, "gone", "webhook", receiver.url)
        alert_id = _fire(platform)
        platform.notifiers.remove(SYSTEM, "gone")
        started = time.monotonic()
        _drain(platform, rounds=1)
        assert time.monotonic() - started < 10
        [delivery] = platform.notifiers.deliveries(SYSTEM, alert_id)
        assert delivery.status == "failed" and "removed" in (delivery.last_error or "")
        assert receiver.requests == []


class _Collecting:
    """A notifier kind of a third party (an in-memory pager), plugged in without changing the platform."""

    sent: list[tuple[str, str]] = []

    def send(self, key: str, payload: dict) -> None:
        self.sent.append((key, payload["event"]))


def test_a_new_notifier_kind_plugs_in(platform: Platform) -> None:
    from harbourmaster.services import notifiers

    notifiers.register_notifier_kind("pager", lambda _url, _timeout: _Collecting(), takes_url=False)
    try:
        platform.notifiers.add(SYSTEM, "pager", "pager")
        _fire(platform)
        _drain(platform, rounds=1)
        assert [event for _key, event in _Collecting.sent] == ["firing"]
    finally:
        notifiers.NOTIFIER_KINDS.pop("pager")
        notifiers.URL_FREE_KINDS.discard("pager")
        _Collecting.sent.clear()
