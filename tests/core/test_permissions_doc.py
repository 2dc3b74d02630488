"""The permission table in docs/governance.md is the one in the code."""

from pathlib import Path

from harbourmaster.core.permissions import PERMISSIONS, Permission, Role, is_allowed, permission_table_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "governance.md"


def test_the_documented_table_is_the_code_table() -> None:
    assert permission_table_markdown() in DOC.read_text()


def test_guarded_environments_need_a_grant_for_deploy_and_predict() -> None:
    operator = frozenset({Role.OPERATOR.value})
    assert is_allowed(operator, Permission.DEPLOY, guarded=False)
    assert not is_allowed(operator, Permission.DEPLOY, guarded=True, environment="prod")
    assert is_allowed(
        operator, Permission.DEPLOY, guarded=True, grants=frozenset({("prod", "deploy")}), environment="prod"
    )
    assert not is_allowed(
        operator, Permission.DEPLOY, guarded=True, grants=frozenset({("test", "deploy")}), environment="prod"
    )


def test_only_approvers_approve_and_only_auditors_and_admins_audit() -> None:
    assert [role for role in Role if Permission.APPROVE in PERMISSIONS[role]] == [Role.APPROVER]
    assert {role for role in Role if Permission.AUDIT in PERMISSIONS[role]} == {Role.AUDITOR, Role.ADMIN}
