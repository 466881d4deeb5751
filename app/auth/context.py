"""Who the current request acts for, where the services can see it without passing it along."""

from __future__ import annotations

from contextvars import ContextVar

# Set by app/auth/middleware.py for a request made with an account; None on a server without users.
CURRENT_USER: ContextVar[int | None] = ContextVar("trainboard_current_user", default=None)
