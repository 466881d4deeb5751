"""Accounts: every route closed without credentials once a user exists, sessions with CSRF,
personal tokens (scopes, revocation, expiry), roles, the Origin check, who created what."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.routing import iter_route_contexts

from app.auth import service
from app.core.db import session_scope
from app.core.models_base import utcnow
from tests import pg
from tests.conftest import LOCAL

PASSWORD = "correct horse battery"
OPEN = {"/login", "/healthz"}


@pytest.fixture(params=["sqlite", "postgres"])
def client(request, tmp_path, monkeypatch):
    """The in-process app on a fresh database: SQLite, and a new database on the real PostgreSQL
    server the test run starts (tests/pg.py), so accounts behave the same on both."""
    from fastapi.testclient import TestClient

    from app.core.config import get_settings
    from app.core.db import reset_engine_cache, upgrade_database
    from app.main import create_app

    (tmp_path / "data").mkdir()
    monkeypatch.setenv("TRAINBOARD_DATA_DIR", str(tmp_path / "data"))
    database_url = pg.server().create_database("accounts") if request.param == "postgres" else None
    if database_url:
        monkeypatch.setenv("TRAINBOARD_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("TRAINBOARD_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    reset_engine_cache()
    upgrade_database()
    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client
    reset_engine_cache()
    get_settings.cache_clear()
    if database_url:
        pg.server().drop_database(database_url)


@pytest.fixture
def users(client):
    """An admin, a member and a viewer on the in-process app (accounts on from here)."""
    with session_scope() as db_session:
        made = {role: service.create_user(db_session, role, PASSWORD, role).id for role in ("admin", "member", "viewer")}
    service.forget_cache()
    from app.auth.routes import reset_login_limits

    reset_login_limits()  # the limits live in the process, across tests
    return made


def _token(role: str, scope: str = "write", days: int | None = None) -> str:
    from sqlalchemy import select

    from app.auth.models import User

    with session_scope() as db_session:
        user = db_session.scalar(select(User).where(User.username == role))
        return service.create_token(db_session, user, f"{role} {scope}", scope, days)[1]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_is_closed_without_credentials(client, users):
    checked = 0
    assert client.get("/static/css/app.css").status_code == 200  # static files: open on purpose
    for route in iter_route_contexts(client.app.routes):
        if getattr(route, "methods", None) is None:
            assert route.path == "/static", route.path  # the only mount
            continue
        path = _concrete(route.path)
        if route.path in OPEN:
            continue
        for method in sorted(route.methods - {"HEAD"}):
            answer = client.request(method, path, follow_redirects=False)
            checked += 1
            if method == "GET" and not route.path.startswith("/api/") and route.path != "/openapi.json":
                # A page (the OpenAPI docs too): to the login page, and back after.
                assert answer.status_code == 303, (method, route.path, answer.status_code)
                assert answer.headers["location"].startswith("/login?next=%2F"), route.path
            else:
                assert answer.status_code == 401, (method, route.path, answer.status_code, answer.text[:200])
    assert checked > 60


def test_the_open_routes_stay_open(client, users):
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200


def _login(client, username: str) -> str:
    """Log in through the form; returns the page's CSRF token."""
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/architectures"},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/architectures"
    page = client.get("/architectures")
    assert page.status_code == 200 and f">{username}</a>" in page.text
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)


def test_login_session_and_csrf(client, users):
    wrong = client.post("/login", data={"username": "member", "password": "nope nope nope"})
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    csrf = _login(client, "member")
    body = {"spec": {"input_shape": [1, 28, 28], "layers": [{"type": "Flatten"}]}}
    refused = client.post("/api/architectures/validate", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert client.post("/api/architectures/validate", json=body, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    assert client.post("/api/architectures/validate", json=body, headers={"X-CSRF-Token": csrf}).status_code == 200
    out = client.post("/logout", follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/api/runs").status_code == 401  # the session is gone


def test_an_open_redirect_after_login_is_refused(client, users):
    answer = client.post("/login", data={"username": "member", "password": PASSWORD, "next": "//evil.example/x"},
                         follow_redirects=False)
    assert answer.headers["location"] == "/"


def test_tokens_scopes_revocation_and_expiry(client, users):
    write = _token("member")
    assert client.get("/api/runs", headers=_bearer(write)).status_code == 200
    body = {"name": "mlp", "spec": {"input_shape": [1, 8, 8], "layers": [{"type": "Flatten"},
                                                                         {"type": "Dense", "units": 10}]}}
    created = client.post("/api/architectures", json=body, headers=_bearer(write))
    assert created.status_code == 201, created.text
    read = _token("member", "read")
    assert client.get("/api/architectures", headers=_bearer(read)).status_code == 200
    refused = client.post("/api/architectures", json={**body, "name": "two"}, headers=_bearer(read))
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    # Revoked: stops working at once.
    tokens = client.get("/api/tokens", headers=_bearer(write)).json()
    read_id = next(t["id"] for t in tokens if t["scope"] == "read")
    assert client.delete(f"/api/tokens/{read_id}", headers=_bearer(write)).json()["state"] == "revoked"
    assert client.get("/api/runs", headers=_bearer(read)).status_code == 401
    # Expired: stops working at once.
    soon = _token("member", "read", days=1)
    assert client.get("/api/runs", headers=_bearer(soon)).status_code == 200
    from sqlalchemy import update

    from app.auth.models import ApiToken

    with session_scope() as db_session:
        db_session.execute(update(ApiToken).where(ApiToken.expires_at.is_not(None))
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/api/runs", headers=_bearer(soon)).status_code == 401
    # Tokens are stored hashed: the token itself is nowhere in the database.
    with session_scope() as db_session:
        hashes = [row.token_hash for row in service.list_tokens(db_session)]
    assert write not in hashes and all(len(h) == 64 for h in hashes)


def test_a_token_can_create_and_list_tokens_shown_once(client, users):
    viewer_read = _token("viewer", "read")
    created = client.post("/api/tokens", json={"name": "ci", "scope": "read"}, headers=_bearer(_token("member")))
    assert created.status_code == 201 and created.json()["token"].startswith("tb_")
    listed = client.get("/api/tokens", headers=_bearer(_token("member"))).json()
    assert all("token" not in t for t in listed) and "ci" in {t["name"] for t in listed}
    assert client.get("/api/tokens", headers=_bearer(viewer_read)).status_code == 200  # a viewer lists its own


def test_roles(client, users):
    viewer, member, admin = _token("viewer"), _token("member"), _token("admin")
    assert client.get("/api/runs", headers=_bearer(viewer)).status_code == 200
    refused = client.post("/api/runs", json={"preset": "mnist-mlp"}, headers=_bearer(viewer))
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
    assert client.get("/api/users", headers=_bearer(member)).status_code == 403
    assert client.post("/api/users", json={"username": "x", "password": PASSWORD}, headers=_bearer(member)).status_code == 403
    assert client.get("/users", headers=_bearer(member)).status_code == 403
    made = client.post("/api/users", json={"username": "newbie", "password": PASSWORD, "role": "viewer"},
                       headers=_bearer(admin))
    assert made.status_code == 201 and made.json()["role"] == "viewer"
    assert {u["username"] for u in client.get("/api/users", headers=_bearer(admin)).json()} >= {"admin", "newbie"}
    # The last enabled admin cannot be demoted or disabled.
    last = client.patch(f"/api/users/{users['admin']}", json={"role": "member"}, headers=_bearer(admin))
    assert last.status_code == 409 and "last enabled admin" in last.json()["detail"]
    # A disabled user's tokens stop working.
    assert client.patch(f"/api/users/{users['member']}", json={"disabled": True}, headers=_bearer(admin)).status_code == 200
    assert client.get("/api/runs", headers=_bearer(member)).status_code == 401


def test_a_request_from_another_site_is_refused_even_without_accounts(client):
    answer = client.post("/api/architectures/validate", json={"spec": {"layers": []}},
                         headers={"Origin": "http://evil.example"})
    assert answer.status_code == 403 and "another site" in answer.json()["detail"]
    same = client.post("/api/architectures/validate", json={"spec": {"input_shape": [1, 8, 8], "layers": [{"type": "Flatten"}]}},
                       headers={"Origin": "http://localhost"})
    assert same.status_code == 200


def test_architectures_and_runs_record_who_created_them(client, users):
    from app.architectures.models import Architecture
    from app.runs.models import Run

    member = _token("member")
    body = {"name": "by member", "spec": {"input_shape": [1, 8, 8], "layers": [{"type": "Flatten"},
                                                                              {"type": "Dense", "units": 10}]}}
    arch = client.post("/api/architectures", json=body, headers=_bearer(member)).json()
    run = client.post("/api/runs", json={"architecture_id": arch["id"], "dataset": "digits"}, headers=_bearer(member))
    assert run.status_code == 201, run.text
    with session_scope(write=False) as db_session:
        assert db_session.get(Architecture, arch["id"]).created_by == users["member"]
        assert db_session.get(Run, run.json()["id"]).created_by == users["member"]


def test_an_uploaded_data_set_records_who_uploaded_it(client, users):
    import json

    from app.core.config import get_settings

    csv = "a,b,label\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(60))
    answer = client.post("/api/datasets", data={"name": "pairs"}, files={"file": ("pairs.csv", csv, "text/csv")},
                         headers=_bearer(_token("member")))
    assert answer.status_code == 201, answer.text
    meta = json.loads((get_settings().data_dir / "datasets" / "pairs" / "meta.json").read_text())
    assert meta["created_by"] == users["member"]


def test_logins_are_rate_limited(client, users, caplog):
    for _ in range(5):
        assert client.post("/login", data={"username": "viewer", "password": "wrong password"}).status_code == 401
    limited = client.post("/login", data={"username": "viewer", "password": PASSWORD})
    assert limited.status_code == 429 and "too many failed attempts" in limited.text
    assert "wrong password" not in caplog.text and "failed login for 'viewer'" in caplog.text


def test_serve_refuses_to_listen_beyond_loopback_without_accounts(client, monkeypatch):
    from app.cli import _check_exposure
    from app.core.config import Settings

    monkeypatch.setenv("TRAINBOARD_ALLOWED_HOSTS", "")  # --insecure-no-auth sets it: restored after the test
    refusal = _check_exposure(Settings(host="0.0.0.0"), insecure_no_auth=False)
    assert "refusing to listen on 0.0.0.0 with no accounts" in refusal and "trainboard users create" in refusal
    assert _check_exposure(Settings(host="0.0.0.0"), insecure_no_auth=True) is None
    assert _check_exposure(Settings(host="127.0.0.1"), insecure_no_auth=False) is None
    # TRAINBOARD_ADMIN_PASSWORD makes the first admin, and then it may listen anywhere.
    assert _check_exposure(Settings(host="0.0.0.0", admin_password=PASSWORD), insecure_no_auth=False) is None
    with session_scope(write=False) as db_session:
        assert [(u.username, u.role) for u in service.list_users(db_session)] == [("admin", "admin")]


def test_serve_refusal_is_a_clear_error_from_the_command(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "TRAINBOARD_DATA_DIR": str(tmp_path / "data")}
    env.pop("TRAINBOARD_ADMIN_PASSWORD", None)
    answer = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0", "--port", "1"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 2 and "refusing to listen on 0.0.0.0 with no accounts" in answer.stderr


def test_the_users_page_adds_users_and_changes_roles(client, users):
    csrf = _login(client, "admin")
    headers = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    added = client.post("/users", data={"username": "bob", "password": PASSWORD, "role": "viewer"}, headers=headers)
    assert added.status_code == 200 and 'data-user="bob"' in added.text
    short = client.post("/users", data={"username": "eve", "password": "short", "role": "member"}, headers=headers)
    assert short.status_code == 422 and "a password is 8 to" in short.text
    with session_scope(write=False) as db_session:
        bob = next(u for u in service.list_users(db_session) if u.username == "bob")
    assert client.post(f"/users/{bob.id}", data={"role": "member"}, headers=headers).status_code == 200
    last = client.post(f"/users/{users['admin']}", data={"disabled": "true"}, headers=headers)
    assert last.status_code == 409 and "last enabled admin" in last.text
    with session_scope(write=False) as db_session:
        roles = {u.username: (u.role, u.disabled) for u in service.list_users(db_session)}
    assert roles["bob"] == ("member", False) and roles["admin"] == ("admin", False)


def test_a_null_origin_cannot_change_anything(client):
    # A sandboxed frame on any site posts with `Origin: null`.
    answer = client.post("/api/architectures/validate", json={"spec": {"layers": []}}, headers={"Origin": "null"})
    assert answer.status_code == 403


def test_the_gate_answers_carry_the_security_headers(client, users):
    answer = client.get("/api/runs")
    assert answer.status_code == 401 and "script-src 'self'" in answer.headers["content-security-policy"]


def test_served_under_a_prefix_the_admin_routes_stay_closed_to_members(client, users):
    from fastapi.testclient import TestClient

    with TestClient(client.app, root_path="/tb") as prefixed:
        answer = prefixed.post("/tb/api/users", json={"username": "mallory", "password": PASSWORD, "role": "admin"},
                               headers=_bearer(_token("member")))
    assert answer.status_code == 403


def test_parallel_login_attempts_count_before_the_password_is_checked(client, users):
    from app.auth.routes import LOGIN_MAX_FAILURES, _reserve, _succeeded

    keys = ["user:someone", "addr:1.2.3.4"]
    assert all(_reserve(keys) == 0 for _ in range(LOGIN_MAX_FAILURES))  # in flight, none verified yet
    assert _reserve(keys) > 0  # the next one waits, whatever the others' outcome will be
    _succeeded(keys)  # one of them had the right password: it does not count
    assert _reserve(keys) == 0


def test_an_empty_or_short_secret_key_is_never_used(tmp_path):
    from app.auth.secret import MIN_LENGTH, session_secret
    from app.core.config import Settings

    settings = Settings(data_dir=tmp_path)
    (tmp_path / "secret_key").write_text("")  # e.g. a write cut off
    key = session_secret(settings)
    assert len(key) >= MIN_LENGTH and (tmp_path / "secret_key").read_text().strip() == key
    assert session_secret(settings) == key  # kept from then on
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="shorter than"):
        session_secret(Settings(data_dir=tmp_path, secret_key="short"))


def _second_browser(client):
    """Another browser on the same app: its own cookie jar."""
    from fastapi.testclient import TestClient

    return TestClient(client.app, base_url=LOCAL)


def test_a_new_password_ends_the_other_sessions_and_keeps_this_one(client, users):
    other = _second_browser(client)
    _login(other, "member")
    csrf = _login(client, "member")
    headers = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    wrong = client.post("/account/password", data={"current_password": "not it at all", "new_password": "x" * 12},
                        headers=headers)
    assert wrong.status_code == 422 and "the current password is wrong" in wrong.text
    short = client.post("/account/password", data={"current_password": PASSWORD, "new_password": "short"},
                        headers=headers)
    assert short.status_code == 422 and "a password is 8 to" in short.text
    assert other.get("/api/me").status_code == 200  # nothing changed yet
    changed = client.post("/account/password", data={"current_password": PASSWORD, "new_password": "a new passphrase"},
                          headers=headers)
    assert changed.status_code == 200 and "Password changed" in changed.text
    assert client.get("/api/me").json()["username"] == "member"  # this browser goes on
    assert other.get("/api/me").status_code == 401  # the other one was signed out
    assert other.get("/runs/new", follow_redirects=False).headers["location"].startswith("/login")
    fresh = other.post("/login", data={"username": "member", "password": "a new passphrase"}, follow_redirects=False)
    assert fresh.status_code == 303


def test_an_admin_sets_a_new_password_from_the_users_page(client, users):
    member = _second_browser(client)
    _login(member, "member")
    csrf = _login(client, "admin")
    headers = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    assert 'aria-label="new password for member"' in client.get("/users").text
    short = client.post(f"/users/{users['member']}", data={"password": "short"}, headers=headers)
    assert short.status_code == 422 and "a password is 8 to" in short.text
    assert member.get("/api/me").status_code == 200
    reset = client.post(f"/users/{users['member']}", data={"password": "reset by the admin"}, headers=headers)
    assert reset.status_code == 200 and "new password set for member" in reset.text
    assert member.get("/api/me").status_code == 401
    assert member.post("/login", data={"username": "member", "password": PASSWORD}).status_code == 401
    assert member.post("/login", data={"username": "member", "password": "reset by the admin"},
                       follow_redirects=False).status_code == 303
    # An admin resetting their own password stays signed in here.
    own = client.post(f"/users/{users['admin']}", data={"password": "the admin's own"}, headers=headers)
    assert own.status_code == 200 and client.get("/api/me").json()["username"] == "admin"


def test_a_disabled_users_session_ends(client, users):
    member = _second_browser(client)
    _login(member, "member")
    headers = {"X-CSRF-Token": _login(client, "admin"), "HX-Request": "true"}
    assert client.post(f"/users/{users['member']}", data={"disabled": "true"}, headers=headers).status_code == 200
    assert member.get("/api/me").status_code == 401


def test_with_no_accounts_only_loopback_host_names_are_answered(client, monkeypatch):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""
    from app.core.config import get_settings

    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "127.0.0.1"):
        assert client.get("/api/runs", headers={"Host": host}).status_code == 200, host
    refused = client.get("/api/runs", headers={"Host": "evil.example:8000"})
    assert refused.status_code == 400 and "evil.example" in refused.json()["detail"]
    assert "TRAINBOARD_ALLOWED_HOSTS" in refused.json()["detail"]
    assert client.post("/api/architectures/validate", json={"spec": {"layers": []}},
                       headers={"Host": "evil.example", "Origin": "http://evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 200  # health checks by any name
    monkeypatch.setenv("TRAINBOARD_ALLOWED_HOSTS", "trainboard.lan")
    get_settings.cache_clear()
    assert client.get("/api/runs", headers={"Host": "trainboard.lan"}).status_code == 200
    assert client.get("/api/runs", headers={"Host": "localhost"}).status_code == 400  # the list is the list


def test_with_accounts_any_host_name_is_answered_unless_a_list_is_set(client, users, monkeypatch):
    from app.core.config import get_settings

    token = _bearer(_token("member"))
    assert client.get("/api/runs", headers={**token, "Host": "trainboard.example.com"}).status_code == 200
    monkeypatch.setenv("TRAINBOARD_ALLOWED_HOSTS", "trainboard.lan, localhost")
    get_settings.cache_clear()
    assert client.get("/api/runs", headers={**token, "Host": "trainboard.example.com"}).status_code == 400
    assert client.get("/api/runs", headers={**token, "Host": "trainboard.lan"}).status_code == 200


def test_insecure_no_auth_beyond_loopback_answers_any_host_name(client, monkeypatch):
    from app.cli import _check_exposure
    from app.core.config import Settings, get_settings

    monkeypatch.setenv("TRAINBOARD_ALLOWED_HOSTS", "")  # restored (unset) after the test
    assert _check_exposure(Settings(host="0.0.0.0"), insecure_no_auth=True) is None
    assert get_settings().allowed_hosts == "*"
    assert client.get("/api/runs", headers={"Host": "10.0.0.7:8000"}).status_code == 200


def test_a_stream_ends_soon_after_its_token_is_revoked(tmp_path):
    import time

    import httpx

    from tests.conftest import LiveServer

    env = {"TRAINBOARD_AUTH_RECHECK_S": "0.5", "TRAINBOARD_SSE_HEARTBEAT_S": "0.5", "TRAINBOARD_WARM_WORKERS": "0"}
    server = LiveServer(tmp_path / "data", env=env, accounts=True).start()
    try:
        with server.api() as api, httpx.Client(base_url=server.url, timeout=10) as reader:
            created = api.post("/api/tokens", json={"name": "dashboard on the wall", "scope": "read"}).json()
            with reader.stream("GET", "/api/events", headers=_bearer(created["token"])) as stream:
                assert stream.status_code == 200
                lines = stream.iter_lines()
                next(lines)  # open and sending (a heartbeat at least)
                assert api.delete(f"/api/tokens/{created['id']}").status_code == 200
                revoked = time.monotonic()
                for _line in lines:  # heartbeats keep coming until the server ends the stream
                    assert time.monotonic() - revoked < 10, "the stream outlived its revoked token"
            assert time.monotonic() - revoked < 10
            assert reader.get("/api/events", headers=_bearer(created["token"])).status_code == 401
    finally:
        server.stop()
