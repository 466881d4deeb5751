"""Request body size limits, enforced while the body is read (pure ASGI middleware).

A body over its limit is refused with 413 and a JSON `detail` that says the limit and the setting
that raises it: at once when Content-Length says so, else as soon as the chunks read pass the limit
(chunked bodies), so a 32 MB JSON document is never parsed and never held in memory.

Limits: `TRAINBOARD_MAX_BODY_BYTES` for JSON and forms, `TRAINBOARD_MAX_UPLOAD_BYTES` for the data
set uploads, `TRAINBOARD_MAX_ARTIFACT_BYTES` for a file a trainer uploads to the ingest API
(`PUT /api/ingest/runs/{id}/artifacts/{name}`), and PREDICT_BYTES for an image sent to a run's predict route.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# POST /api/runs/{id}/predict takes one image of at most 10 MiB, plus room for the multipart envelope.
PREDICT_BYTES = 10 * 1024 * 1024 + 64 * 1024


@dataclass(frozen=True)
class Limit:
    bytes: int
    what: str  # "request bodies", "data set uploads"...
    setting: str | None  # the environment variable that raises it


class BodyTooLarge(Exception):
    """Raised from `receive` once a body passes its limit; the middleware answers 413."""


def format_size(n: int) -> str:
    """Bytes for people: "512 KiB", "1.812 MiB", "2 GiB"."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n} bytes"


class BodyLimitMiddleware:
    """Rejects request bodies over their route's limit with 413, before or while they are read."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int,
                 max_artifact_bytes: int = 2 * 1024 * 1024 * 1024) -> None:
        self.app = app
        self.default = Limit(max_body_bytes, "request bodies", "TRAINBOARD_MAX_BODY_BYTES")
        upload = Limit(max_upload_bytes, "data set uploads", "TRAINBOARD_MAX_UPLOAD_BYTES")
        # The routes that take files: the data set uploads (API and page), predict, and a remote
        # trainer's exports and checkpoints (streamed).
        self.routes: list[tuple[str, re.Pattern[str], Limit]] = [
            ("POST", re.compile(r"/api/datasets/?"), upload),
            ("POST", re.compile(r"/datasets/?"), upload),
            ("POST", re.compile(r"/api/runs/[^/]+/predict/?"),
             Limit(PREDICT_BYTES, "images sent to predict (10 MiB)", None)),
            ("PUT", re.compile(r"/api/ingest/runs/[^/]+/(artifacts|checkpoints)/[^/]+"),
             Limit(max_artifact_bytes, "run artifacts and checkpoints", "TRAINBOARD_MAX_ARTIFACT_BYTES")),
        ]

    def limit_for(self, method: str, path: str) -> Limit:
        for route_method, pattern, limit in self.routes:
            if method == route_method and pattern.fullmatch(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit.bytes:
            await _refuse(send, limit, declared)
            return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:  # the app's answer to a body cut short: the client gets the 413
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await _refuse(send, limit, None)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, limit: Limit, declared: int | None) -> None:
    size = f" ({format_size(declared)})" if declared is not None else ""
    raise_it = f": send less, or raise {limit.setting}" if limit.setting else ": send a smaller one"
    detail = f"the request body{size} is over the limit of {format_size(limit.bytes)} for {limit.what}{raise_it}"
    body = json.dumps({"detail": detail, "errors": [{"field": "body", "message": detail}]}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
