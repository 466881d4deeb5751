"""HTML pages (server-rendered Jinja2 + htmx). Pages call domain services only: never torch."""

from __future__ import annotations

from fastapi import FastAPI

from app.web import (
    architectures,
    compare,
    datasets,
    explain,
    home,
    lr_finder,
    pages,
    projection,
    run_manage,
    runs,
    sweeps,
)
from app.web.templating import PageNotFound, not_found_page


def install(app: FastAPI) -> None:
    """Add the page routers and the HTML 404 page to the app."""
    app.include_router(home.router)
    app.include_router(lr_finder.router)  # before runs: /runs/lr-finder is not a run
    app.include_router(runs.router)
    app.include_router(run_manage.router)
    app.include_router(explain.router)
    app.include_router(projection.router)
    app.include_router(compare.router)
    app.include_router(sweeps.router)
    app.include_router(architectures.router)
    app.include_router(datasets.router)
    app.include_router(pages.router)
    app.add_exception_handler(PageNotFound, not_found_page)
