"""`trainboard serve | data | run` entry points."""

from __future__ import annotations

import argparse
import sys


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    if args.host:
        os.environ["TRAINBOARD_HOST"] = args.host
    if args.port:
        os.environ["TRAINBOARD_PORT"] = str(args.port)
    from app.core.config import get_settings
    from app.core.db import upgrade_database

    get_settings.cache_clear()
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database()
    print(f"Trainboard on http://{settings.host}:{settings.port}  (database: {_redact(settings.sqlalchemy_url)})")
    uvicorn.run("app.main:create_app", factory=True, host=settings.host, port=settings.port,
                log_level=args.log_level, timeout_graceful_shutdown=3)
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _migrate(_args: argparse.Namespace) -> int:
    from app.core.db import upgrade_database

    upgrade_database()
    print("database is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="apply migrations and serve the web app")
    serve.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(func=_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
