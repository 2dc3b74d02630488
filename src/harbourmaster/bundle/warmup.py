"""Warm a version before it is registered: load it and answer one row, in a clean process, with a deadline.

A replica loads a version, then predicts once on its reference row before taking
traffic; a version that cannot do that is refused by every replica. Registration
does the same first, so such a version never gets a number. It runs in a child
process because loading imports the project's code: the control plane never
imports bundle code, and the child gets no store credential (the parent's
``HARBOURMASTER_*`` settings are not passed on) and only a copy of the bundle.

Run as ``python -m harbourmaster.bundle.warmup`` with a JSON request on stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harbourmaster.bundle.builder import Bundle
from harbourmaster.config import Settings
from harbourmaster.errors import InvalidInputError

__all__ = ["warm_in_clean_process"]

_SECRET_PREFIXES = ("HARBOURMASTER_", "AWS_", "AZURE_", "GOOGLE_", "PG")
_OUTPUT_LIMIT = 2000  # characters of the child's error kept in the refusal


def warm_in_clean_process(
    bundle: Bundle, settings: Settings, trusted_types: Sequence[str], project: str, timeout: float | None = None
) -> dict[str, Any]:
    """Load ``bundle`` and predict its reference row in a child process; the child's report (engine).

    Raises InvalidInputError naming the error when it cannot load, answer, or finish within ``timeout``
    seconds (default ``settings.warmup_timeout_seconds``).
    """
    from harbourmaster.bundle.storage import save_bundle
    from harbourmaster.store.artifacts import ArtifactStore

    deadline = settings.warmup_timeout_seconds if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="hm-warmup-") as folder:
        home = Path(folder)
        save_bundle(ArtifactStore(str(home / "artifacts")), bundle)
        request = {
            "home": str(home),
            "digest": bundle.digest,
            "trusted_type_prefixes": list(settings.trusted_type_prefixes),
            "trust_pickle": settings.trust_pickle,
            "extra_trusted_types": list(trusted_types),
        }
        try:
            done = subprocess.run(
                [sys.executable, "-m", "harbourmaster.bundle.warmup"],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=deadline,
                env=_clean_environment(),
                cwd=folder,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InvalidInputError(
                f"{project}: the new version did not load and answer one row within {deadline:g} s "
                "(a replica would refuse it)",
                "make loading and predicting faster, or raise HARBOURMASTER_WARMUP_TIMEOUT_SECONDS on the "
                "control plane",
            ) from None
    report = _report(done.stdout)
    if done.returncode != 0 or not report.get("ok"):
        error = report.get("error") or (done.stderr.strip()[-_OUTPUT_LIMIT:] or f"exit status {done.returncode}")
        raise InvalidInputError(
            f"{project}: the new version does not load and answer one row, so no replica could serve it: {error}",
            report.get("hint")
            or "try it locally: harbourmaster.Client().load(...) on the bundle, or fix the training code",
        )
    return report


def _clean_environment() -> dict[str, str]:
    """The parent's environment without credentials or platform settings (paths and locale stay)."""
    return {key: value for key, value in os.environ.items() if not key.startswith(_SECRET_PREFIXES)}


def _report(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _warm(request: dict[str, Any]) -> dict[str, Any]:
    """In the child: load the bundle as a replica does and predict its reference row."""
    from harbourmaster.bundle.predictor import Predictor
    from harbourmaster.bundle.storage import load_bundle
    from harbourmaster.errors import HarbourmasterError
    from harbourmaster.store.artifacts import ArtifactStore

    home = Path(request["home"])
    settings = Settings(
        home=home,
        database_url="sqlite://",  # never opened: the child has no store
        artifacts_url=str(home / "artifacts"),
        trusted_type_prefixes=tuple(request["trusted_type_prefixes"]),
        trust_pickle=bool(request["trust_pickle"]),
    )
    try:
        loaded = load_bundle(
            ArtifactStore(settings.artifacts_url), request["digest"], settings, request["extra_trusted_types"]
        )
        predictor = Predictor(0, loaded)
        predictor.warm()
    except HarbourmasterError as exc:
        return {"ok": False, "error": exc.message, "hint": exc.hint}
    except Exception as exc:  # the model's own code failed: that is the finding
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:_OUTPUT_LIMIT]}
    return {"ok": True, "engine": predictor.engine}


def main() -> None:
    report = _warm(json.loads(sys.stdin.read()))
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()
    os._exit(0 if report["ok"] else 1)  # no waiting on threads the model's code may have left behind


if __name__ == "__main__":
    main()
