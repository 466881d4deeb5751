"""`trainboard serve | migrate | data | run | users | tokens` entry points."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from app import cli_run


def _serve(args: argparse.Namespace) -> int:
    import os

    if args.host:
        os.environ["TRAINBOARD_HOST"] = args.host
    if args.port:
        os.environ["TRAINBOARD_PORT"] = str(args.port)
    from app.core.config import get_settings
    from app.executors import ExecutorUnavailable, check_executor, local

    get_settings.cache_clear()
    settings = get_settings()
    try:
        check_executor(settings)
    except ExecutorUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # The app's own warnings, formatted as Alembic's logging config (alembic.ini) does when migrations run:
    # the same lines whether or not this start had a migration to apply (upgrade_database skips Alembic).
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)-5.5s [%(name)s] %(message)s")
    # Warm the first trainer beside the server's own start, before its imports (app/executors/local.py).
    local.start_early_standby(settings)
    try:
        import uvicorn

        from app.core.db import upgrade_database

        upgrade_database()
        refusal = _check_exposure(settings, insecure_no_auth=args.insecure_no_auth)
        if refusal:
            print(f"error: {refusal}", file=sys.stderr)
            return 2
        print(f"Trainboard on http://{settings.host}:{settings.port}  (database: {_redact(settings.sqlalchemy_url)})")
        uvicorn.run("app.main:create_app", factory=True, host=settings.host, port=settings.port,
                    log_level=args.log_level, timeout_graceful_shutdown=3)
    finally:
        local.discard_early_standby()  # not taken over: the server did not start (or is gone)
    return 0


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _check_exposure(settings, *, insecure_no_auth: bool) -> str | None:
    """Create the first admin from TRAINBOARD_ADMIN_PASSWORD when there is no user; refuse to
    listen beyond loopback without accounts (anyone who reaches it could do anything) unless told
    so explicitly. Returns why it refuses, or None."""
    from app.auth import service
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.core.errors import DomainError

    with session_scope() as db_session:
        has_users = service.accounts_enabled(db_session)
        if not has_users and settings.admin_password:
            try:
                service.create_user(db_session, settings.admin_user, settings.admin_password, "admin")
            except DomainError as exc:
                return f"TRAINBOARD_ADMIN_PASSWORD: {exc.message}"
            print(f"created the admin {settings.admin_user} (TRAINBOARD_ADMIN_PASSWORD)")
            has_users = True
    if has_users or settings.host in LOOPBACK:
        if not has_users:
            print("no accounts: open to anyone on this machine (create an admin: trainboard users create NAME --admin)")
        return None
    if insecure_no_auth:
        print(f"WARNING: serving on {settings.host} with no accounts: anyone who reaches it can change anything",
              file=sys.stderr)
        if not settings.allowed_hosts:  # reached by whatever name the network gives it
            os.environ["TRAINBOARD_ALLOWED_HOSTS"] = "*"
            get_settings.cache_clear()
        return None
    return (f"refusing to listen on {settings.host} with no accounts: anyone who reaches it could create, cancel "
            "and delete runs. Create an admin first (trainboard users create NAME --admin, or set "
            "TRAINBOARD_ADMIN_PASSWORD), or pass --insecure-no-auth if you really mean it")


def _database() -> None:
    """The data dir and an up-to-date database, for the commands that work on it directly."""
    from app.core.config import get_settings
    from app.core.db import upgrade_database

    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database()


def _users_create(args: argparse.Namespace) -> int:
    import getpass
    import os

    from app.auth import service
    from app.core.db import session_scope
    from app.core.errors import DomainError

    _database()
    password = os.environ.get("TRAINBOARD_NEW_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    role = "admin" if args.admin else args.role
    try:
        with session_scope() as db_session:
            user = service.create_user(db_session, args.username, password, role)
            print(f"created {role} {user.username} (id {user.id})")
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _users_list(_args: argparse.Namespace) -> int:
    from app.auth import service
    from app.core.db import session_scope

    _database()
    with session_scope(write=False) as db_session:
        for user in service.list_users(db_session):
            print(f"{user.id:5} {user.username:24} {user.role:8} {'disabled' if user.disabled else 'enabled'}")
    return 0


def _tokens_create(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from app.auth import service
    from app.auth.models import User
    from app.core.db import session_scope
    from app.core.errors import DomainError

    _database()
    try:
        with session_scope() as db_session:
            user = db_session.scalar(select(User).where(User.username == args.user))
            if user is None:
                print(f"error: there is no user {args.user}", file=sys.stderr)
                return 2
            row, token = service.create_token(db_session, user, args.name, args.scope, args.days)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"token {row.id} for {args.user} ({args.scope}{f', {args.days} days' if args.days else ''}), shown once:")
    print(token)
    return 0


def _tokens_revoke(args: argparse.Namespace) -> int:
    from app.auth import service
    from app.auth.models import ApiToken
    from app.core.db import session_scope
    from app.core.models_base import utcnow

    _database()
    with session_scope() as db_session:
        row = db_session.get(ApiToken, args.id)
        if row is None:
            print(f"error: there is no token {args.id}", file=sys.stderr)
            return 2
        row.revoked_at = row.revoked_at or utcnow()
        print(f"revoked token {row.id} ({row.name}); it stopped working at once")
    service.forget_cache()
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
    from app.datasets import download, registry

    name = download.canonical(args.name)
    try:
        info = registry.import_idx(name, Path(args.dir), get_settings().data_dir)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"imported {name}: {info.train_size} training and {info.test_size} test samples")
    return 0


@contextlib.contextmanager
def _download_progress() -> Iterator[Callable[[str, int, int | None], None]]:
    """A rich progress bar per file on a terminal; otherwise (a log, the dashboard's download) plain lines."""
    try:
        from rich import progress as rich_progress
    except ImportError:
        rich_progress = None
    if rich_progress is None or not sys.stdout.isatty():
        from app.core.limits import format_size

        def line(file: str, done: int, total: int | None) -> None:
            if done == 0:
                print(f"downloading {file}" + (f" ({format_size(total)})" if total else ""), flush=True)
            elif done == total:
                print(f"  {file}: done", flush=True)

        yield line
        return
    columns = (rich_progress.TextColumn("{task.description}"), rich_progress.BarColumn(),
               rich_progress.DownloadColumn(), rich_progress.TransferSpeedColumn(),
               rich_progress.TimeRemainingColumn())
    with rich_progress.Progress(*columns) as bar:
        tasks: dict[str, rich_progress.TaskID] = {}

        def update(file: str, done: int, total: int | None) -> None:
            if file not in tasks:
                tasks[file] = bar.add_task(file, total=total)
            bar.update(tasks[file], completed=done, total=total)

        yield update


def _data_download(args: argparse.Namespace) -> int:
    from app.core.config import get_settings
    from app.core.errors import DomainError
    from app.datasets import download, registry

    name = download.canonical(args.name)
    data_dir = get_settings().data_dir
    try:
        with _download_progress() as progress:
            fetched = download.download(name, data_dir, progress=progress)
        info = registry.get_dataset_info(name, data_dir)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a data dir it may not write
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'downloaded' if fetched else 'already here:'} {name}: {info.train_size} training and "
          f"{info.test_size} test samples in {data_dir.resolve()}")
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
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="listen beyond loopback even with no accounts (anyone who reaches it can change anything)")
    serve.set_defaults(func=_serve)

    users = sub.add_parser("users", help="manage accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    users_create = users_sub.add_parser("create", help="create a user (password from TRAINBOARD_NEW_PASSWORD or a prompt)")
    users_create.add_argument("username")
    users_create.add_argument("--role", choices=("admin", "member", "viewer"), default="member")
    users_create.add_argument("--admin", action="store_true", help="same as --role admin")
    users_create.set_defaults(func=_users_create)
    users_sub.add_parser("list", help="list users").set_defaults(func=_users_list)

    tokens = sub.add_parser("tokens", help="personal API tokens (send as Authorization: Bearer, or TRAINBOARD_TOKEN)")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    tokens_create = tokens_sub.add_parser("create", help="create a token for a user; it is printed once")
    tokens_create.add_argument("--user", required=True)
    tokens_create.add_argument("--name", required=True)
    tokens_create.add_argument("--scope", choices=("read", "write"), default="read")
    tokens_create.add_argument("--days", type=int, default=None, help="expire after this many days (default never)")
    tokens_create.set_defaults(func=_tokens_create)
    tokens_revoke = tokens_sub.add_parser("revoke", help="revoke a token by its id")
    tokens_revoke.add_argument("id", type=int)
    tokens_revoke.set_defaults(func=_tokens_revoke)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(func=_migrate)

    data = sub.add_parser("data", help="manage data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_download = data_sub.add_parser(
        "download", help="download mnist, fashion-mnist or cifar10 (TRAINBOARD_DATASET_MIRROR: from a mirror)")
    data_download.add_argument("name", help="mnist, fashion-mnist or cifar10")
    data_download.set_defaults(func=_data_download)
    data_import = data_sub.add_parser("import", help="import MNIST-style idx files or CIFAR-10 binary batches")
    data_import.add_argument("name", help="mnist, fashion-mnist or cifar10")
    data_import.add_argument("dir", help="folder with the files (e.g. the four .gz idx files of MNIST)")
    data_import.set_defaults(func=_data_import)
    data_list = data_sub.add_parser("list", help="list data sets")
    data_list.set_defaults(func=_data_list)

    run = sub.add_parser("run", help="train a model: on a server (--server URL) or in this process (recorded in "
                                     "the data dir's database, so the dashboard of a server on it lists the run)")
    model = run.add_mutually_exclusive_group()
    model.add_argument("--preset", help="e.g. mnist-mlp (fitted to --dataset when it is another)")
    model.add_argument("--architecture", type=int, help="a saved architecture id (on the server, or in the data dir)")
    model.add_argument("--spec", help="a JSON file with an architecture spec")
    run.add_argument("--dataset", help="data set name (default: the preset's); with no model, its default model "
                     "trains")
    run.add_argument("--name", help="the run's name (default: the model and the data set)")
    run.add_argument("--server", default=None, help="a running Trainboard, e.g. http://127.0.0.1:8000")
    run.add_argument("--no-record", action="store_true",
                     help="in this process: keep the run out of the data dir's database (files go to its cli-runs/)")
    settings = run.add_argument_group("run settings", "the same settings, limits and defaults as POST /api/runs")
    cli_run.add_setting_options(settings)
    run.set_defaults(func=_run)

    from app import cli_sweep

    cli_sweep.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
