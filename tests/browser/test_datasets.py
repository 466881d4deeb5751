"""The data sets page in Chromium: an upload over the size limit says so next to the file field."""

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
