"""Watch real digits runs in Chromium: launch from the form, live charts, completion without a reload,
the confusion matrix with its epoch slider and gallery, a reload mid-run, cancelling, the live dashboard."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer
from tests.runs.helpers import wait_status

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("runs-browser"), pytest.mark.usefixtures("patient_expect")]

WAIT_MS = 30_000  # two cores shared with other test runs: trainers start and train at varying speed
DIGITS_MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
                         {"type": "Dense", "units": 10, "activation": "softmax"}]}


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
    # The history comes in the page's snapshot; the stream then sends every seq after it, once.
    page.wait_for_function(f"window.trainboardRun.lastSeq() > {before + 2}")
    first = page.evaluate("window.trainboardRun.snapshotSeq()") + 1
    assert first > before
    seqs = page.evaluate("window.trainboardRun.seqs()")
    assert seqs == list(range(first, first + len(seqs)))
    assert points(page) >= 3
    assert page.evaluate("window.trainboardDuplicates") == 0  # none arrived (run.js reports, never hides them)

    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel run")).to_be_hidden()
    seqs = page.evaluate("window.trainboardRun.seqs()")
    assert seqs == list(range(first, first + len(seqs)))
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
    # Against training time: the same points redrawn on an axis of seconds, and back to whole epochs.
    chart = page.locator("#cmp-val_accuracy")
    page.locator("#compare-x").select_option("time")
    expect(chart).to_have_attribute("data-x-axis", "time")
    expect(chart).to_have_attribute("data-x-ticks", re.compile(r"^\d+ (s|min)"))
    expect(chart).to_have_attribute("data-points", "6")
    page.locator("#compare-x").select_option("epoch")
    expect(chart).to_have_attribute("data-x-ticks", "1 | 2 | 3")
    expect(page.locator("#scatter-total_params circle")).to_have_count(2)
    expect(page.locator("#differences")).to_contain_text("layers")
    # Change the selection from the picker: one run is a comparison of one.
    page.locator("#picker summary").click()
    page.locator(f"#pick-{second}").uncheck()
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.locator("#compare-table tbody tr")).to_have_count(1)


def test_the_gallery_pages_through_a_cell_and_follows_the_matrix(live_server, page: Page):
    """A barely trained run (seeded: tiny SGD steps) calls many digits by one name, so one wrong cell holds
    more than a gallery page. Its images page by page; the gallery stays on its page when the test matrix is
    redrawn (row-normalized) and closes for a validation epoch, whose cells have no images."""
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    run_id = launch_api(live_server, epochs=2, batch_size=64, seed=0, optimizer={"name": "sgd", "lr": 0.0001})
    page.goto(f"{live_server.url}/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator("#cm-label")).to_contain_text("Test set")
    counts = page.locator("#confusion-matrix td.cell:not(.diag)").evaluate_all(
        "cells => cells.map(c => [Number(c.dataset.count), Number(c.dataset.true), Number(c.dataset.pred)])")
    count, true, pred = max(counts)
    assert count > 20, counts  # more than one page (the digits test split has 36 samples a class)
    pages = -(-count // 20)

    page.locator(f"#confusion-matrix td[data-true='{true}'][data-pred='{pred}'] button").click()
    range_text, page_text = page.locator("#gallery-range"), page.locator("#gallery-page")
    expect(range_text).to_have_text(f"Showing 1–20 of {count}")
    expect(page_text).to_have_text(f"page 1 of {pages}")
    expect(page.locator("#gallery-prev")).to_be_disabled()
    seen: list[str] = []
    for number in range(1, pages + 1):
        if number > 1:
            page.locator("#gallery-next").click()
            expect(page_text).to_have_text(f"page {number} of {pages}")
        shown = min(20, count - 20 * (number - 1))
        expect(page.locator("#gallery-images img")).to_have_count(shown)
        page.wait_for_function("[...document.querySelectorAll('#gallery-images img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        seen += page.locator("#gallery-images li span").all_inner_texts()
    expect(page.locator("#gallery-next")).to_be_disabled()
    assert len(seen) == count == len(set(seen))  # every image of the cell, each once
    expect(range_text).to_have_text(f"Showing {20 * (pages - 1) + 1}–{count} of {count}")

    # The test matrix redrawn: the gallery comes back on the same page.
    page.get_by_label("Row-normalized (recall per class)").check()
    expect(page.locator("#confusion-matrix")).to_have_attribute("data-normalized", "true")
    expect(page_text).to_have_text(f"page {pages} of {pages}")
    # A validation epoch: the gallery closes; back on the test matrix it stays closed until a cell is clicked.
    page.locator("label", has_text="Validation by epoch").click()
    expect(page.locator("#cm-label")).to_contain_text("Validation · epoch 2 of 2")
    expect(page.locator("#gallery")).to_be_empty()
    page.locator("label", has_text="Test set").click()
    expect(page.locator("#cm-label")).to_contain_text("Test set")
    expect(page.locator("#gallery")).to_be_empty()
    page.locator(f"#confusion-matrix td[data-true='{true}'][data-pred='{pred}'] button").click()
    expect(page_text).to_have_text(f"page 1 of {pages}")
    page.locator("#cm-epoch").fill("1")  # the slider switches to validation too
    expect(page.locator("#cm-label")).to_contain_text("Validation · epoch 1 of 2")
    expect(page.locator("#gallery")).to_be_empty()

    # On a phone the per-class table shows all its columns, F1 and support included.
    page.set_viewport_size({"width": 390, "height": 844})
    per_class = page.locator("#per-class")
    per_class.scroll_into_view_if_needed()
    assert per_class.locator("xpath=..").evaluate("w => w.scrollWidth <= w.clientWidth")
    for header in ("F1", "Support"):
        expect(per_class.get_by_role("columnheader", name=header)).to_be_in_viewport()


SPIRALS_MLP = {"layers": [{"type": "Dense", "units": 16, "activation": "relu"},
                          {"type": "Dense", "units": 3, "activation": "softmax"}]}


def test_compare_runs_of_two_data_sets(live_server, page: Page):
    """Two digits runs and a spirals run: grouped by data set under a warning, stars only within digits
    (the spirals run has nothing of its own data set to beat); the table fits 1,280 px, keeps its run
    column in view on a phone, and remembers the columns a reader adds."""
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    digits = [launch_api(live_server, epochs=2), launch_api(live_server, epochs=2, batch_size=64)]
    with live_server.api() as api:
        answer = api.post("/api/runs", json={"spec": SPIRALS_MLP, "dataset": "spirals", "config": {"epochs": 3}})
        assert answer.status_code == 201, answer.text
        spirals = answer.json()["id"]
    ids = [digits[0], spirals, digits[1]]
    with live_server.api() as api:
        for run_id in ids:
            wait_status(api, run_id, "completed", timeout=120)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/compare?runs={','.join(map(str, ids))}")

    expect(page.locator("#mixed-datasets")).to_contain_text("trained on digits and spirals")
    expect(page.locator("#compare-table tbody")).to_have_count(2)
    expect(page.locator('#compare-table tbody[data-dataset="digits"] tr[data-run-id]')).to_have_count(2)
    expect(page.locator('#compare-table tbody[data-dataset="spirals"] .group-row')).to_contain_text("spirals · 1 run")
    expect(page.locator(f'#compare-table tr[data-run-id="{spirals}"] .best-mark')).to_have_count(0)
    starred = page.locator("#compare-table .best-mark").evaluate_all(
        "marks => marks.map(m => m.closest('tbody').dataset.dataset)")
    assert starred and set(starred) == {"digits"}

    # 1,280 px: nothing cut off.
    wrap = page.locator("#compare-table").locator("xpath=..")
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), wrap.evaluate("w => [w.scrollWidth, w.clientWidth]")
    # More columns on request, remembered.
    flops = page.locator('#compare-table th[data-col="flops"]')
    expect(flops).to_be_hidden()
    page.locator("#column-chooser summary").click()
    page.get_by_label("FLOPs").check()
    expect(flops).to_be_visible()
    page.reload()
    expect(flops).to_be_visible()
    expect(page.get_by_label("FLOPs")).to_be_checked()

    # A phone: the table scrolls sideways under its run column.
    page.set_viewport_size({"width": 390, "height": 844})
    first = page.locator(f'#compare-table tr[data-run-id="{spirals}"] th')
    first.scroll_into_view_if_needed()
    before = first.bounding_box()
    wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
    assert wrap.evaluate("w => w.scrollLeft > 0")
    expect(page.locator('#compare-table th[data-col="training_memory_bytes"]')).to_be_in_viewport()
    assert first.bounding_box()["x"] == before["x"]  # still where it was, in view
    expect(first).to_be_in_viewport()
