"""Embedded mode is one person's sandbox: the rules for opening a store directly.

Embedded mode (the CLI or SDK without ``--url``) opens the store itself and acts
as its local owner. That is safe only while the store belongs to one person, so:

- no guarded environment (``guarded`` in its configuration; prod by default) is
  reachable from it: the access service asks ``embedded_allows`` for every
  embedded actor, and the refusal (audited) points to ``--url`` and a token;
- once the store is shared (it has users), opening it directly is refused
  (audited) for everything but ``init``, the migrations applied on opening, and
  break-glass administration: ``HARBOURMASTER_BREAK_GLASS=<reason>`` opens it as
  ``break-glass:<os user>``, recording the OS user and the reason in the audit log;
- a replica, scorer or other data-plane process started on a shared store
  refuses too, break glass or not (``require_unshared``).

The control plane (``harbourmaster server``) opens the store through ``Platform``
directly: it is the one process meant to hold it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harbourmaster.config import Settings
from harbourmaster.core.permissions import Permission
from harbourmaster.errors import ConflictError, InvalidInputError, PermissionDeniedError
from harbourmaster.services.actors import Actor, os_user

if TYPE_CHECKING:
    from harbourmaster.services.identity import IssuedToken
    from harbourmaster.services.platform import Platform

BREAK_GLASS_VARIABLE = "HARBOURMASTER_BREAK_GLASS"
EMBEDDED_KINDS = frozenset({"local-owner", "break-glass"})
MAX_REASON_LENGTH = 500

USE_THE_CONTROL_PLANE = (
    "run `harbourmaster server` on this store and use --url http://HOST:PORT with a token "
    "(--token or HARBOURMASTER_TOKEN; `harbourmaster init` printed the first admin's)"
)


def is_shared(platform: Platform) -> bool:
    """A store is shared once it has users: from then on, people act through the control plane."""
    return platform.identity.has_users()


def embedded_allows(permission: Permission, *, guarded: bool) -> bool:
    """What an embedded actor (local owner, break glass) may do: anything but sign-offs, never on a guarded env."""
    return permission != Permission.APPROVE and not guarded


def explain_refusal(actor: Actor, permission: Permission, environment: str | None) -> tuple[str, str]:
    """Message and hint for an embedded actor refused by ``embedded_allows``."""
    if permission == Permission.APPROVE:
        return (
            f"{actor.name} (embedded mode) cannot sign off: a sign-off needs a real approver",
            "approvers sign off through the control plane with their own token: " + USE_THE_CONTROL_PLANE,
        )
    return (
        f"{environment} is a guarded environment: embedded mode (no --url) is a one-person sandbox and cannot "
        f"{permission.value} there",
        USE_THE_CONTROL_PLANE,
    )


def open_embedded(
    settings: Settings | None = None, *, purpose: str = "embedded mode", break_glass: str | None = None
) -> tuple[Platform, Actor]:
    """Open the store directly for ``purpose``; returns the platform and the actor to act as.

    An unshared store opens as its local owner. A shared one is refused (audited)
    unless ``break_glass`` gives a reason; then it opens as ``break-glass:<os
    user>`` and the reason is in the audit log.
    """
    from harbourmaster.services.platform import Platform

    platform = Platform(settings)
    try:
        return platform, embedded_actor(platform, purpose=purpose, break_glass=break_glass)
    except BaseException:
        platform.close()
        raise


def embedded_actor(platform: Platform, *, purpose: str = "embedded mode", break_glass: str | None = None) -> Actor:
    """The actor embedded mode acts as on ``platform``'s store (see ``open_embedded``)."""
    if not is_shared(platform):
        return Actor.local_owner()
    reason = " ".join((break_glass or "").split())
    if not reason:
        _refuse_shared(platform, purpose)
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInputError(
            f"the break-glass reason has {len(reason)} characters (at most {MAX_REASON_LENGTH})", "say it briefly"
        )
    actor = Actor.break_glass(os_user())
    platform.audit.record_alone(
        actor,
        "store.break_glass",
        _store_name(platform),
        details={"os_user": os_user(), "reason": reason, "purpose": purpose},
    )
    return actor


def require_unshared(platform: Platform, purpose: str) -> None:
    """For data-plane processes started embedded (a replica, a scorer): refuse a shared store, break glass or not."""
    if is_shared(platform):
        _refuse_shared(platform, purpose, break_glass=False)


def check_store_for(settings: Settings | None, purpose: str) -> None:
    """``require_unshared`` for a face that has not opened the store yet (e.g. before starting replicas)."""
    from harbourmaster.services.platform import Platform

    platform = Platform(settings)
    try:
        require_unshared(platform, purpose)
    finally:
        platform.close()


def init_store(settings: Settings | None, admins: Sequence[str]) -> tuple[list[IssuedToken], Settings]:
    """``harbourmaster init``: make a sandbox store shared, with its first admins; returns their tokens.

    Refused (audited) when the store already has users.
    """
    from harbourmaster.services.platform import Platform

    names = list(dict.fromkeys(admins)) or ["admin"]
    platform = Platform(settings)
    try:
        owner = Actor.local_owner()
        if is_shared(platform):
            platform.audit.record_alone(
                owner, "store.init", _store_name(platform), outcome="denied", details={"reason": "already shared"}
            )
            raise ConflictError(
                "this store already has users",
                "ask an admin for a token (harbourmaster tokens create --user NAME, through --url), "
                f"or, to recover a lost admin token, {BREAK_GLASS_VARIABLE}='why' harbourmaster tokens create "
                "--user ADMIN (audited)",
            )
        issued = []
        for name in names:
            platform.identity.create_user(owner, name, ["admin"])
            issued.append(platform.identity.create_token(owner, name, "init"))
        return issued, platform.settings
    finally:
        platform.close()


def describe(settings: Settings, actor: Actor) -> str:
    """One line saying what embedded mode is, for ``whoami`` and the demo."""
    if actor.kind == "break-glass":
        return (
            f"break-glass administration of the shared store {settings.home} (audited); "
            "guarded environments such as prod stay reachable only through the control plane"
        )
    return (
        f"embedded mode on {settings.home}: one person's sandbox (no users; no guarded environment such as prod); "
        "shared stores and prod go through `harbourmaster server` with --url and a token"
    )


def _refuse_shared(platform: Platform, purpose: str, *, break_glass: bool = True) -> None:
    owner = Actor.local_owner()
    platform.audit.record_alone(
        owner,
        "denied.embedded_open",
        _store_name(platform),
        outcome="denied",
        details={"os_user": os_user(), "purpose": purpose},
    )
    hint = (
        f"{USE_THE_CONTROL_PLANE}; an admin locked out can break glass: "
        f"{BREAK_GLASS_VARIABLE}='<reason>' harbourmaster ... (audited with your OS user)"
        if break_glass
        else "on a shared store, replicas and scorers reach state through the control plane with a token (--url)"
    )
    raise PermissionDeniedError(f"this store is shared (it has users): {purpose} cannot open it directly", hint)


def _store_name(platform: Platform) -> str:
    return f"store:{platform.settings.home}"


def break_glass_reason() -> str | None:
    """The break-glass reason given to this process (``HARBOURMASTER_BREAK_GLASS``), if any."""
    return os.environ.get(BREAK_GLASS_VARIABLE) or None
