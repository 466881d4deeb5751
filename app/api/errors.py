"""Map domain errors and malformed requests to JSON answers a person can act on."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.core.errors import DomainError


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts)


def describe_validation_error(exc: RequestValidationError) -> tuple[str, list[dict]]:
    """Turn pydantic's errors into one sentence plus per-field details."""
    details = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            ctx = error.get("ctx", {})
            message = f"the request body is not valid JSON ({ctx.get('error', 'parse error')})"
            details.append({"field": "body", "message": message})
            continue
        field = _field_path(tuple(error.get("loc", ())))
        details.append({"field": field, "message": f"{field or 'body'}: {error.get('msg', 'invalid')}"})
    message = "; ".join(d["message"] for d in details) or "invalid request"
    return message, details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "errors": exc.details}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = describe_validation_error(exc)
        return JSONResponse({"detail": message, "errors": details}, status_code=422)
