"""The Jinja2 environment for every page, its number/shape filters, and full-page-or-partial rendering."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.core.errors import NotFound

T = TypeVar("T")

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

templates = Jinja2Templates(directory=TEMPLATES_DIR)


def is_htmx(request: Request) -> bool:
    """True for requests htmx makes (they want a fragment, not a whole page)."""
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    partial: str | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render `template`, or `partial` when htmx asked for a fragment and one is given."""
    name = partial if partial is not None and is_htmx(request) else template
    return templates.TemplateResponse(
        request, name, dict(context or {}), status_code=status_code, headers=dict(headers or {})
    )


def thousands(value: int | float | None) -> str:
    """101770 → '101,770' (the page's only number format for counts)."""
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.0f}"


def shape(value: Sequence[int] | None) -> str:
    """[1, 28, 28] → '(1, 28, 28)'; [128] → '(128,)', as Python and Keras print shapes."""
    if value is None:
        return "?"
    return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"


def si(value: int | float | None, unit: str = "") -> str:
    """203_264 → '203.3 K': FLOPs read better rounded; the exact count goes in a title attribute."""
    if value is None:
        return "–"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.1f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def filesize(value: int | None) -> str:
    """Bytes in binary units: 413_840 → '404.1 KiB'."""
    if value is None:
        return "–"
    size = float(value)
    for prefix in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or prefix == "GiB":
            return f"{size:.0f} B" if prefix == "B" else f"{size:.1f} {prefix}"
        size /= 1024
    return f"{size:.1f} GiB"


def when(value: datetime | None) -> str:
    """A timestamp as '2024-05-01 14:03 UTC' (stored naive values are UTC)."""
    if value is None:
        return "–"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters.update(thousands=thousands, shape=shape, si=si, filesize=filesize, when=when)


class PageNotFound(Exception):
    """Raised by page routes for a missing thing; `install` renders it as the 404 page."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def found_or_404(load: Callable[[], T]) -> T:
    """What a page is about (`load()`), or the 404 page when the service says it does not exist."""
    try:
        return load()
    except NotFound as exc:
        raise PageNotFound(exc.message) from exc


def not_found_page(request: Request, exc: Exception) -> HTMLResponse:
    """The HTML 404 page (the JSON API keeps its own JSON 404s)."""
    message = exc.message if isinstance(exc, PageNotFound) else "page not found"
    return render(request, "not_found.html", {"message": message}, status_code=404)
