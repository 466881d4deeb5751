"""The run page's "Layers over epochs" panel in Chromium, on real digits runs: a heat strip per layer with a
row per epoch (weights, gradients, activations), gradient norms and dead ReLUs, epochs arriving live over
the page's stream, a CNN's layers, the warning banner for exploding gradients, and the JSON API."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("runs-browser"), pytest.mark.usefixtures("patient_expect")]

WAIT_MS = 60_000  # two cores shared with other test runs: trainers start and train at varying speed
MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
                  {"type": "Dense", "units": 10, "activation": "softmax"}]}
CNN = {"layers": [{"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
                  {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"},
                  {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("histograms-browser") / "server-data", accounts=True).start()
    yield server
    server.stop()


def launch(server: LiveServer, spec: dict, **config) -> int:
    with server.api() as api:
        response = api.post("/api/runs", json={"spec": spec, "dataset": "digits", "config": config})
        assert response.status_code == 201, response.text
        return response.json()["id"]


def histograms(server: LiveServer, run_id: int) -> dict:
    with server.api() as api:
        response = api.get(f"/api/runs/{run_id}/histograms")
        assert response.status_code == 200, response.text
        return response.json()


def wait_finished(page: Page) -> None:
    page.wait_for_function("() => ['completed', 'failed'].includes(window.trainboardRun.status())", timeout=WAIT_MS)


def test_an_mlp_shows_each_layer_over_its_epochs_live(live_server, page: Page):
    live_server.sign_in(page)
    run_id = launch(live_server, MLP, epochs=3, batch_size=8)
    page.goto(f"{live_server.url}/runs/{run_id}")  # before its first epoch ends: the epochs come live
    panel = page.locator("#histograms")
    layers = panel.locator("figure.hist-layer")
    expect(layers).to_have_count(2)
    expect(layers.locator("h3")).to_contain_text(["#2 Dense", "#3 Dense"])
    expect(panel.locator("canvas[data-what=weights]").first).to_have_attribute("data-epochs", "3")
    wait_finished(page)
    assert page.evaluate("window.trainboardRun.status()") == "completed"

    answer = histograms(live_server, run_id)
    assert [e["epoch"] for e in answer["epochs"]] == [1, 2, 3]
    assert answer["flagged"] == {}
    # The page had them from its stream, not from a snapshot taken after them.
    streamed = set(page.evaluate("window.trainboardRun.seqs()"))
    assert answer["epochs"][-1]["seq"] in streamed
    assert page.evaluate("window.trainboardHistograms.epochs()") == [1, 2, 3]
    layer = answer["epochs"][-1]["layers"][0]
    assert layer["name"] == "#2 Dense" and sum(layer["weights"]["counts"]) == 64 * 32

    # Every row of the strip has been painted: the canvas is not blank.
    painted = page.evaluate("""() => {
        const c = document.querySelector('#histograms canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert painted > 0
    # Gradients and activations of the same layers.
    panel.get_by_label("gradients").check()
    expect(panel.locator("canvas[data-what=gradients]")).to_have_count(2)
    expect(panel.locator("canvas[data-what=gradients]").first).to_have_attribute("data-epochs", "3")
    panel.get_by_label("activations").check()
    expect(panel.locator("canvas[data-what=activations]")).to_have_count(2)
    # The gradient norm table: the latest epoch's figures, and dead ReLUs for the ReLU layer only.
    row = panel.locator("#hist-table tbody tr[data-layer='#2 Dense']")
    shown = float(format(layer["grad_norm"], ".3g"))
    expect(row.locator("td").nth(1)).to_have_text(format(shown, "g"))
    expect(row.locator("td").nth(4)).to_have_text(re.compile(r"^\d+(\.\d)?%$"))
    expect(panel.locator("#hist-table tbody tr[data-layer='#3 Dense'] td").nth(4)).to_have_text("")
    expect(page.locator("#hist-alert")).to_be_hidden()


def test_a_cnn_shows_its_convolution_and_dense_layers(live_server, page: Page):
    live_server.sign_in(page)
    run_id = launch(live_server, CNN, epochs=1, batch_size=64)
    page.goto(f"{live_server.url}/runs/{run_id}")
    wait_finished(page)
    layers = page.locator("#histograms figure.hist-layer")
    expect(layers).to_have_count(2)
    expect(layers.locator("h3")).to_contain_text(["#1 Conv2D", "#4 Dense"])
    expect(layers.first.locator("canvas")).to_have_attribute("data-epochs", "1")
    answer = histograms(live_server, run_id)
    conv = answer["epochs"][0]["layers"][0]
    assert conv["type"] == "Conv2D" and sum(conv["weights"]["counts"]) == 8 * 9
    assert 0 <= conv["dead_fraction"] <= 1


def test_exploding_gradients_raise_a_visible_alert(live_server, page: Page):
    live_server.sign_in(page)
    run_id = launch(live_server, MLP, epochs=1, optimizer={"name": "sgd", "lr": 1000})
    page.goto(f"{live_server.url}/runs/{run_id}")
    alert = page.get_by_role("alert").filter(has_text="exploding gradients")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("#2 Dense")
    expect(page.locator("#histograms figure.hist-layer.flagged").first).to_contain_text("exploding")
    assert "exploding" in histograms(live_server, run_id)["flagged"]["#2 Dense"]
    # The log says it too.
    expect(page.locator("#run-log")).to_contain_text("exploding gradients in layer #2 Dense")


def test_the_api_answers_404_for_a_missing_run_and_422_for_a_bad_limit(live_server):
    with live_server.api() as api:
        assert api.get("/api/runs/999999/histograms").status_code == 404
        response = api.get("/api/runs/1/histograms?last=0")
        assert response.status_code == 422 and "last" in response.text
