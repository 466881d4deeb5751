"""The page frame in Chromium: the favicon, and the light/dark toggle: remembered across reloads
(localStorage), on <html> before the first paint, and following the system when nothing is chosen."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser

LIGHT_BG, DARK_BG = "rgb(246, 247, 249)", "rgb(15, 18, 22)"  # --bg in static/css/app.css
# Before any page script: note when <html data-theme> is first set, to compare with the first paint.
THEME_TIMING = """
window.__themeSetAt = null;
new MutationObserver((changes, observer) => {
  if (document.documentElement && document.documentElement.dataset.theme) {
    window.__themeSetAt = performance.now();
    observer.disconnect();
  }
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ["data-theme"]});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("look") / "data", env={"TRAINBOARD_WARM_WORKERS": "0"},
                        accounts=True).start()
    yield server
    server.stop()


def background(page: Page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def first_paint(page: Page) -> float:
    page.wait_for_function("performance.getEntriesByType('paint').length > 0")
    return page.evaluate("performance.getEntriesByType('paint')[0].startTime")


def test_the_favicon_is_served_here(server, page: Page):
    server.sign_in(page)
    for path in ("/", "/docs"):
        page.goto(server.url + path)
        href = page.locator('link[rel="icon"]').get_attribute("href")
        answer = page.request.get(server.url + href)
        assert answer.status == 200 and answer.headers["content-type"].startswith("image/svg+xml"), path
        assert page.evaluate("h => new URL(h, location.href).origin === location.origin", href)


def test_the_theme_toggle_is_remembered_and_applied_before_the_first_paint(server, page: Page):
    page.emulate_media(color_scheme="light")
    server.sign_in(page)
    page.add_init_script(THEME_TIMING)
    page.goto(server.url + "/compare")
    root, toggle = page.locator("html"), page.locator("#theme-toggle")
    expect(root).to_have_attribute("data-theme", "light")
    assert background(page) == LIGHT_BG
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-pressed", "false")

    toggle.click()
    expect(root).to_have_attribute("data-theme", "dark")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    assert background(page) == DARK_BG
    assert page.evaluate("localStorage.getItem('trainboard-theme')") == "dark"

    for path in ("/compare", "/datasets"):  # another page, a reload: dark from the first frame on
        page.goto(server.url + path)
        expect(root).to_have_attribute("data-theme", "dark")
        assert background(page) == DARK_BG
        set_at = page.evaluate("window.__themeSetAt")
        assert set_at is not None and set_at <= first_paint(page), (set_at, first_paint(page))

    # Back to light, the system's own setting: nothing is kept, and the page follows the system again.
    toggle.click()
    expect(root).to_have_attribute("data-theme", "light")
    assert page.evaluate("localStorage.getItem('trainboard-theme')") is None
    page.emulate_media(color_scheme="dark")
    expect(root).to_have_attribute("data-theme", "dark")
    assert background(page) == DARK_BG
    page.reload()
    expect(root).to_have_attribute("data-theme", "dark")
    toggle.click()  # a choice against the system's setting is kept
    expect(root).to_have_attribute("data-theme", "light")
    assert page.evaluate("localStorage.getItem('trainboard-theme')") == "light"
    page.reload()
    expect(root).to_have_attribute("data-theme", "light")
    assert background(page) == LIGHT_BG
