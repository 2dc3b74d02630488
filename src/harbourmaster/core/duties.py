"""Separation of duties: which administration steps one admin may not take alone, and token lifetimes.

Pure rules, no I/O. The identity service asks ``sensitive_step`` before it changes a user,
a grant or a token; what it answers decides whether the step needs a second admin's
confirmation (mode ``two-admins``) or is refused when it benefits the acting admin
(mode ``not-for-self``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from harbourmaster.errors import InvalidInputError

TWO_ADMINS = "two-admins"
NOT_FOR_SELF = "not-for-self"
DUTY_MODES = (TWO_ADMINS, NOT_FOR_SELF)
DEFAULT_DUTY_MODE = TWO_ADMINS

# Roles whose holders decide what reaches guarded environments: giving them out is a sensitive step.
PRIVILEGED_ROLES = frozenset({"admin", "approver"})

REQUEST_LIFETIME = timedelta(hours=24)
MAX_TOKEN_CHAIN = 32  # a token minted by a token minted by ...: deeper chains are refused


@dataclass(frozen=True)
class SensitiveStep:
    """One administration step that separation of duties covers."""

    action: str  # user.create|roles|enable|disable, grant.add, token.create, replica-credential.create, ...
    target: str  # the user it concerns (or "platform", or "environment:NAME")
    summary: str  # said to people: "make abe an approver"
    benefits_actor: bool  # the acting admin would gain the power themselves


def check_mode(mode: str) -> str:
    if mode not in DUTY_MODES:
        raise InvalidInputError(f"unknown separation-of-duties mode {mode!r}", f"use one of {', '.join(DUTY_MODES)}")
    return mode


def role_step(actor: str, action: str, user: str, old_roles: set[str], new_roles: set[str]) -> SensitiveStep | None:
    """Creating a user, or changing their roles, is sensitive when it hands out admin or approver, or takes
    either away from somebody else (one admin must not be able to leave themselves as the only one)."""
    added = sorted((new_roles - old_roles) & PRIVILEGED_ROLES)
    removed = sorted((old_roles - new_roles) & PRIVILEGED_ROLES) if user != actor else []
    if added:
        return SensitiveStep(action, user, f"make {user} {' and '.join(added)}", benefits_actor=user == actor)
    if removed:
        return SensitiveStep(action, user, f"take {' and '.join(removed)} away from {user}", benefits_actor=False)
    return None


def disable_step(actor: str, user: str, roles: set[str], disabled: bool) -> SensitiveStep | None:
    """Disabling another admin or approver removes a second pair of eyes: sensitive (disabling oneself is not)."""
    privileged = sorted(roles & PRIVILEGED_ROLES)
    if disabled or not privileged or user == actor:
        return None
    return SensitiveStep("user.disable", user, f"disable {user} ({' and '.join(privileged)})", benefits_actor=False)


def enable_step(actor: str, user: str, roles: set[str], disabled: bool) -> SensitiveStep | None:
    """Re-enabling a disabled admin or approver gives their power (and their sign-offs) back: sensitive."""
    privileged = sorted(roles & PRIVILEGED_ROLES)
    if not disabled or not privileged:
        return None
    return SensitiveStep(
        "user.enable", user, f"enable {user} ({' and '.join(privileged)}) again", benefits_actor=user == actor
    )


def grant_step(actor: str, user: str, environment: str, permission: str, guarded: bool) -> SensitiveStep | None:
    """A grant on a guarded environment (prod rights) is sensitive."""
    if not guarded:
        return None
    return SensitiveStep("grant.add", user, f"grant {user} {permission} on {environment}", benefits_actor=user == actor)


def credential_step(environment: str, guarded: bool) -> SensitiveStep | None:
    """A replica credential of a guarded environment downloads its bundles and writes its prediction log."""
    if not guarded:
        return None
    return SensitiveStep(
        "replica-credential.create",
        f"environment:{environment}",
        f"mint a replica credential for guarded environment {environment}",
        benefits_actor=False,
    )


def token_step(actor: str, user: str) -> SensitiveStep | None:
    """Minting a token for somebody else lets the minter act as them."""
    if user == actor:
        return None
    return SensitiveStep("token.create", user, f"mint a token for {user}", benefits_actor=False)


# What decides who may put a version into an environment: changing it on a guarded one is sensitive.
GOVERNING_KEYS = ("guarded", "allow_skip", "gates", "approvals")


def environment_step(name: str, before: dict | None, after: dict, position_changed: bool) -> SensitiveStep | None:
    """Changing how a guarded environment is governed (guard, gates, sign-offs, order) is sensitive.

    Unguarding it benefits the acting admin (admins may deploy wherever no grant is needed).
    """
    if before is None or not before.get("guarded"):
        return None
    changed = [key for key in GOVERNING_KEYS if before.get(key) != after.get(key)]
    if position_changed:
        changed.append("position")
    if not changed:
        return None
    return SensitiveStep(
        "environment.configure",
        f"environment:{name}",
        f"change {', '.join(changed)} of guarded environment {name}",
        benefits_actor=not after.get("guarded"),
    )


def order_step(name: str, before: list[str], after: list[str], guarded: set[str]) -> SensitiveStep | None:
    """Moving (or adding) an environment so that a guarded one gets another predecessor is sensitive:
    the predecessor's gates are the path a version takes into the guarded environment."""

    def previous(order: list[str], env: str) -> str | None:
        index = order.index(env)
        return order[index - 1] if index > 0 else None

    for env in sorted(guarded - {name}):
        if env in before and env in after and previous(before, env) != previous(after, env):
            return SensitiveStep(
                "environment.configure",
                f"environment:{name}",
                f"move {name} so that guarded environment {env} follows {previous(after, env) or 'nothing'} "
                f"instead of {previous(before, env) or 'nothing'}",
                benefits_actor=False,
            )
    return None


def mode_step(old: str, new: str) -> SensitiveStep | None:
    if old == new:
        return None
    return SensitiveStep("duties.mode", "platform", f"change separation of duties from {old} to {new}", False)


def needs_second_admin(step: SensitiveStep, mode: str) -> bool:
    """Two-admins: every sensitive step. Not-for-self: none (those for oneself are refused instead)."""
    return mode == TWO_ADMINS


def refused_for_self(step: SensitiveStep, mode: str) -> bool:
    return mode == NOT_FOR_SELF and step.benefits_actor


def max_token_seconds(roles: set[str] | frozenset[str], policies: dict[str, float]) -> float | None:
    """The strictest maximum lifetime among the user's roles (None: no limit)."""
    limits = [policies[role] for role in roles if role in policies]
    return min(limits) if limits else None


def token_expiry(
    now: datetime,
    requested: timedelta | None,
    role_limit_seconds: float | None,
    parent_expires_at: datetime | None,
    parent_minted: bool,
) -> datetime | None:
    """When a new token expires: what was asked, never past the role's limit nor its parent's expiry."""
    if requested is not None and role_limit_seconds is not None and requested.total_seconds() > role_limit_seconds:
        raise InvalidInputError(
            f"a token for this user may live at most {human_duration(role_limit_seconds)}",
            f"ask for less (e.g. --expires-in {human_duration(role_limit_seconds)}) or have an admin change "
            "the role's limit: harbourmaster tokens policy",
        )
    candidates = []
    if requested is not None:
        candidates.append(now + requested)
    if role_limit_seconds is not None:
        candidates.append(now + timedelta(seconds=role_limit_seconds))
    if parent_minted and parent_expires_at is not None:
        candidates.append(parent_expires_at)
    return min(candidates) if candidates else None


def human_duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@dataclass(frozen=True)
class ApproverStanding:
    """What the approver's account says now, and when they became an approver."""

    exists: bool
    disabled: bool
    roles: frozenset[str]
    created_at: datetime | None
    roles_updated_at: datetime | None


def standing_of(approver: ApproverStanding, recorded_roles: frozenset[str]) -> tuple[str, frozenset[str]]:
    """Whether a sign-off still counts, and with which of its recorded roles.

    A sign-off counts only while its approver's account exists, is enabled and still holds
    the role it signed with.
    """
    if not approver.exists:
        return "unknown user", frozenset()
    if approver.disabled:
        return "disabled", frozenset()
    kept = recorded_roles & approver.roles
    if not kept:
        return "role removed", frozenset()
    return "ok", kept


def joined_after(approver: ApproverStanding, registered_at: datetime) -> bool:
    """The approver's account was created, or its roles changed, after the version was registered."""
    moments = [moment for moment in (approver.created_at, approver.roles_updated_at) if moment is not None]
    return any(moment > registered_at for moment in moments)
