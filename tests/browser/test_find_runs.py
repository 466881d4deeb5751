"""Finding runs in Chromium: search the dashboard by tag and by a metric threshold, sort by a column, and
page (keyset) back to the oldest of 230 runs; the view lives in the URL."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("find-browser")]

RUNS = 230


def seed_runs(server: LiveServer) -> list[int]:
    """RUNS finished runs written straight into the server's database (training them would take minutes)."""
    from sqlalchemy.orm import Session

    import app.main  # noqa: F401  (every model's table, for the foreign keys)
    from app.core.db import make_engine
    from app.runs.models import Run

    engine = make_engine(server.database_url)
    try:
        with Session(engine) as db_session, db_session.begin():
            runs = [Run(name=f"{'mlp' if i % 2 else 'cnn'} run {i:03d}", spec={"layers": []}, dataset="digits",
                        config={"epochs": 1}, status="completed", external=True, epochs_total=1, epoch=1,
                        best_val_accuracy=0.90 + (i % 10) / 100, test_accuracy=0.90 + (i % 10) / 100,
                        total_params=1000 + i) for i in range(RUNS)]
            db_session.add_all(runs)
            db_session.flush()
            return [run.id for run in runs]
    finally:
        engine.dispose()


def test_search_by_tag_and_threshold_sort_and_page_to_the_oldest_run(tmp_path, page: Page):
    server = LiveServer(tmp_path / "data", accounts=True).start()
    try:
        ids = seed_runs(server)
        with server.api() as api:
            for run_id in ids[5:8]:
                assert api.put(f"/api/runs/{run_id}/tags", json={"tags": ["baseline"]}).status_code == 200
        server.sign_in(page)
        page.goto(f"{server.url}/")
        rows = page.locator("#runs-body tr")
        expect(rows).to_have_count(100)
        expect(page.locator("#runs-count")).to_contain_text(f"100 of {RUNS} runs")

        # by tag: the three tagged runs, and the URL carries the search
        page.fill("#filter-q", "tag:baseline")
        page.press("#filter-q", "Enter")
        expect(rows).to_have_count(3)
        assert "q=tag%3Abaseline" in page.url
        expect(page.locator("#runs-body")).to_contain_text("run 005")

        # by a metric threshold: 0.99 is every tenth run
        page.fill("#filter-q", "val_accuracy>0.985")
        page.press("#filter-q", "Enter")
        expect(rows).to_have_count(RUNS // 10)
        for text in rows.locator("td.num").nth(1).all_inner_texts()[:3]:
            assert text.startswith("99")

        # an unreadable search says what to write, next to the box
        page.fill("#filter-q", "val_accuracy>lots")
        page.press("#filter-q", "Enter")
        expect(page.locator("#search-errors")).to_contain_text("'lots' is not a number")

        # page to the oldest run, newest first
        page.fill("#filter-q", "")
        page.press("#filter-q", "Enter")
        expect(page).not_to_have_url(re.compile("lots"))  # the cleared search's answer is in
        expect(page.locator("#search-errors")).to_have_count(0)
        expect(rows).to_have_count(100)
        page.click("#next-page")
        expect(page.locator("#runs-body")).to_contain_text("run 030")
        page.click("#next-page")
        expect(rows).to_have_count(RUNS - 200)
        expect(page.locator(f"#run-row-{ids[0]}")).to_be_visible()
        expect(page.locator("#next-page")).to_have_count(0)
        shared = page.url
        assert "cursor=" in shared
        page.goto(shared)  # the page's URL opens the same page
        expect(page.locator(f"#run-row-{ids[0]}")).to_be_visible()

        # sort by parameters, fewest first
        page.goto(f"{server.url}/")
        page.click("th >> text=Params")
        expect(page.locator("th[aria-sort='descending']")).to_contain_text("Params")
        page.click("th >> text=Params")
        expect(page.locator("th[aria-sort='ascending']")).to_contain_text("Params")
        expect(page.locator("#runs-body tr").first).to_have_attribute("data-run-id", str(ids[0]))
        assert "sort=params" in page.url and "order=asc" in page.url
    finally:
        server.stop()
