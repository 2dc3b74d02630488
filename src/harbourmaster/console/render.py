"""One Jinja2 environment for the console (autoescape on) and ``render`` for pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from harbourmaster import __version__

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def _when(value: datetime | str | None) -> str:
    """A timestamp as UTC 'YYYY-MM-DD HH:MM:SS' (what the CLI prints)."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _number(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _short(digest: str | None, length: int = 12) -> str:
    return (digest or "-")[:length]


def _as_json(value: Any) -> Markup:
    """Data for a page's script, put in a ``<script type="application/json">`` block (escaped for HTML)."""
    text = json.dumps(value, default=str, sort_keys=True)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def build_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, number=_number, percent=_percent, short=_short, as_json=_as_json)
    env.globals.update(version=__version__)
    return env


ENVIRONMENT = build_environment()


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the page's context plus what ``base.html`` needs (user, nav, CSRF token)."""
    from harbourmaster.console.pages import navigation

    session = getattr(request.state, "console_session", None)
    actor = getattr(request.state, "console_actor", None)
    access = request.app.state.platform.access

    def allowed(permission: Any) -> bool:
        return actor is not None and access.allows(actor, permission)

    html = ENVIRONMENT.get_template(template).render(
        request=request,
        actor=actor,
        csrf=session.csrf if session is not None else "",
        nav=navigation(allowed),
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)
