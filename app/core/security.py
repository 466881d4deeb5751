"""Security headers on every answer: a Content-Security-Policy that allows only this server's own
scripts (no inline script, no third-party origin), no sniffing, no framing, a same-origin referrer.

Styles may be inline (`style-src 'unsafe-inline'`): a few templates and the chart library set
them; scripts may not. Pages keep their behaviour in static/js (page.js, csrf.js, ...).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((name, value) for name, value in HEADERS if name not in present)]
            await send(message)

        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower():
            # A NUL byte names no file, run or setting (and PostgreSQL cannot even compare one).
            body = b'{"detail": "the URL contains a NUL byte (%00): remove it", "errors": []}'
            await send_with_headers({"type": "http.response.start", "status": 400, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send_with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)
