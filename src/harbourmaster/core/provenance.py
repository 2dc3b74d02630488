"""Where a version's metrics come from: computed by the platform, or reported by a registrant.

``computed``: the platform's training service ran the project's pipeline and
evaluated it on a held-out split it drew itself (``harbourmaster train``).
``reported``: anything else: numbers typed into ``Client.register(metrics=...)``,
metrics evaluated client-side on ``eval_data``, and every bundle uploaded to the
control plane, whatever it claims: the control plane never runs author code, so
it cannot recompute them. Metric gates judge computed numbers only, unless an
environment sets ``allow_reported_metrics``, and only when evaluated on at least
``min_evaluation_rows`` held-out rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

COMPUTED = "computed"
REPORTED = "reported"
DEFAULT_MIN_EVALUATION_ROWS = 30
"""Fewer held-out rows than this make a version unfit for metric gates (per environment: min_evaluation_rows)."""


@dataclass(frozen=True)
class MetricsProvenance:
    """Who produced a version's metrics (``computed`` or ``reported``) and on how many held-out rows."""

    source: str
    rows: int | None = None

    @classmethod
    def computed(cls, rows: int) -> MetricsProvenance:
        """Evaluated by the platform itself on ``rows`` held-out rows it drew."""
        return cls(COMPUTED, int(rows))

    @classmethod
    def reported(cls, lineage: Mapping[str, Any] | None = None) -> MetricsProvenance:
        """Supplied by the registrant; ``rows`` is their claim (lineage ``evaluation.rows``), if any."""
        evaluation = (lineage or {}).get("evaluation")
        rows = evaluation.get("rows") if isinstance(evaluation, Mapping) else None
        claimed = rows if isinstance(rows, int) and not isinstance(rows, bool) and 0 <= rows < 2**31 else None
        return cls(REPORTED, claimed)
