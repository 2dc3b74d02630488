"""Platform settings, read from the environment.

``HARBOURMASTER_HOME`` holds the embedded SQLite database, the local artifact
folder and caches. Without it, the store is found the way git finds a repository:
the nearest ``.harbourmaster`` folder in the current directory or one of its
parents; if there is none, a new one in the current directory. ``HARBOURMASTER_DATABASE_URL``
and ``HARBOURMASTER_ARTIFACTS_URL`` point elsewhere for production.
``HARBOURMASTER_MAX_REQUEST_BYTES`` and ``HARBOURMASTER_MAX_UPLOAD_BYTES`` bound
what the control plane reads of one request (a bundle upload has the second).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harbourmaster.errors import InvalidInputError
from harbourmaster.monitoring_settings import MonitoringSettings

# Types a skops file may contain beyond skops' own defaults. The platform's list,
# never one read from a model file. Extend with HARBOURMASTER_TRUSTED_TYPES (on the
# control plane, where registration checks them); per project, admins add exact
# types with ``harbourmaster trust PROJECT --add-type``. Some names are never loaded
# whatever is trusted (``bundle.formats.forbidden_type``). The XGBoost and LightGBM
# estimators are trusted by exact name (``bundle.libraries.LIBRARY_TYPES``).
DEFAULT_TRUSTED_TYPE_PREFIXES: tuple[str, ...] = (
    "sklearn.",
    "numpy.",
    "scipy.sparse.",
    "pandas.core.",
    "collections.OrderedDict",
    "builtins.slice",
    # The plain ``object`` type, as in make_column_selector(dtype_include=object): a type, never called on load.
    "builtins.object",
)


def _split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024  # 1 MiB: every JSON call of the control plane
DEFAULT_MAX_UPLOAD_BYTES = 1024 * 1024 * 1024  # 1 GiB: a bundle upload (pipeline, profile, code)
WARMUP_TIMEOUT_VAR = "HARBOURMASTER_WARMUP_TIMEOUT_SECONDS"
DEFAULT_WARMUP_TIMEOUT_SECONDS = 120.0  # as long as a replica gives one version to load and warm


def _size(env: dict[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise InvalidInputError(f"{name}={value!r} is not a positive number of bytes", f"e.g. {name}={default}")
    return size


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise InvalidInputError(
            f"{name}={value!r} is not a number of seconds", f"give 1 to 3600, e.g. {name}={default:g}"
        )
    return seconds


STORE_FOLDER = ".harbourmaster"
# How the home was chosen (``Settings.home_source``): named by HARBOURMASTER_HOME, found in the
# current directory or a parent, or new in the current directory (none found).
HOME_FROM_ENV = "HARBOURMASTER_HOME"
HOME_FOUND = "found"
HOME_NEW = "new"


def find_store(start: Path) -> Path | None:
    """The nearest ``.harbourmaster`` folder in ``start`` or one of its parents, as git finds ``.git``."""
    start = start.absolute()
    for folder in (start, *start.parents):
        candidate = folder / STORE_FOLDER
        if candidate.is_dir():
            return candidate
    return None


def _home(env: dict[str, str]) -> tuple[Path, str]:
    named = env.get("HARBOURMASTER_HOME")
    if named:
        return Path(named).expanduser().absolute(), HOME_FROM_ENV
    found = find_store(Path.cwd())
    if found is not None:
        return found, HOME_FOUND
    return (Path.cwd() / STORE_FOLDER).absolute(), HOME_NEW


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Where the platform keeps its state and what it trusts."""

    home: Path
    database_url: str
    artifacts_url: str
    trusted_type_prefixes: tuple[str, ...] = DEFAULT_TRUSTED_TYPE_PREFIXES
    trust_pickle: bool = False
    storage_options: dict[str, str] = field(default_factory=dict)
    # The audit log's signing key and anchors (see docs/governance.md): the key file is
    # generated in the home unless given; anchors go to write-once storage.
    audit_key_file: Path | None = None
    audit_anchors_url: str | None = None
    audit_anchor_interval: float = 60.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    # Registration loads and warms each new version in a clean process, bounded by this deadline.
    warmup_timeout_seconds: float = DEFAULT_WARMUP_TIMEOUT_SECONDS
    home_source: str = HOME_FROM_ENV
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.home / "audit" / "signing-key.pem"

    @property
    def audit_anchors_location(self) -> str:
        return self.audit_anchors_url or str(self.home / "audit" / "anchors")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home, home_source = _home(env)
        database_url = env.get("HARBOURMASTER_DATABASE_URL") or f"sqlite:///{home / 'harbourmaster.db'}"
        artifacts_url = env.get("HARBOURMASTER_ARTIFACTS_URL") or str(home / "artifacts")
        if "://" not in database_url:
            raise InvalidInputError(
                f"HARBOURMASTER_DATABASE_URL={database_url!r} is not a database URL",
                "use a SQLAlchemy URL such as postgresql+psycopg://user@host:5432/db",
            )
        storage_options: dict[str, str] = {}
        endpoint = env.get("HARBOURMASTER_S3_ENDPOINT_URL")
        if endpoint:
            storage_options["endpoint_url"] = endpoint
        return cls(
            home=home,
            database_url=database_url,
            artifacts_url=artifacts_url,
            trusted_type_prefixes=DEFAULT_TRUSTED_TYPE_PREFIXES + _split_list(env.get("HARBOURMASTER_TRUSTED_TYPES")),
            trust_pickle=_flag(env.get("HARBOURMASTER_TRUST_PICKLE")),
            storage_options=storage_options,
            **_audit_settings(env),
            max_request_bytes=_size(env, "HARBOURMASTER_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES),
            max_upload_bytes=_size(env, "HARBOURMASTER_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            warmup_timeout_seconds=_seconds(
                env, "HARBOURMASTER_WARMUP_TIMEOUT_SECONDS", DEFAULT_WARMUP_TIMEOUT_SECONDS
            ),
            home_source=home_source,
            monitoring=MonitoringSettings.from_env(env),
        )


def _audit_settings(env: dict[str, str]) -> dict[str, object]:
    key_file = env.get("HARBOURMASTER_AUDIT_KEY_FILE")
    interval = env.get("HARBOURMASTER_AUDIT_ANCHOR_INTERVAL") or "60"
    try:
        seconds = float(interval)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86_400:
        raise InvalidInputError(
            f"HARBOURMASTER_AUDIT_ANCHOR_INTERVAL={interval!r} is not a number of seconds",
            "give seconds between 0 and 86400, e.g. 60",
        )
    return {
        "audit_key_file": Path(key_file).expanduser().absolute() if key_file else None,
        "audit_anchors_url": env.get("HARBOURMASTER_AUDIT_ANCHORS_URL") or None,
        "audit_anchor_interval": seconds,
    }
