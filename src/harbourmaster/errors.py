"""Every error Harbourmaster raises on purpose: what went wrong, and how to fix it.

Each error carries a stable ``code`` (used on the wire), a ``message`` naming the
problem and a ``hint`` naming the fix. Faces turn them into a CLI line with a
non-zero exit or an HTTP 4xx JSON body; the SDK turns the JSON back into the
same class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    ModelT = TypeVar("ModelT", bound=BaseModel)


class HarbourmasterError(Exception):
    """Base of all deliberate errors."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class InvalidInputError(HarbourmasterError):
    """The caller gave something malformed or inconsistent."""

    code = "invalid_input"
    http_status = 422


class ProjectFileError(InvalidInputError):
    """The project file is missing, unreadable or declares something wrong."""

    code = "project_file"


class DataSourceError(InvalidInputError):
    """A declared data source cannot be read, or lacks what it must have."""

    code = "data_source"


class DataProblemError(DataSourceError):
    """The data was read but does not fit: a missing column, a wrong type, an all-null target, too few rows."""

    code = "data_problem"


class EntrypointError(InvalidInputError):
    """A project's own code (training or preparation step) failed or misbehaved."""

    code = "entrypoint"


class NotFoundError(HarbourmasterError):
    """A named project, version or other object does not exist."""

    code = "not_found"
    http_status = 404


class ConflictError(HarbourmasterError):
    """The request clashes with the current state (e.g. a name already taken)."""

    code = "conflict"
    http_status = 409


class PromotionRefusedError(ConflictError):
    """A promotion did not pass every gate of the target environment."""

    code = "promotion_refused"


class BundleIntegrityError(HarbourmasterError):
    """A stored artifact does not match its recorded digest: corrupt or altered."""

    code = "bundle_integrity"
    http_status = 409


class UntrustedContentError(HarbourmasterError):
    """A model file needs types or a format that the platform does not trust."""

    code = "untrusted_content"
    http_status = 422


class MissingLibraryError(InvalidInputError):
    """A model needs a Python package (e.g. xgboost) that is not installed where it is loaded."""

    code = "missing_library"


class AuthenticationError(HarbourmasterError):
    """No valid credentials were presented."""

    code = "unauthenticated"
    http_status = 401


class PermissionDeniedError(HarbourmasterError):
    """The actor is known but may not do this."""

    code = "forbidden"
    http_status = 403


class ConfirmationRequiredError(HarbourmasterError):
    """A sensitive step was recorded and waits for a second admin (separation of duties)."""

    code = "confirmation_required"
    http_status = 202


class StorageFullError(HarbourmasterError):
    """A disk (or the database's) is full: what was being written was not kept."""

    code = "storage_full"
    http_status = 507


class ConnectionFailedError(HarbourmasterError):
    """The SDK could not reach a Harbourmaster server."""

    code = "connection_failed"
    http_status = 503


ERRORS_BY_CODE: dict[str, type[HarbourmasterError]] = {
    cls.code: cls
    for cls in (
        HarbourmasterError,
        InvalidInputError,
        ProjectFileError,
        DataSourceError,
        DataProblemError,
        EntrypointError,
        NotFoundError,
        ConflictError,
        PromotionRefusedError,
        BundleIntegrityError,
        UntrustedContentError,
        MissingLibraryError,
        AuthenticationError,
        PermissionDeniedError,
        ConfirmationRequiredError,
        StorageFullError,
        ConnectionFailedError,
    )
}

_FULL_ERRNOS = frozenset({28, 27, 122})  # ENOSPC, EFBIG (a file-size limit), EDQUOT (a quota)


def storage_full(exc: BaseException) -> StorageFullError | None:
    """``exc`` as a ``StorageFullError`` when it says a disk or the database is full (an ``OSError`` ENOSPC,
    EFBIG or EDQUOT; SQLite's SQLITE_FULL; PostgreSQL's disk_full, 53100), else None."""
    where = None
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        where = f"writing {exc.filename}" if exc.filename else "writing a file"
    else:
        original = getattr(exc, "orig", None)  # a SQLAlchemy error wraps the driver's
        text = str(original or "")
        if "database or disk is full" in text or getattr(original, "sqlstate", None) == "53100":
            where = "writing to the database"
    if where is None:
        return None
    return StorageFullError(
        f"the disk is full: {where} failed, and what this command was writing was not kept",
        "free space on that disk (or give the store a larger one), then run the command again",
    )


def validation_problems(exc: ValidationError, subject: str) -> str:
    """A pydantic ``ValidationError`` as one line: ``field.path: what was wrong`` per error, joined by "; "
    (``subject`` names an error about the whole value)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or subject}: {error['msg'].lower()}" for error in exc.errors()
    )


def parse_settings(model: type[ModelT], value: Any, subject: str, hint: str, *, prefix: str = "") -> ModelT:
    """``value`` (a mapping, an instance, or ``None`` for the defaults) as ``model``; otherwise an
    ``InvalidInputError`` naming each bad key (``prefix`` + the problems) with ``hint``. An
    ``InvalidInputError`` raised by one of the model's own validators keeps its message."""
    from pydantic import ValidationError

    if value is None:
        return model()
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidInputError(prefix + validation_problems(exc, subject), hint) from None
