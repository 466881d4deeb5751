"""Accounts in Chromium: log in through the real login page, work with the CSRF token the page
carries (htmx and fetch), create and revoke a token, log out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ROOT, LiveServer

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"


@pytest.fixture
def server_with_accounts(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data), "TRAINBOARD_NEW_PASSWORD": PASSWORD}
    env.pop("TRAINBOARD_DATABASE_URL", None)
    made = subprocess.run([sys.executable, "-m", "app.cli", "users", "create", "alice", "--admin"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and "created admin alice" in made.stdout, made.stderr
    server = LiveServer(data, env={"TRAINBOARD_WARM_WORKERS": "0"}).start()
    yield server
    server.stop()


def test_log_in_through_the_login_page_and_use_the_app(page: Page, server_with_accounts):
    url = server_with_accounts.url
    page.goto(f"{url}/architectures")
    expect(page).to_have_url(f"{url}/login?next=%2Farchitectures")
    page.fill("#username", "alice")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("wrong username or password")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/architectures")
    expect(page.locator(".account-nav .me")).to_have_text("alice")

    # An htmx form posts with the page's CSRF token: a token is created and shown once.
    page.goto(f"{url}/account")
    page.fill("#token-name", "laptop")
    page.select_option("#token-scope", "write")
    page.click(".token-form button[type=submit]")
    token = page.locator("#new-token").inner_text()
    assert token.startswith("tb_")
    with server_with_accounts.api() as api:
        assert api.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()["username"] == "alice"
        assert api.get("/api/runs").status_code == 401  # and nothing without it
    page.click("tr[data-token] button:has-text('Revoke')")
    expect(page.locator("tr[data-token] td").nth(3)).to_have_text("revoked")
    with server_with_accounts.api() as api:
        assert api.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    page.click(".logout button")
    expect(page).to_have_url(f"{url}/login")
    page.goto(f"{url}/")
    expect(page).to_have_url(f"{url}/login?next=%2F")
