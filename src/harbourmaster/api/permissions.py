"""Each route declares the permission it needs, as OpenAPI metadata (``x-permission``).

The services enforce the rules; the declaration documents them and lets the
authorization-matrix test check every route against the permission table, so a
new endpoint cannot be forgotten.
"""

from __future__ import annotations

from typing import Any

from harbourmaster.core.permissions import Permission

PUBLIC = "public"  # health and docs: no token
AUTHENTICATED = "authenticated"  # any valid token (e.g. your own tokens)
REPLICA = "replica"  # a replica credential of the route's environment only (no person's token)


def requires(permission: Permission | str, *, environment_param: str | None = None) -> dict[str, Any]:
    """``openapi_extra`` for a route: the permission, and which path/body field names the environment."""
    value = permission.value if isinstance(permission, Permission) else permission
    extra: dict[str, Any] = {"x-permission": value}
    if environment_param:
        extra["x-environment-param"] = environment_param
    return extra
