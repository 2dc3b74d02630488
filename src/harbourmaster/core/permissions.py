"""Roles and what each may do: THE permission table (docs/governance.md shows the same).

Environment-scoped permissions (``deploy``, ``predict``) additionally need a grant
on a guarded environment (prod by default): a role says what kind of work a
person does, a grant says where they may do it.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    DATA_SCIENTIST = "data-scientist"
    OPERATOR = "operator"
    APPROVER = "approver"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Permission(StrEnum):
    READ = "read"  # projects, versions, runs, environments, deployments, approvals
    REGISTER = "register"  # train, register, tag versions
    DEPLOY = "deploy"  # deploy, promote, rollback, challengers, fallbacks (grant needed on guarded envs)
    PREDICT = "predict"  # call a replica of a guarded environment (grant needed)
    APPROVE = "approve"  # sign off or reject a version for an environment
    AUDIT = "audit"  # read and export the audit log
    ADMINISTER = "administer"  # users, grants, other people's tokens, environment configuration


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.DATA_SCIENTIST: frozenset({Permission.READ, Permission.REGISTER, Permission.DEPLOY}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.REGISTER, Permission.DEPLOY, Permission.PREDICT}),
    Role.APPROVER: frozenset({Permission.READ, Permission.APPROVE}),
    Role.AUDITOR: frozenset({Permission.READ, Permission.AUDIT}),
    Role.ADMIN: frozenset(
        {
            Permission.READ,
            Permission.REGISTER,
            Permission.DEPLOY,
            Permission.PREDICT,
            Permission.ADMINISTER,
            Permission.AUDIT,
        }
    ),
}

# Permissions that, on a guarded environment, also need an explicit grant for it.
GRANTED_PERMISSIONS = frozenset({Permission.DEPLOY, Permission.PREDICT})

ROLE_NAMES = tuple(role.value for role in Role)


def permissions_of(roles: frozenset[str] | set[str]) -> frozenset[Permission]:
    """Union of the permissions of the given role names (unknown names give nothing)."""
    granted: set[Permission] = set()
    for name in roles:
        if name in ROLE_NAMES:
            granted |= PERMISSIONS[Role(name)]
    return frozenset(granted)


def roles_with(permission: Permission) -> list[str]:
    return [role.value for role, allowed in PERMISSIONS.items() if permission in allowed]


def is_allowed(
    roles: frozenset[str] | set[str],
    permission: Permission,
    *,
    guarded: bool = False,
    grants: frozenset[tuple[str, str]] = frozenset(),
    environment: str | None = None,
) -> bool:
    """Whether these roles (and grants) allow ``permission`` (in ``environment``)."""
    if permission not in permissions_of(roles):
        return False
    if guarded and permission in GRANTED_PERMISSIONS:
        return (environment or "", permission.value) in grants
    return True


def permission_table_markdown() -> str:
    """The table as Markdown, for docs/governance.md (kept in sync by a test)."""
    header = "| permission | " + " | ".join(ROLE_NAMES) + " |"
    rule = "|---|" + "---|" * len(ROLE_NAMES)
    rows = [
        f"| {permission.value}{' (+grant on guarded env)' if permission in GRANTED_PERMISSIONS else ''} | "
        + " | ".join("yes" if permission in PERMISSIONS[Role(role)] else "" for role in ROLE_NAMES)
        + " |"
        for permission in Permission
    ]
    return "\n".join([header, rule, *rows])
