"""One gate in front of every route: who is asking, and may they do this.

It is ASGI middleware, not a per-route dependency, so nothing can be mounted or added around it:
pages, the JSON API, SSE streams, artifact and data set files, predict, the OpenAPI docs and the
static files all pass through it (tests/auth/test_routes_closed.py walks the route table).

- Always: a state-changing request (not GET/HEAD/OPTIONS) whose `Origin` is another site's is
  refused (403): a page elsewhere cannot make a browser post to this server.
- With no users the server is open, as on a laptop (the CLI keeps it on loopback then), and it
  answers only to loopback host names (or TRAINBOARD_ALLOWED_HOSTS): a web page that rebinds its
  own name to 127.0.0.1 still sends its name as Host, and is refused.
- Once a user exists, a request needs a personal token (`Authorization: Bearer tb_…`) or the
  session cookie set by the login page (signed by Starlette's SessionMiddleware with
  itsdangerous); else 401 for the API and SSE, a redirect to /login for pages. Open: the login
  page, /healthz, /static, and the run-ingest routes (they take their run's own token).
- Viewers and read-scoped tokens only read; managing users needs an admin.
- A login session holds a stamp of the user's password hash: a new password ends older sessions.
- A long answer (an SSE stream, a large download) re-checks its credential every
  TRAINBOARD_AUTH_RECHECK_S and ends when it is no longer valid (revoked, disabled, new password).
- A state-changing request made with the session cookie carries its CSRF token in the
  `X-CSRF-Token` header (static/js/csrf.js adds it to every htmx and fetch request), else 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth import service
from app.auth.context import CURRENT_USER
from app.core.config import get_settings
from app.core.db import session_scope

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PUBLIC = ("/login", "/healthz")
PUBLIC_PREFIXES = ("/static/",)
# Admin only (users); /api/tokens and /account are every user's own.
ADMIN_PREFIXES = ("/api/users", "/users")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _is_page(path: str, headers: dict[str, str]) -> bool:
    if path.startswith("/api/") or path == "/openapi.json":
        return False
    return "text/event-stream" not in headers.get("accept", "")


async def _answer(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail, "errors": []}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def _same_origin(origin: str, headers: dict[str, str]) -> bool:
    host = headers.get("host", "")
    parts = urlsplit(origin)
    return parts.netloc == host and parts.scheme in ("http", "https")


def _host_name(host_header: str) -> str:
    """The name in a Host header, without its port: "[::1]:8000" -> "::1", "a.b:80" -> "a.b"."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _host_allowed(host_header: str, allowed: str, accounts: bool) -> bool:
    names = {name.strip().lower() for name in allowed.split(",") if name.strip()}
    if "*" in names or (accounts and not names):
        return True
    host = _host_name(host_header)
    if host in names:
        return True
    if names:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Watched:
    """Send and receive for a request whose credential may be withdrawn while it is answered: every
    RECHECK seconds of a long answer (a body sent in parts), ask again; when the answer is no, end
    the body and tell the app the client left (sse-starlette then stops its stream)."""

    def __init__(self, receive: Receive, send: Send, still_valid: Callable[[], bool], recheck_s: float):
        self._receive, self._send, self._still_valid, self._recheck_s = receive, send, still_valid, recheck_s
        self._checked = time.monotonic()
        self._ended = anyio.Event()

    async def send(self, message: dict) -> None:
        if self._ended.is_set():
            return
        if (message["type"] == "http.response.body" and message.get("more_body")
                and time.monotonic() - self._checked >= self._recheck_s):
            self._checked = time.monotonic()
            if not await anyio.to_thread.run_sync(self._still_valid):
                self._ended.set()
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        await self._send(message)

    async def receive(self) -> dict:
        message = {"type": "http.disconnect"}
        if self._ended.is_set():
            return message
        async with anyio.create_task_group() as group:
            async def from_client() -> None:
                nonlocal message
                message = await self._receive()
                group.cancel_scope.cancel()

            async def on_end() -> None:
                await self._ended.wait()
                group.cancel_scope.cancel()

            group.start_soon(from_client)
            group.start_soon(on_end)
        return message


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = None
        method, path = scope["method"], scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"  # what the router matches (served under a prefix)
        headers = _headers(scope)
        unsafe = method not in SAFE_METHODS
        origin = headers.get("origin")
        if unsafe and origin and (origin == "null" or not _same_origin(origin, headers)):
            # "null": a sandboxed frame or a redirect elsewhere; never a page of this server.
            await _answer(send, 403, f"a request from another site ({origin}) cannot change anything here")
            return
        if path in PUBLIC or path.startswith(PUBLIC_PREFIXES) or (
                path.startswith("/api/ingest/runs/")):  # run-ingest routes check their run's token
            await self.app(scope, receive, send)
            return

        session = scope.get("session") or {}
        bearer = headers.get("authorization", "")
        token = bearer[7:].strip() if bearer[:7].lower() == "bearer " else None

        def identify() -> tuple[bool, service.Principal | None]:
            with session_scope() as db_session:
                if not service.accounts_enabled(db_session):
                    return False, None
                if token:
                    return True, service.principal_for_token(db_session, token)
                user_id, stamp = session.get("user_id"), session.get("stamp")
                if not isinstance(user_id, int) or not isinstance(stamp, str):
                    return True, None
                return True, service.principal_for_user(db_session, user_id, stamp)

        enabled, principal = await anyio.to_thread.run_sync(identify)
        settings = get_settings()
        if not _host_allowed(headers.get("host", ""), settings.allowed_hosts, enabled):
            name = _host_name(headers.get("host", ""))
            await _answer(send, 400, f"this server does not answer to the host name {name!r}: "
                          + ("with no accounts it answers to localhost and 127.0.0.1 only; " if not enabled else "")
                          + "add it to TRAINBOARD_ALLOWED_HOSTS if it is really this server's name")
            return
        if not enabled:
            await self.app(scope, receive, send)
            return
        if principal is None:
            if token:
                await _answer(send, 401, "this API token is not valid (revoked, expired or unknown)",
                              [(b"www-authenticate", b"Bearer")])
            elif _is_page(path, headers) and method in SAFE_METHODS:
                target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
                await _redirect(send, f"/login?next={quote(target, safe='')}")
            else:
                await _answer(send, 401, "log in, or send an API token: Authorization: Bearer <token>",
                              [(b"www-authenticate", b"Bearer")])
            return
        if path.startswith(ADMIN_PREFIXES) and not principal.is_admin:
            await _answer(send, 403, "only an admin can manage users")
            return
        if unsafe and path not in ("/logout",):
            if principal.scope != "write":
                await _answer(send, 403, "this API token is read-only: create a token with the write scope")
                return
            if principal.role == "viewer" and not path.startswith(("/api/tokens", "/account")):
                await _answer(send, 403, "your role is viewer: you can look, not change anything")
                return
            if principal.via == "session":
                expected = session.get("csrf") or ""
                sent = headers.get("x-csrf-token", "")
                if not expected or not hmac.compare_digest(expected, sent):
                    await _answer(send, 403, "the CSRF token is missing or wrong: reload the page and try again")
                    return
        scope["state"]["principal"] = principal
        token_var = CURRENT_USER.set(principal.user_id)
        watched = _Watched(receive, send, lambda: identify()[1] is not None, settings.auth_recheck_s)
        try:
            await self.app(scope, watched.receive, watched.send)
        finally:
            CURRENT_USER.reset(token_var)
