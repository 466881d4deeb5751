"""Watch real digits runs in Chromium: launch from the form, live charts, completion without a reload,
the confusion matrix with its epoch slider and gallery, a reload mid-run, cancelling, the live dashboard."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("runs-browser")]

WAIT_MS = 30_000  # two cores shared with other test runs: trainers start and train at varying speed
DIGITS_MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
                         {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.fixture(autouse=True)
def patient_expect():
    """expect() waits for trainers and the predictor process too, not only for the page."""
    expect.set_options(timeout=WAIT_MS)
    yield
    expect.set_options(timeout=5_000)  # Playwright's default, for the other browser tests


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """One real server (with its local executor and an admin) for the module: each test's runs are its own."""
    server = LiveServer(tmp_path_factory.mktemp("runs-browser") / "server-data", accounts=True).start()
    yield server
    server.stop()


def launch_api(server: LiveServer, **config) -> int:
    with server.api() as api:
        response = api.post("/api/runs", json={"spec": DIGITS_MLP, "dataset": "digits", "config": config})
        assert response.status_code == 201, response.text
        return response.json()["id"]


def points(page: Page) -> int:
    return page.evaluate("window.trainboardRun.points()")


def test_dashboard_status_updates_without_reload(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    page.goto(live_server.url + "/")
    expect(page.locator("#runs-table")).to_be_visible()
    page.wait_for_load_state("networkidle")  # the status stream is open
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    run_id = launch_api(live_server, epochs=2)
    badge = page.locator(f"#run-row-{run_id} [data-status-badge]")
    expect(badge).to_have_text("completed")
    expect(page.locator(f"#run-row-{run_id}")).to_contain_text("epoch 2 of 2")
    assert page.evaluate("window.loadedOnce && window.trainboardDashboard.rowUpdates") > 0


def test_dashboard_row_shows_progress_live(live_server, page: Page):
    """A training run's row moves epoch by epoch from the dashboard stream: no reload, no polling."""
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    run_id = launch_api(live_server, epochs=300, batch_size=16)
    page.goto(live_server.url + "/")
    row = page.locator(f"#run-row-{run_id}")
    expect(row).to_be_visible()
    page.evaluate("window.loadedOnce = true")
    expect(row).to_contain_text(re.compile(r"epoch [1-9]\d* of 300"))
    text = row.inner_text()
    expect(row).not_to_have_text(text)  # the next epoch swaps in a new row
    assert row.get_attribute("hx-get") is None  # the row does not poll
    assert page.evaluate("window.loadedOnce")
    with live_server.api() as api:
        api.post(f"/api/runs/{run_id}/cancel")
    expect(row.locator("[data-status-badge]")).to_have_text("cancelled")


def test_launch_from_form_watch_it_finish_and_explore_the_confusion_matrix(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    page.goto(live_server.url + "/runs/new")
    page.select_option("#model", "quick:digits-mlp")
    page.select_option("#dataset", "digits")
    page.fill("#config-epochs", "8")
    page.fill("#config-batch_size", "4")  # small batches: several step points per epoch
    page.get_by_role("button", name="Start training").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))

    # The chart gains points while it trains.
    page.wait_for_function("window.trainboardRun && window.trainboardRun.points() >= 2")
    seen = points(page)
    page.wait_for_function(f"window.trainboardRun.points() > {seen}")

    # Completed without a reload, and the results arrive.
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator("#run-progress-text")).to_have_text("epoch 8 of 8")
    matrix = page.locator("#confusion-matrix")
    expect(matrix).to_be_visible()
    expect(page.locator("#cm-label")).to_contain_text("Test set")
    expect(page.locator("#per-class tbody tr")).to_have_count(10)
    expect(page.locator("#test-accuracy")).to_have_text(re.compile(r"\d+\.\d%"))

    # The slider steps through the validation matrices.
    page.locator("#cm-epoch").fill("1")
    expect(page.locator("#cm-label")).to_contain_text("Validation · epoch 1 of 8")
    epoch_1 = matrix.get_attribute("data-normalized"), page.locator("#confusion-matrix td").all_inner_texts()
    page.locator("#cm-epoch").fill("8")
    expect(page.locator("#cm-label")).to_contain_text("Validation · epoch 8 of 8")
    assert page.locator("#confusion-matrix td").all_inner_texts() != epoch_1[1]
    page.get_by_label("Row-normalized (recall per class)").check()
    expect(matrix).to_have_attribute("data-normalized", "true")

    # Back to the test matrix: a click on a wrong cell shows its test images.
    page.locator("label", has_text="Test set").click()
    expect(page.locator("#cm-label")).to_contain_text("Test set")
    wrong = page.locator("#confusion-matrix td.cell:not(.diag):not(.zero) button").first
    wrong.click()
    images = page.locator("#gallery-images img")
    expect(images.first).to_be_visible()
    page.wait_for_function("[...document.querySelectorAll('#gallery-images img')].every(i => i.complete && i.naturalWidth > 0)")
    expect(images.first).to_have_attribute("src", re.compile(r"^/api/datasets/digits/samples/\d+\.png\?split=test$"))

    # Draw a stroke on the canvas and predict it: top-k bars come back from the trained weights.
    canvas = page.locator("#draw-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.85, steps=6)
    page.mouse.up()
    page.get_by_role("button", name="Predict drawing").click()
    expect(page.locator("#predict-results .bar-row")).to_have_count(5)


def test_reload_mid_run_has_no_gap_or_duplicate_then_cancel(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    run_id = launch_api(live_server, epochs=300, batch_size=1)
    page.goto(f"{live_server.url}/runs/{run_id}")
    page.wait_for_function("window.trainboardRun.points() >= 3")
    before = page.evaluate("window.trainboardRun.lastSeq()")

    page.reload()
    page.wait_for_function(f"window.trainboardRun.lastSeq() > {before + 2}")  # history, then new events
    seqs = page.evaluate("window.trainboardRun.seqs()")
    assert seqs == list(range(1, len(seqs) + 1))
    assert points(page) >= 3
    assert page.evaluate("window.trainboardDuplicates") == 0  # none arrived (run.js reports, never hides them)

    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel run")).to_be_hidden()
    seqs = page.evaluate("window.trainboardRun.seqs()")
    assert seqs == list(range(1, len(seqs) + 1))
    assert page.evaluate("window.trainboardDuplicates") == 0


def test_tick_runs_on_the_dashboard_and_compare_them(live_server, page: Page):
    """Ticks survive the live rows re-rendering; the compare page overlays both runs' curves."""
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    page.goto(live_server.url + "/")
    page.wait_for_load_state("networkidle")
    first = launch_api(live_server, epochs=3)
    with live_server.api() as api:
        wide = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 64, "activation": "relu"},
                           {"type": "Dense", "units": 10, "activation": "softmax"}]}
        second = api.post("/api/runs", json={"spec": wide, "dataset": "digits", "config": {"epochs": 3}}).json()["id"]
    for run_id in (first, second):  # tick them while they are queued or training
        page.locator(f"#compare-{run_id}").check()
    for run_id in (first, second):
        expect(page.locator(f"#run-row-{run_id} [data-status-badge]")).to_have_text("completed")
        expect(page.locator(f"#run-row-{run_id}")).to_contain_text("epoch 3 of 3")  # the row re-rendered
        expect(page.locator(f"#compare-{run_id}")).to_be_checked()

    expect(page.locator("#compare-button")).to_have_text("Compare selected (2)")
    page.get_by_role("button", name="Compare selected").click()
    expect(page).to_have_url(re.compile(r"/compare\?runs=\d+&runs=\d+$"))
    expect(page.locator("#compare-table tbody tr")).to_have_count(2)
    expect(page.locator("#cmp-val_accuracy")).to_have_attribute("data-series", "2")
    expect(page.locator("#cmp-val_accuracy")).to_have_attribute("data-points", "6")
    expect(page.locator("#cmp-val_accuracy canvas")).to_have_count(1)
    expect(page.locator("#scatter-total_params circle")).to_have_count(2)
    expect(page.locator("#differences")).to_contain_text("layers")
    # Change the selection from the picker: one run is a comparison of one.
    page.locator("#picker summary").click()
    page.locator(f"#pick-{second}").uncheck()
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.locator("#compare-table tbody tr")).to_have_count(1)
