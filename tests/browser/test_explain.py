"""Explain a misclassified image in Chromium: a barely trained digits CNN (one epoch, tiny SGD steps, so the
gallery has mistakes) shows Grad-CAM overlays, feature maps and its first-layer filters; a digits MLP shows
integrated-gradients overlays for the predicted and the true class, and switches to saliency."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("explain-browser"), pytest.mark.usefixtures("patient_expect")]

WAIT_MS = 30_000  # two cores shared with other test runs: trainers and the predictor vary in speed
CNN = {"layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
                  {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                  {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}
MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 16, "activation": "relu"},
                  {"type": "Dense", "units": 10, "activation": "softmax"}]}
BARELY = {"epochs": 1, "batch_size": 64, "seed": 0, "optimizer": {"name": "sgd", "lr": 0.001}}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("explain-browser") / "server-data", accounts=True).start()
    yield server
    server.stop()


def _launch(server: LiveServer, spec: dict) -> int:
    with server.api() as api:
        response = api.post("/api/runs", json={"spec": spec, "dataset": "digits", "config": BARELY})
        assert response.status_code == 201, response.text
        return response.json()["id"]


def _loaded(page: Page, selector: str) -> None:
    """Wait until the <img> has loaded a picture (a 4xx/5xx answer leaves it broken: the wait times out)."""
    expect(page.locator(selector).first).to_be_visible()
    page.wait_for_function("s => [...document.querySelectorAll(s)].every(i => i.complete && i.naturalWidth > 0)",
                           arg=selector)


def _open_a_mistake(server: LiveServer, page: Page, run_id: int) -> str:
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator("#cm-label")).to_contain_text("Test set")
    page.locator("#confusion-matrix td.cell:not(.diag):not(.zero) button").first.click()
    first = page.locator("#gallery-images button.explain-open").first
    index = first.get_attribute("data-index")
    first.click()
    expect(page.locator("#explain-panel")).to_have_attribute("data-index", index)
    return index


def test_a_cnn_mistake_shows_gradcam_feature_maps_and_the_first_layer_filters(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    run_id = _launch(live_server, CNN)
    index = _open_a_mistake(live_server, page, run_id)

    panel = page.locator("#explain-panel")
    expect(panel.locator("h4", has_text="Grad-CAM")).to_contain_text("layer 1, the last Conv2D")
    true_name, pred_name = page.locator("#explain-true-name").inner_text(), page.locator("#explain-pred-name").inner_text()
    assert true_name != pred_name or panel.get_by_text("both maps explain the same class").count() == 1
    expect(page.locator("#explain-gradcam-pred")).to_have_attribute(
        "src", f"/api/runs/{run_id}/attributions.png?index={index}&method=gradcam&target=pred")
    _loaded(page, "#explain-gradcam-pred")
    _loaded(page, "#explain-gradcam-true")
    # The overlay is the 8x8 image enlarged like the gallery's (112 px) with the heat map blended in colour.
    assert page.locator("#explain-gradcam-pred").evaluate("i => i.naturalWidth") == 112
    coloured = page.locator("#explain-gradcam-pred").evaluate("""img => {
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let k = 0; k < d.length; k += 4) if (Math.abs(d[k] - d[k + 2]) > 40) n++;
        return n; }""")
    assert coloured > 0  # a grey digit alone has equal R, G and B everywhere
    expect(page.locator("#explain-feature-maps img")).to_have_count(2)
    _loaded(page, "#explain-feature-maps img")
    _loaded(page, "#explain-overlay-pred")

    filters = page.locator("#filters-panel")
    expect(filters).to_contain_text("layer 0, the first Conv2D: 4 filters")
    _loaded(page, "#filters-image")
    # Four 3x3 filters in one row, each enlarged to 48 px with 2-px gaps.
    assert page.locator("#filters-image").evaluate("i => [i.naturalWidth, i.naturalHeight]") == [4 * 50 + 2, 52]

    page.get_by_role("button", name="Close the explanation").click()
    expect(page.locator("#explain")).to_be_empty()


def test_an_mlp_mistake_shows_integrated_gradients_then_saliency(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    run_id = _launch(live_server, MLP)
    index = _open_a_mistake(live_server, page, run_id)

    expect(page.locator("#explain-method-ig")).to_be_checked()
    expect(page.locator("#explain-overlay-pred")).to_have_attribute(
        "src", f"/api/runs/{run_id}/attributions.png?index={index}&method=ig&target=pred")
    expect(page.locator("#explain-attributions figcaption").nth(1)).to_contain_text("Integrated gradients · predicted")
    _loaded(page, "#explain-overlay-pred")
    _loaded(page, "#explain-overlay-true")
    expect(page.locator("#explain-gradcam")).to_have_count(0)
    expect(page.locator("#filters-panel")).to_have_count(0)

    page.locator("label", has_text="Saliency").click()
    expect(page.locator("#explain-panel")).to_have_attribute("data-method", "saliency")
    expect(page.locator("#explain-overlay-true")).to_have_attribute(
        "src", f"/api/runs/{run_id}/attributions.png?index={index}&method=saliency&target=true")
    _loaded(page, "#explain-overlay-true")
