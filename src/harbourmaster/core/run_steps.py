"""What a pipeline run records as it goes: each step's start, end, duration and rows in and out, and the
verdict on its input data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harbourmaster.core.run_checks import ValidationReport

__all__ = ["RunStep", "RunTrace"]


class RunStep(BaseModel):
    """One step of a run (read, validate, fit, score, write ...)."""

    model_config = ConfigDict(allow_inf_nan=False)  # stored as JSON, which has no NaN

    name: str = Field(max_length=64)
    status: str = Field(pattern="^(succeeded|failed)$")
    started_at: datetime
    finished_at: datetime
    duration_seconds: float = Field(ge=0)
    rows_in: int | None = Field(default=None, ge=0)
    rows_out: int | None = Field(default=None, ge=0)
    note: str | None = Field(default=None, max_length=1000)


class _Open:
    """The step under way: its row counts may be set while it runs."""

    def __init__(self, rows_in: int | None) -> None:
        self.rows_in = rows_in
        self.rows_out: int | None = None
        self.note: str | None = None


class RunTrace:
    """Collects a run's steps (a step that raises is recorded as failed and the error goes on) and the
    validation of its input data."""

    def __init__(self) -> None:
        self.steps: list[RunStep] = []
        self.validation: ValidationReport | None = None

    @contextmanager
    def step(self, name: str, rows_in: int | None = None) -> Iterator[_Open]:
        started, clock = datetime.now(UTC), time.perf_counter()
        current = _Open(rows_in)
        status = "failed"
        try:
            yield current
            status = "succeeded"
        finally:
            self.steps.append(
                RunStep(
                    name=name,
                    status=status,
                    started_at=started,
                    finished_at=datetime.now(UTC),
                    duration_seconds=round(time.perf_counter() - clock, 6),
                    rows_in=current.rows_in,
                    rows_out=current.rows_out,
                    note=current.note,
                )
            )

    def dump_steps(self) -> list[dict[str, Any]]:
        return [step.model_dump(mode="json") for step in self.steps]

    def dump_validation(self) -> dict[str, Any] | None:
        return self.validation.model_dump(mode="json") if self.validation is not None else None
