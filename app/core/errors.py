"""Domain errors. Services raise these; only api/web translate them to HTTP."""

from __future__ import annotations


class DomainError(Exception):
    """Base for errors a user can cause; `details` is a list of dicts for the 422 body."""

    status_code = 422
    headers: dict[str, str] | None = None  # e.g. Retry-After on a 503

    def __init__(self, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


class NotFound(DomainError):
    status_code = 404


class InvalidInput(DomainError):
    status_code = 422


class Conflict(DomainError):
    status_code = 409


class EngineUnavailable(DomainError):
    status_code = 503


class TooLarge(DomainError):
    """An upload over a size limit (413)."""

    status_code = 413
