"""create_app(): the FastAPI application (routers, static files, lifespan)."""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from app.api import architectures as architectures_api
from app.api import compare as compare_api
from app.api import datasets as datasets_api
from app.api import explain as explain_api
from app.api import health as health_api
from app.api import histograms as histograms_api
from app.api import ingest as ingest_api
from app.api import lr_finder as lr_finder_api
from app.api import projection as projection_api
from app.api import runs as runs_api
from app.api import series as series_api
from app.api import sweeps as sweeps_api
from app.api.errors import install_error_handlers
from app.auth import hooks as _auth_hooks  # noqa: F401  (runs and architectures record their creator)
from app.auth import routes as auth_routes
from app.auth.middleware import AuthMiddleware
from app.auth.secret import session_secret
from app.core.config import get_settings
from app.core.limits import BodyLimitMiddleware
from app.core.security import SecurityHeadersMiddleware
from app.executors import make_executor
from app.runs.stream import StreamHub

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the executor (picks up queued runs, reaps orphans) and stop it on shutdown."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    executor = make_executor(settings) if app.state.start_executor else None
    app.state.executor = executor
    app.state.stream_hub = StreamHub(settings.poll_interval_s, settings.sse_heartbeat_s)
    if executor is not None:
        executor.start()
    # Everything imported and built at start-up lives as long as the process: move it out of the
    # collector's reach, so a full collection (set off by a request that allocates many objects,
    # e.g. a large JSON body) walks only what requests made, not the whole app.
    gc.freeze()
    try:
        yield
    finally:
        if executor is not None:
            executor.stop()
        # Processes a request started go with the server: the predictor and any learning-rate search.
        from app.runs import lr_finder, predict

        predict.stop()
        lr_finder.stop_all()


def create_app(*, start_executor: bool = True) -> FastAPI:
    """Build the app. Importing this module must not import torch (the web process stays light)."""
    app = FastAPI(
        title="Trainboard",
        description="Define, train, watch and compare neural networks.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs is served from static/vendor below (no CDN: it works offline and under the CSP).
        docs_url=None,
        redoc_url=None,
    )
    app.state.start_executor = start_executor
    settings = get_settings()
    # Inner to outer: who is asking (app/auth/middleware.py), the signed session cookie it reads, the
    # body limit (an oversized body is refused before anything reads it), the security headers.
    app.add_middleware(AuthMiddleware)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings), session_cookie="trainboard_session",
                       max_age=int(settings.session_max_age_s), same_site="lax", https_only=settings.secure_cookies)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes,
                       max_upload_bytes=settings.max_upload_bytes, max_artifact_bytes=settings.max_artifact_bytes)
    # Outermost: every answer gets the security headers, the gate's 401/403/303 and 413s included.
    app.add_middleware(SecurityHeadersMiddleware)
    install_error_handlers(app, page=_page)
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    app.include_router(health_api.router)
    app.include_router(architectures_api.router)
    app.include_router(runs_api.router)
    app.include_router(explain_api.router)
    app.include_router(series_api.router)
    app.include_router(histograms_api.router)
    app.include_router(datasets_api.router)
    app.include_router(compare_api.router)
    app.include_router(sweeps_api.router)
    app.include_router(ingest_api.router)
    app.include_router(lr_finder_api.router)
    app.include_router(projection_api.router)
    app.include_router(auth_routes.router)

    @app.get("/docs", include_in_schema=False)
    def api_docs(request: Request) -> Response:
        from app.web.templating import render

        return render(request, "api_docs.html")
    from app.web import install as install_web

    install_web(app)
    return app


def _page(request: Request, status_code: int, message: str) -> Response:
    """The HTML answer of a page route whose URL names nothing that can exist (the 404 page)."""
    from app.web.templating import render

    return render(request, "not_found.html", {"message": message}, status_code=status_code)
