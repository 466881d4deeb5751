"""The Content-Security-Policy in Chromium: every page works with no inline script and no third-party
origin (the browser reports any blocked script or style), and /docs is served from static/vendor."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser
PAGES = ["/", "/runs/new", "/architectures", "/architectures/new", "/datasets", "/compare", "/learn/activations",
         "/docs", "/account", "/users", "/sweeps", "/sweeps/new"]
SWEEP = {"dataset": "digits", "preset": "mnist-mlp", "config": {"epochs": 1}, "sampler": "grid",
         "space": {"config.optimizer.lr": [0.001, 0.01]}}


@pytest.fixture
def server(tmp_path):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_WARM_WORKERS": "0"}, accounts=True).start()
    yield server
    server.stop()


@pytest.fixture
def strict_page(browser: Browser):
    """A page under the server's real policy (the other browser tests bypass it: tests/conftest.py)."""
    context = browser.new_context(bypass_csp=False)
    yield context.new_page()
    context.close()


def test_pages_run_under_the_policy_without_violations(strict_page: Page, server):
    page = strict_page
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    server.sign_in(page)  # the login page itself runs under the policy too
    with server.api() as api:  # a sweep's page too (cancelled at once: nothing needs to train)
        sweep = api.post("/api/sweeps", json=SWEEP)
        assert sweep.status_code == 201, sweep.text
        api.post(f"/api/sweeps/{sweep.json()['id']}/cancel")
    for path in [*PAGES, f"/sweeps/{sweep.json()['id']}"]:
        answer = page.goto(f"{server.url}{path}")
        assert answer.status == 200, path
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["x-content-type-options"] == "nosniff"
        page.wait_for_load_state("networkidle")
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert all(url.startswith(server.url) or url.startswith("data:") for url in requests), \
        [url for url in requests if not url.startswith(server.url)]


def test_the_api_docs_render_from_local_assets(strict_page: Page, server):
    page = strict_page
    server.sign_in(page)
    page.goto(f"{server.url}/docs")
    expect(page.locator("#swagger-ui .info .title").first).to_contain_text("Trainboard")
    expect(page.locator("#swagger-ui .opblock").first).to_be_visible()


def test_the_api_docs_render_with_every_other_origin_blocked(page: Page, server):
    """Offline (or behind a firewall), /docs still renders: nothing it loads comes from anywhere else."""
    blocked: list[str] = []

    def local_only(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    server.sign_in(page)
    page.goto(f"{server.url}/docs")
    expect(page.locator("#swagger-ui .info .title").first).to_contain_text("Trainboard")
    expect(page.locator("#swagger-ui .opblock-summary-path").filter(has_text="/api/runs").first).to_be_visible()
    page.locator("#swagger-ui .opblock-summary").first.click()  # an operation opens, from the local bundle
    expect(page.locator("#swagger-ui .opblock.is-open").first).to_be_visible()
    assert not blocked, blocked
    assert page.goto(f"{server.url}/redoc").status == 404  # ReDoc stays off: it would load from a CDN
