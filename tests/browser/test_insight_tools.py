"""The insight tools in Chromium: the launch form's learning-rate finder (curve, suggestion, "Use this") and a
finished run's test-set projection (dots coloured by class, the misclassified ones linking to their images)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer
from tests.runs.helpers import wait_status

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("insight-browser"), pytest.mark.usefixtures("patient_expect")]

WAIT_MS = 60_000  # a search or a run in a process of its own, on two cores shared with other tests


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("insight-browser") / "server-data", accounts=True).start()
    yield server
    server.stop()


def test_find_a_learning_rate_and_use_it(live_server, page: Page):
    live_server.sign_in(page)
    page.goto(live_server.url + "/runs/new")
    page.select_option("#model", "preset:mnist-mlp")
    page.select_option("#dataset", "digits")
    page.select_option("#config-optimizer-name", "adam")
    lr_field = page.locator("#config-optimizer-lr")
    expect(lr_field).to_have_value("0.001")
    page.click("#lr-find")
    chart = page.locator("#lr-chart")
    suggestion = page.locator("#lr-suggestion")
    expect(suggestion).to_be_visible()
    expect(chart).to_be_visible()
    assert int(chart.get_attribute("data-points")) >= 20
    assert chart.locator("polyline.lr-line").count() == 1 and chart.locator(".lr-suggestion").count() == 1
    value = suggestion.inner_text()
    assert 1e-4 <= float(value) <= 1e-1
    page.click("#lr-use")
    expect(lr_field).to_have_value(value)
    # A bad setting: the form comes back with the message next to its field, and no search starts.
    page.fill("#config-batch_size", "0")
    page.click("#lr-find")
    expect(page.locator("#config-batch_size-errors .error")).to_be_visible()
    expect(page.locator("#config-batch_size")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#lr-chart")).to_have_count(0)
    expect(page.locator("#config-optimizer-lr")).to_have_value(value)  # what was typed stays


def test_a_finished_runs_projection_links_its_mistakes_to_their_images(live_server, page: Page):
    with live_server.api() as api:
        body = {"preset": "mnist-mlp", "dataset": "digits", "config": {"epochs": 1, "batch_size": 64, "seed": 1}}
        response = api.post("/api/runs", json=body)
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]
        wait_status(api, run_id, "completed", timeout=120)
        data = api.get(f"/api/runs/{run_id}/projection").json()
    assert data["count"] == len(data["x"]) > 0 and data["misclassified"] > 0  # one epoch: some mistakes
    live_server.sign_in(page)
    page.goto(f"{live_server.url}/runs/{run_id}")
    page.click("#projection-link")
    page.wait_for_url(f"{live_server.url}/runs/{run_id}/projection")
    chart = page.locator("#projection-chart")
    expect(chart).to_be_visible()
    dots = chart.locator("circle.pj-point")
    expect(dots).to_have_count(data["count"])
    assert chart.get_attribute("data-points") == str(data["count"])
    # Coloured by true class: one colour per class, the same for every dot of a class.
    fills = dots.evaluate_all("(els) => els.map((e) => [e.closest('.pj-dot').dataset.true, e.getAttribute('fill')])")
    by_class: dict[str, set[str]] = {}
    for name, fill in fills:
        by_class.setdefault(name, set()).add(fill)
    assert all(len(colours) == 1 for colours in by_class.values())
    assert len({next(iter(c)) for c in by_class.values()}) == len(by_class) == len(set(data["true"]))
    expect(page.locator("#projection-legend li")).to_have_count(len(data["class_names"]))
    # The misclassified are links to their test images; hovering one says its true and predicted class.
    misses = chart.locator("a.pj-miss")
    expect(misses).to_have_count(data["misclassified"])
    expect(page.locator("#projection-misclassified")).to_have_text(str(data["misclassified"]))
    first = misses.first
    first.hover(force=True)
    index = first.get_attribute("data-index")
    expect(page.locator("#projection-tip")).to_have_text(re.compile(rf"#{index}: true \w+, predicted \w+"))
    href = first.get_attribute("href")
    assert href == f"/api/datasets/digits/samples/{index}.png?split=test"
    image = page.request.get(live_server.url + href)
    assert image.status == 200 and image.headers["content-type"] == "image/png"
    assert image.body()[:8] == b"\x89PNG\r\n\x1a\n"
