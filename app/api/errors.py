"""Map domain errors and malformed requests to JSON answers a person can act on.

Errors are routed by exception type only: a `RequestValidationError` (FastAPI checked the request)
and a pydantic `ValidationError` raised later (a service validating a merged body, e.g. a fork's
settings) answer the same 422 shape, `{"detail": "...", "errors": [{"field", "message"}]}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError
from starlette.responses import Response

from app.core.errors import DomainError

# Where a model sits in the bodies the API takes, by the model's title (pydantic's
# ValidationError.title): a fork's or a run's settings are its `config`, so an error at `lr`
# is reported at `config.optimizer.lr`, as the person wrote it.
BODY_FIELD_OF_MODEL = {"TrainConfigIn": "config"}



class ErrorBody(BaseModel):
    """Every 4xx answer of the API: one sentence, plus the fields it concerns."""

    detail: str
    errors: list[dict[str, Any]] = []


# Documented on every API router, so the published schema describes the answers clients get
# (FastAPI's default 422 body is a list of pydantic errors, which this app never sends).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not found"},
    422: {"model": ErrorBody, "description": "Invalid input: `errors` names each field and what to fix"},
}

# (request, status code, message) → an HTML page; set by create_app for the page routes.
PageRenderer = Callable[[Request, int, str], Response]


def _field_path(loc: Iterable[Any], prefix: str = "") -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join([prefix, *parts] if prefix else parts)


def describe_errors(errors: Iterable[dict[str, Any]], prefix: str = "") -> tuple[str, list[dict]]:
    """Turn pydantic's errors into one sentence plus per-field details; `prefix` places a model
    validated on its own (TrainConfigIn → "config") inside the request body."""
    details = []
    for error in errors:
        if error.get("type") == "json_invalid":
            ctx = error.get("ctx", {})
            message = f"the request body is not valid JSON ({ctx.get('error', 'parse error')})"
            details.append({"field": "body", "message": message})
            continue
        field = _field_path(error.get("loc", ()), prefix)
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        details.append({"field": field, "message": f"{field or 'body'}: {msg}"})
    message = "; ".join(d["message"] for d in details) or "invalid request"
    return message, details


def describe_validation_error(exc: RequestValidationError) -> tuple[str, list[dict]]:
    """Turn pydantic's errors into one sentence plus per-field details."""
    return describe_errors(exc.errors())


def install_error_handlers(app: FastAPI, *, page: PageRenderer | None = None) -> None:
    """`page` renders the HTML answer for a page route (not under /api/) whose path does not
    name anything that can exist (an id out of range): the 404 page, as for a missing one."""

    @app.exception_handler(DomainError)
    async def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "errors": exc.details}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        message, details = describe_validation_error(exc)
        in_path = [e for e in exc.errors() if tuple(e.get("loc", ()))[:1] == ("path",)]
        if page is not None and in_path and not request.url.path.startswith("/api/"):
            return page(request, 404, f"nothing here: {message}")
        return JSONResponse({"detail": message, "errors": details}, status_code=422)

    @app.exception_handler(DataError)
    async def _data_error(_request: Request, exc: DataError) -> JSONResponse:
        """A value the database itself refuses (PostgreSQL: a NUL character in text, a number past
        its column): the request's transaction was rolled back, nothing was written."""
        reason = "a text value contains a NUL character" if "NUL" in str(exc.orig) else "a value is out of range"
        return JSONResponse({"detail": f"the database cannot store this request: {reason}", "errors": []},
                            status_code=422)

    @app.exception_handler(ValidationError)
    async def _model_validation_error(_request: Request, exc: ValidationError) -> JSONResponse:
        message, details = describe_errors(exc.errors(), BODY_FIELD_OF_MODEL.get(exc.title, ""))
        return JSONResponse({"detail": message, "errors": details}, status_code=422)
