"""Data sets in Chromium: the dashboard's MNIST button downloads MNIST (from a local mirror) and the data set
becomes available; an upload over the size limit says so next to the file field; an uploaded CSV trains
with the default model offered by its "Train on it" link; every preview is a picture that loads or, for a
CSV data set, a table of its rows."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser


@pytest.fixture
def small_upload_server(tmp_path):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_MAX_UPLOAD_BYTES": "4096",
                                                "TRAINBOARD_WARM_WORKERS": "0"}, accounts=True).start()
    yield server
    server.stop()


def test_an_upload_over_the_limit_shows_the_reason_next_to_the_file_field(page: Page, small_upload_server, tmp_path):
    csv = tmp_path / "big.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(2000)))
    small_upload_server.sign_in(page)
    page.goto(f"{small_upload_server.url}/datasets")
    page.fill("#upload-name", "big")
    page.set_input_files("#upload-file", str(csv))
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#file-errors")).to_contain_text("over the limit")
    expect(page.locator("#file-errors")).to_contain_text("TRAINBOARD_MAX_UPLOAD_BYTES")
    expect(page.locator("#upload-file")).to_have_attribute("aria-invalid", "true")
    with small_upload_server.api() as api:
        assert "big" not in {d["name"] for d in api.get("/api/datasets").json()}


def test_the_dashboards_mnist_button_downloads_mnist_and_it_becomes_available(page: Page, tmp_path, dataset_mirror):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_DATASET_MIRROR": dataset_mirror,
                                                "TRAINBOARD_WARM_WORKERS": "0"}, accounts=True).start()
    try:
        server.sign_in(page)
        page.goto(f"{server.url}/")
        expect(page.locator("#download-mnist")).to_contain_text("MNIST is not here yet")
        page.click('button[data-launch="preset:mnist-mlp"][data-download="mnist"]')
        # A process of its own downloads and imports it; the page follows it, then reloads with the set here.
        launch = page.locator('form[action="/runs/quick"] button[data-launch="preset:mnist-mlp"]')
        expect(launch).to_be_enabled(timeout=60_000)
        expect(page.locator("#download-mnist")).to_have_count(0)
        with server.api() as api:
            mnist = next(d for d in api.get("/api/datasets").json() if d["name"] == "mnist")
        assert mnist["available"] and mnist["train_size"] == 60000
        page.goto(f"{server.url}/datasets")
        expect(page.locator("#dataset-mnist .status")).to_have_text("available")
    finally:
        server.stop()


@pytest.fixture
def training_server(tmp_path):
    server = LiveServer(tmp_path / "data", accounts=True).start()
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_WARM_WORKERS": "0"}, accounts=True).start()
    yield server
    server.stop()


def test_an_uploaded_csv_trains_with_the_default_model_it_is_offered(page: Page, training_server, tmp_path):
    csv = tmp_path / "flowers.csv"  # 4 features, 3 classes
    csv.write_text("petal,sepal,width,height,label\n" + "".join(
        f"{k + i % 5 * 0.1},{2 * k - i % 3 * 0.2},{i % 7 * 0.1},{k * 0.5 + i % 2 * 0.1},{'abc'[k]}\n"
        for i in range(90) for k in [i % 3]))
    training_server.sign_in(page)
    wait_ms = 60_000  # the trainer starts and trains on two cores shared with other tests
    page.goto(f"{training_server.url}/datasets")
    page.fill("#upload-name", "flowers")
    page.set_input_files("#upload-file", str(csv))
    page.click("#upload-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/datasets\?uploaded=flowers"))

    page.locator("#dataset-flowers").get_by_role("link", name="Train on flowers").click()
    expect(page.locator("#model")).to_have_value("default")
    expect(page.locator("#dataset")).to_have_value("flowers")
    page.fill("#config-epochs", "3")
    page.get_by_role("button", name="Start training").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    expect(page.locator("#run-status")).to_have_text("completed", timeout=wait_ms)
    expect(page.locator("#per-class tbody tr")).to_have_count(3, timeout=wait_ms)

    run_id = int(page.url.rsplit("/", 1)[1])
    with training_server.api() as api:
        run = api.get(f"/api/runs/{run_id}").json()
    assert run["name"] == "default model on flowers"
    assert run["spec"]["input_shape"] == [4]
    assert run["spec"]["layers"][-1] == {"type": "Dense", "units": 3, "activation": "softmax"}


def test_every_preview_loads_and_a_csv_shows_rows(page: Page, server, tmp_path):
    csv = tmp_path / "iris.csv"
    csv.write_text("sepal,petal,species\n" + "".join(f"{5 + i / 10},{1 + i % 3},{'ab'[i % 2]}\n" for i in range(30)))
    server.sign_in(page)
    page.goto(f"{server.url}/datasets")
    page.fill("#upload-name", "iris")
    page.set_input_files("#upload-file", str(csv))
    page.fill("#upload-label", "species")
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#dataset-iris")).to_be_visible()

    iris = page.locator("#dataset-iris")
    expect(iris.locator("img")).to_have_count(0)
    expect(iris.get_by_role("table", name="First test rows").locator("tbody tr")).to_have_count(5)
    expect(iris.get_by_role("columnheader")).to_have_text(["label", "sepal", "petal"])
    spirals = page.locator("#dataset-spirals")
    expect(spirals.locator("img")).to_have_count(1)
    expect(spirals.locator(".class-legend > span")).to_have_text(["0", "1", "2"])
    for img in page.locator("img").all():  # no broken picture anywhere: each one decoded
        img.scroll_into_view_if_needed()
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
