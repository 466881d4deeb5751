"""The data sets page in Chromium: an upload over the size limit says so next to the file field; every
preview is a picture that loads or, for a CSV data set, a table of its rows."""

from __future__ import annotations

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


@pytest.fixture
def server(tmp_path):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_WARM_WORKERS": "0"}, accounts=True).start()
    yield server
    server.stop()


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
