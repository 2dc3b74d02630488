"""Chart.js configurations built from the services' plain data: pages embed them as JSON
(``<script type="application/json" data-chart="CANVAS_ID">``) and ``static/charts.js`` draws them.

Only data and options that JSON can carry: no callbacks. Time axes are category labels (UTC
``HH:MM``), so no date adapter is needed; every chart's numbers are also in a table on its page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

# A palette readable on white, and the two colours a comparison uses (reference, current).
PALETTE = ("#1f6feb", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285", "#c2255c", "#5c940d")
REFERENCE, CURRENT = "#1f6feb", "#d9480f"
LIMIT = "#c92a2a"
STATUS_COLOURS = {"succeeded": "#2b8a3e", "failed": "#c92a2a", "running": "#1f6feb"}


def clock(value: datetime, seconds: bool = False) -> str:
    """A time as a chart label: UTC ``HH:MM`` (``HH:MM:SS`` with ``seconds``)."""
    value = value.astimezone(UTC) if value.tzinfo else value
    return value.strftime("%H:%M:%S" if seconds else "%H:%M")


def _line(label: str, values: Sequence[float | None], colour: str, **extra: Any) -> dict[str, Any]:
    return {
        "label": label,
        "data": list(values),
        "borderColor": colour,
        "backgroundColor": colour,
        "borderWidth": 2,
        "pointRadius": 0,
        "spanGaps": False,
        "tension": 0.2,
        **extra,
    }


def _limit(label: str, value: float, points: int) -> dict[str, Any]:
    """A dashed horizontal line: an SLA bound or a drift threshold."""
    return _line(label, [value] * points, LIMIT, borderDash=[6, 4], borderWidth=1.5, tension=0)


def _options(y_title: str, *, y_min: float | None = 0, stacked: bool = False, legend: bool = True) -> dict[str, Any]:
    y: dict[str, Any] = {"title": {"display": True, "text": y_title}, "stacked": stacked}
    if y_min is not None:
        y["min"] = y_min
    return {
        "animation": False,
        "responsive": True,
        "maintainAspectRatio": False,
        "interaction": {"mode": "index", "intersect": False},
        "plugins": {"legend": {"display": legend, "position": "bottom"}},
        "scales": {"x": {"stacked": stacked, "ticks": {"maxTicksLimit": 12, "autoSkip": True}}, "y": y},
    }


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    y_title: str,
    limits: Sequence[tuple[str, float | None]] = (),
    y_min: float | None = 0,
) -> dict[str, Any]:
    """Lines over shared labels, with dashed limit lines (a None limit is left out)."""
    datasets = [_line(name, values, PALETTE[i % len(PALETTE)]) for i, (name, values) in enumerate(series)]
    datasets += [_limit(name, value, len(labels)) for name, value in limits if value is not None]
    options = _options(y_title, y_min=y_min)
    return {"type": "line", "data": {"labels": list(labels), "datasets": datasets}, "options": options}


def comparison_chart(labels: Sequence[str], reference: Sequence[float], current: Sequence[float]) -> dict[str, Any]:
    """Reference vs current shares side by side (overlaid bars of a histogram, or categories)."""
    datasets = [
        {"label": "reference", "data": [100 * v for v in reference], "backgroundColor": REFERENCE + "99"},
        {"label": "current", "data": [100 * v for v in current], "backgroundColor": CURRENT + "99"},
    ]
    options = _options("% of values")
    options["scales"]["x"]["ticks"]["maxTicksLimit"] = 8
    options["barPercentage"] = 1.0
    options["categoryPercentage"] = 0.9
    return {"type": "bar", "data": {"labels": list(labels), "datasets": datasets}, "options": options}


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    y_title: str,
    colours: Sequence[str] | None = None,
    horizontal: bool = False,
) -> dict[str, Any]:
    """One bar per label (each with its own colour when given)."""
    dataset: dict[str, Any] = {
        "label": y_title,
        "data": list(values),
        "backgroundColor": list(colours) if colours else PALETTE[0],
        "maxBarThickness": 48,
    }
    options = _options(y_title, legend=False)
    if horizontal:
        options["indexAxis"] = "y"
        # Every bar labelled (Chart.js would skip labels when they crowd); the page sizes the box per bar.
        x_axis = {"min": 0, "title": {"display": True, "text": y_title}}
        options["scales"] = {"x": x_axis, "y": {"ticks": {"autoSkip": False}}}
    return {"type": "bar", "data": {"labels": list(labels), "datasets": [dataset]}, "options": options}


def bars_height(bars: int) -> int:
    """Pixels for a horizontal bar chart of ``bars`` bars: room for each label, and the axis."""
    return 60 + 26 * max(1, bars)


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Histogram bins as labels: each bin's lower bound, short."""
    return [f"{edge:.3g}" for edge in edges[:-1]]
