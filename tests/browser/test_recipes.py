"""The launch form's recipes in Chromium: a click fills the fields through htmx (with what was typed kept),
the warm-up field shows for the chosen schedule, and the stored times are on the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser


@pytest.fixture
def live_server(tmp_path):
    server = LiveServer(tmp_path / "server-data", accounts=True).start()
    yield server
    server.stop()


def test_a_recipe_click_fills_the_form(live_server, page: Page):
    live_server.sign_in(page)
    page.goto(live_server.url + "/runs/new")
    page.select_option("#model", "quick:digits-mlp")
    page.fill("#name", "my fast run")
    page.fill("#config-seed", "11")
    expect(page.locator("#config-schedule-warmup_steps")).to_be_hidden()  # no schedule chosen yet

    page.locator("#recipe-fast button").click()
    expect(page.locator("#form-notice")).to_contain_text("fast recipe's settings are filled in")
    expect(page.locator("#config-batch_size")).to_have_value("256")
    expect(page.locator("#config-optimizer-lr")).to_have_value("0.008")
    expect(page.locator("#config-epochs")).to_have_value("3")
    expect(page.locator("#config-schedule-name")).to_have_value("warmup_cosine")
    expect(page.locator("#config-schedule-warmup_steps")).to_be_visible()
    expect(page.locator("#config-schedule-warmup_steps")).to_have_value("100")
    expect(page.locator("#name")).to_have_value("my fast run")  # the form's values went with the click
    expect(page.locator("#config-seed")).to_have_value("11")
    expect(page.locator("#model")).to_have_value("preset:mnist-mlp")
    expect(page.locator("[data-recipe-time=fast]")).not_to_be_empty()

    page.locator("#recipe-tutorial button").click()
    expect(page.locator("#config-batch_size")).to_have_value("32")
    expect(page.locator("#config-optimizer-lr")).to_have_value("0.001")
    expect(page.locator("#config-schedule-name")).to_have_value("")
    expect(page.locator("#config-schedule-warmup_steps")).to_be_hidden()
