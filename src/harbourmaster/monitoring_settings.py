"""Monitoring settings, read from the environment (``HARBOURMASTER_MONITOR_*`` and friends).

Thresholds turn a measurement into a status (ok, warning, critical); the schedule and the
notifier delivery policy say how often monitors run and how hard a notification is retried.
"""

from __future__ import annotations

from dataclasses import dataclass

from harbourmaster.errors import InvalidInputError


@dataclass(frozen=True)
class MonitoringSettings:
    """What the monitors measure against, how often they run, and how notifications are retried."""

    interval: float = 60.0  # seconds between scheduled runs inside `harbourmaster server`; 0: no schedule
    replica_silent_after: float = 30.0  # a heartbeat older than this: the replica is silent (critical)
    db_latency_warning_ms: float = 500.0
    artifacts_min_free_percent: float = 10.0  # warning below this, critical below half of it
    replica_cpu_warning_percent: float = 90.0
    replica_memory_warning_mb: float = 0.0  # 0: no memory threshold (RSS is still measured)
    capture_pending_warning: float = 100_000.0  # rows answered but not yet in the prediction log
    drift_every: float = 900.0  # seconds between two drift reports of one deployment by the monitor
    run_stalled_after: float = 21_600.0  # seconds a run may stay "running" before its process is presumed dead
    notify_timeout: float = 5.0  # seconds a webhook may take to answer
    notify_attempts: int = 5  # then the delivery is recorded as failed
    notify_backoff: float = 2.0  # seconds before the first retry, doubled each time (capped at 10 minutes)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> MonitoringSettings:
        def number(name: str, default: float, low: float, high: float) -> float:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                value = float("nan")
            if not low <= value <= high:
                raise InvalidInputError(
                    f"{name}={raw!r} is not a number between {low:g} and {high:g}", f"e.g. {name}={default:g}"
                )
            return value

        return cls(
            interval=number("HARBOURMASTER_MONITOR_INTERVAL", cls.interval, 0, 86_400),
            replica_silent_after=number("HARBOURMASTER_REPLICA_SILENT_AFTER", cls.replica_silent_after, 1, 86_400),
            db_latency_warning_ms=number("HARBOURMASTER_DB_LATENCY_WARNING_MS", cls.db_latency_warning_ms, 1, 600_000),
            artifacts_min_free_percent=number(
                "HARBOURMASTER_ARTIFACTS_MIN_FREE_PERCENT", cls.artifacts_min_free_percent, 0, 100
            ),
            replica_cpu_warning_percent=number(
                "HARBOURMASTER_REPLICA_CPU_WARNING_PERCENT", cls.replica_cpu_warning_percent, 1, 100_000
            ),
            replica_memory_warning_mb=number(
                "HARBOURMASTER_REPLICA_MEMORY_WARNING_MB", cls.replica_memory_warning_mb, 0, 10_000_000
            ),
            capture_pending_warning=number(
                "HARBOURMASTER_CAPTURE_PENDING_WARNING", cls.capture_pending_warning, 1, 1e12
            ),
            drift_every=number("HARBOURMASTER_DRIFT_EVERY", cls.drift_every, 0, 7 * 86_400),
            run_stalled_after=number("HARBOURMASTER_RUN_STALLED_AFTER", cls.run_stalled_after, 1, 30 * 86_400),
            notify_timeout=number("HARBOURMASTER_NOTIFY_TIMEOUT", cls.notify_timeout, 0.1, 300),
            notify_attempts=int(number("HARBOURMASTER_NOTIFY_ATTEMPTS", cls.notify_attempts, 1, 100)),
            notify_backoff=number("HARBOURMASTER_NOTIFY_BACKOFF", cls.notify_backoff, 0, 3600),
        )
