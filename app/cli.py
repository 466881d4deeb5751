"""`trainboard serve | data | run` entry points."""

from __future__ import annotations

import argparse
import sys

from app import cli_run


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    if args.host:
        os.environ["TRAINBOARD_HOST"] = args.host
    if args.port:
        os.environ["TRAINBOARD_PORT"] = str(args.port)
    from app.core.config import get_settings
    from app.core.db import upgrade_database
    from app.executors import ExecutorUnavailable, check_executor

    get_settings.cache_clear()
    settings = get_settings()
    try:
        check_executor(settings)
    except ExecutorUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


def _data_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.core.config import get_settings
    from app.core.errors import DomainError
    from app.datasets import registry

    try:
        info = registry.import_idx(args.name, Path(args.dir), get_settings().data_dir)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"imported {args.name}: {info.train_size} training and {info.test_size} test samples")
    return 0


def _data_list(_args: argparse.Namespace) -> int:
    from app.core.config import get_settings
    from app.datasets import registry

    for info in registry.list_datasets(get_settings().data_dir):
        state = "ready" if info.available else "not available"
        print(f"{info.name:16} {str(tuple(info.input_shape)):14} {info.num_classes:4} classes  {state}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from app.core.errors import DomainError
    from app.runs.schemas import describe

    try:
        return cli_run.run_remote(args) if args.server else cli_run.run_local(args)
    except (DomainError, ValidationError) as exc:
        print(f"error: {exc.message if isinstance(exc, DomainError) else describe(exc)}", file=sys.stderr)
        return 2


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

    data = sub.add_parser("data", help="manage data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_import = data_sub.add_parser("import", help="import MNIST-style idx files or CIFAR-10 binary batches")
    data_import.add_argument("name", help="mnist, fashion_mnist or cifar10")
    data_import.add_argument("dir", help="folder with the files, e.g. ../shared/data/mnist")
    data_import.set_defaults(func=_data_import)
    data_list = data_sub.add_parser("list", help="list data sets")
    data_list.set_defaults(func=_data_list)

    run = sub.add_parser("run", help="train a model: on a server (--server URL) or in this process")
    model = run.add_mutually_exclusive_group(required=True)
    model.add_argument("--preset", help="e.g. mnist-mlp")
    model.add_argument("--architecture", type=int, help="a saved architecture id (needs --server)")
    model.add_argument("--spec", help="a JSON file with an architecture spec")
    run.add_argument("--dataset", help="data set name (default: the preset's)")
    run.add_argument("--server", default=None, help="a running Trainboard, e.g. http://127.0.0.1:8000")
    settings = run.add_argument_group("run settings", "the same settings, limits and defaults as POST /api/runs")
    cli_run.add_setting_options(settings)
    run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
