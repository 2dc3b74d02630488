"""Fixtures of the deployment tests (the rollout tests' prod with a replica lives in rollout_support)."""

from tests.deploy.rollout_support import moody_prod  # noqa: F401
