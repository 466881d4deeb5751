"""Log in and out, personal API tokens, and users (admins): pages and JSON API.

Who may call what is decided in app/auth/middleware.py; these routes read the principal it set.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from app.auth import service
from app.auth.models import ROLES, SCOPES, ApiToken, User
from app.core.deps import DB_INT_MAX, SessionDep
from app.core.errors import DomainError, InvalidInput
from app.core.models_base import UtcDatetime
from app.web.templating import render

log = logging.getLogger("trainboard.auth")
UserId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="the user's id")]
TokenId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="the token's id")]
router = APIRouter()


class TooManyAttempts(DomainError):
    status_code = 429


class NotLoggedIn(DomainError):
    status_code = 401


# -- login rate limit: per account and per address, in this process ------------------------------

LOGIN_WINDOW_S = 300.0
LOGIN_MAX_FAILURES = 5
_failures: dict[str, deque[float]] = defaultdict(deque)
_failures_lock = threading.Lock()


def reset_login_limits() -> None:
    with _failures_lock:
        _failures.clear()


def _reserve(keys: list[str]) -> float:
    """Count this attempt against the keys now (so parallel attempts cannot all pass before any
    failure is recorded): 0 when allowed, else the seconds until another attempt is."""
    now = time.monotonic()
    with _failures_lock:
        wait = 0.0
        for key in keys:
            attempts = _failures[key]
            while attempts and now - attempts[0] > LOGIN_WINDOW_S:
                attempts.popleft()
            if len(attempts) >= LOGIN_MAX_FAILURES:
                wait = max(wait, LOGIN_WINDOW_S - (now - attempts[0]))
        if not wait:
            for key in keys:
                _failures[key].append(now)
        for key in keys:
            if not _failures[key]:
                del _failures[key]  # no entry kept for names nobody tries again
        return wait


def _succeeded(keys: list[str]) -> None:
    """A right password: the attempt it reserved does not count as a failure."""
    with _failures_lock:
        for key in keys:
            if _failures.get(key):
                _failures[key].pop()
                if not _failures[key]:
                    del _failures[key]


def _principal(request: Request) -> service.Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise NotLoggedIn("this needs an account: the server has none yet (trainboard users create NAME --admin)")
    return principal


def _safe_next(target: str | None) -> str:
    """Only a path on this server (never //host or a scheme): no open redirect after login."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    return target


# -- pages ---------------------------------------------------------------------------------------

@router.get("/login", include_in_schema=False)
def login_page(request: Request, db_session: SessionDep, next: str | None = None) -> Response:
    enabled = service.accounts_enabled(db_session)
    return render(request, "auth/login.html", {"next": _safe_next(next), "error": None, "enabled": enabled})


@router.post("/login", include_in_schema=False)
def login(request: Request, db_session: SessionDep, username: Annotated[str, Form(max_length=64)] = "",
          password: Annotated[str, Form(max_length=service.MAX_PASSWORD)] = "",
          next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    address = request.client.host if request.client else "?"
    keys = [f"user:{username.lower()}", f"addr:{address}"]
    enabled = service.accounts_enabled(db_session)
    wait = _reserve(keys)
    if wait:
        log.warning("login refused for %r from %s: too many failed attempts", username, address)
        return render(request, "auth/login.html", {"next": _safe_next(next), "enabled": enabled,
                      "error": f"too many failed attempts: try again in {wait / 60:.0f} min"}, status_code=429)
    user = service.authenticate(db_session, username, password)
    if user is None:
        log.warning("failed login for %r from %s", username, address)  # never the password
        return render(request, "auth/login.html", {"next": _safe_next(next), "enabled": enabled,
                      "error": "wrong username or password"}, status_code=401)
    _succeeded(keys)
    db_session.commit()
    request.session.clear()
    request.session.update({"user_id": user.id, "stamp": service.session_stamp(user),
                            "csrf": secrets.token_urlsafe(32)})
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", include_in_schema=False)
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/account", include_in_schema=False)
def account_page(request: Request, db_session: SessionDep) -> Response:
    principal = _principal(request)
    tokens = service.list_tokens(db_session, principal.user_id)
    return render(request, "auth/account.html", {"tokens": tokens, "state": service.token_state,
                                                 "scopes": SCOPES, "created": None, "error": None,
                                                 "password_error": None, "password_changed": False})


@router.post("/account/password", include_in_schema=False)
def account_change_password(request: Request, db_session: SessionDep,
                            current_password: Annotated[str, Form(max_length=service.MAX_PASSWORD)] = "",
                            new_password: Annotated[str, Form(max_length=service.MAX_PASSWORD)] = "") -> Response:
    """Change one's own password: every other session of this user ends, this one goes on."""
    principal = _principal(request)
    if principal.via != "session":
        raise InvalidInput("change a password from the account page, not with a token")
    error = None
    try:
        user = service.change_password(db_session, principal.user_id, current_password, new_password)
        db_session.commit()
        _keep_session(request, user)
    except InvalidInput as exc:
        db_session.rollback()
        error = exc.message
    tokens = service.list_tokens(db_session, principal.user_id)
    return render(request, "auth/account.html", {"tokens": tokens, "state": service.token_state, "scopes": SCOPES,
                                                 "created": None, "error": None, "password_error": error,
                                                 "password_changed": error is None},
                  partial="auth/_password.html", status_code=422 if error else 200)


def _keep_session(request: Request, user: Any) -> None:
    """After this user's own password changed: this browser's session stays valid."""
    if request.session.get("user_id") == user.id:
        request.session["stamp"] = service.session_stamp(user)


@router.post("/account/tokens", include_in_schema=False)
def account_create_token(request: Request, db_session: SessionDep, name: Annotated[str, Form(max_length=100)] = "",
                         scope: Annotated[str, Form(max_length=8)] = "read",
                         expires_in_days: Annotated[str, Form(max_length=6)] = "") -> Response:
    principal = _principal(request)
    user = service.get_user(db_session, principal.user_id)
    created, error = None, None
    try:
        days = int(expires_in_days) if expires_in_days.strip() else None
        if days is not None and not 1 <= days <= 3650:
            raise InvalidInput("expiry is 1 to 3650 days, or empty for none",
                               [{"field": "expires_in_days", "message": "1 to 3650"}])
        _, created = service.create_token(db_session, user, name, scope, days)
        db_session.commit()
    except ValueError:
        error = "expiry is a whole number of days"
    except InvalidInput as exc:
        db_session.rollback()
        error = exc.message
    tokens = service.list_tokens(db_session, principal.user_id)
    return render(request, "auth/account.html", {"tokens": tokens, "state": service.token_state, "scopes": SCOPES,
                                                 "created": created, "error": error},
                  partial="auth/_tokens.html", status_code=422 if error else 200)


@router.post("/account/tokens/{token_id}/revoke", include_in_schema=False)
def account_revoke_token(request: Request, db_session: SessionDep, token_id: TokenId) -> Response:
    principal = _principal(request)
    service.revoke_token(db_session, token_id, principal)
    db_session.commit()
    tokens = service.list_tokens(db_session, principal.user_id)
    return render(request, "auth/account.html", {"tokens": tokens, "state": service.token_state, "scopes": SCOPES,
                                                 "created": None, "error": None}, partial="auth/_tokens.html")


@router.get("/users", include_in_schema=False)
def users_page(request: Request, db_session: SessionDep) -> Response:
    _principal(request)
    return render(request, "auth/users.html", {"users": service.list_users(db_session), "roles": ROLES, "error": None,
                                               "notice": None})


@router.post("/users", include_in_schema=False)
def users_create(request: Request, db_session: SessionDep, username: Annotated[str, Form(max_length=64)] = "",
                 password: Annotated[str, Form(max_length=service.MAX_PASSWORD)] = "",
                 role: Annotated[str, Form(max_length=16)] = "member") -> Response:
    _principal(request)
    return _change_users(request, db_session, lambda: service.create_user(db_session, username, password, role), 422)


@router.post("/users/{user_id}", include_in_schema=False)
def users_update(request: Request, db_session: SessionDep, user_id: UserId,
                 role: Annotated[str | None, Form(max_length=16)] = None,
                 disabled: Annotated[str | None, Form(max_length=5)] = None,
                 password: Annotated[str | None, Form(max_length=service.MAX_PASSWORD)] = None) -> Response:
    """Change a user's role, enable or disable them, or set a new password (which ends their sessions)."""
    _principal(request)
    return _change_users(request, db_session, lambda: service.update_user(
        db_session, user_id, role=role, disabled=None if disabled is None else disabled == "true",
        password=password), 422 if password is not None else 409,
        done="new password set for {username}: their open sessions have ended" if password is not None else None)


def _change_users(request: Request, db_session, change: Callable[[], Any], error_status: int,
                  done: str | None = None) -> Response:
    """Apply a change to the users and answer the users panel, with the reason when it was refused."""
    error, notice = None, None
    try:
        user = change()
        db_session.commit()
        _keep_session(request, user)
        notice = done.format(username=user.username) if done else None
    except DomainError as exc:
        db_session.rollback()
        error = exc.message
    return render(request, "auth/users.html", {"users": service.list_users(db_session), "roles": ROLES,
                                               "error": error, "notice": notice}, partial="auth/_users.html",
                  status_code=error_status if error else 200)


# -- JSON API ------------------------------------------------------------------------------------

class Me(BaseModel):
    id: int
    username: str
    role: str
    scope: str
    via: str


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: str = Field("read", pattern="^(read|write)$")
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class TokenPublic(BaseModel):
    id: int
    name: str
    prefix: str
    scope: str
    state: str
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    revoked_at: UtcDatetime | None
    last_used_at: UtcDatetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="the token itself: shown once")


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=service.MIN_PASSWORD, max_length=service.MAX_PASSWORD)
    role: str = Field("member", pattern="^(admin|member|viewer)$")


class UserUpdate(BaseModel):
    role: str | None = Field(None, pattern="^(admin|member|viewer)$")
    disabled: bool | None = None
    password: str | None = Field(None, min_length=service.MIN_PASSWORD, max_length=service.MAX_PASSWORD)


class UserPublic(BaseModel):
    id: int
    username: str
    role: str
    disabled: bool
    created_at: UtcDatetime


def _token_public(row: ApiToken, **extra: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "prefix": row.prefix, "scope": row.scope,
            "state": service.token_state(row), "created_at": row.created_at, "expires_at": row.expires_at,
            "revoked_at": row.revoked_at, "last_used_at": row.last_used_at, **extra}


def _user_public(user: User) -> UserPublic:
    return UserPublic(id=user.id, username=user.username, role=user.role, disabled=user.disabled,
                      created_at=user.created_at)


@router.get("/api/me", response_model=Me, tags=["accounts"])
def me(request: Request) -> Any:
    principal = _principal(request)
    return Me(id=principal.user_id, username=principal.username, role=principal.role, scope=principal.scope,
              via=principal.via)


@router.get("/api/tokens", response_model=list[TokenPublic], tags=["accounts"])
def api_list_tokens(request: Request, db_session: SessionDep) -> Any:
    """Your personal tokens (the tokens themselves are never shown again)."""
    return [_token_public(row) for row in service.list_tokens(db_session, _principal(request).user_id)]


@router.post("/api/tokens", response_model=TokenCreated, status_code=201, tags=["accounts"])
def api_create_token(request: Request, db_session: SessionDep, body: TokenCreate) -> Any:
    user = service.get_user(db_session, _principal(request).user_id)
    row, token = service.create_token(db_session, user, body.name, body.scope, body.expires_in_days)
    db_session.commit()
    return _token_public(row, token=token)


@router.delete("/api/tokens/{token_id}", response_model=TokenPublic, tags=["accounts"])
def api_revoke_token(request: Request, db_session: SessionDep, token_id: TokenId) -> Any:
    """Revoke a token: it stops working at once."""
    row = service.revoke_token(db_session, token_id, _principal(request))
    db_session.commit()
    return _token_public(row)


@router.get("/api/users", response_model=list[UserPublic], tags=["accounts"])
def api_list_users(request: Request, db_session: SessionDep) -> Any:
    _principal(request)  # an admin (app/auth/middleware.py): never open, even on a server without users
    return [_user_public(u) for u in service.list_users(db_session)]


@router.post("/api/users", response_model=UserPublic, status_code=201, tags=["accounts"])
def api_create_user(request: Request, db_session: SessionDep, body: UserCreate) -> Any:
    _principal(request)
    user = service.create_user(db_session, body.username, body.password, body.role)
    db_session.commit()
    return _user_public(user)


@router.patch("/api/users/{user_id}", response_model=UserPublic, tags=["accounts"])
def api_update_user(request: Request, db_session: SessionDep, user_id: UserId, body: UserUpdate) -> Any:
    _principal(request)
    user = service.update_user(db_session, user_id, role=body.role, disabled=body.disabled, password=body.password)
    db_session.commit()
    _keep_session(request, user)
    return _user_public(user)
