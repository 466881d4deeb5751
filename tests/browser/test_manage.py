"""Run management in Chromium: tag, archive and bulk-delete three real runs from the dashboard (with the
confirmation that states how many runs and how much disk), and manage one run from its page."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer
from tests.runs.helpers import run_body, wait_exports, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("manage-browser"), pytest.mark.usefixtures("patient_expect")]

WAIT_MS = 30_000  # two cores shared with other test runs


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("manage-browser") / "server-data", accounts=True).start()
    yield server
    server.stop()


def finished_runs(server: LiveServer, count: int, name: str) -> list[int]:
    """`count` tiny digits runs, trained to completion (checkpoints and exports on disk)."""
    with server.api() as api:
        ids = []
        for i in range(count):
            answer = api.post("/api/runs", json={**run_body(epochs=1), "name": f"{name} {i}"})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        for run_id in ids:
            assert wait_status(api, run_id, "completed", "failed", timeout=120)["status"] == "completed"
            wait_exports(api, run_id)  # written after `completed`
    return ids


def leftovers(server: LiveServer, run_id: int) -> dict[str, object]:
    """Rows naming the run in the tables that refer to runs, and files named after it under the data dir."""
    rows = {table: server.sql(f"select count(*) from {table} where run_id = :id", id=run_id)[0][0]
            for table in ("run_events", "evaluations", "artifacts", "run_tags")}
    rows["runs"] = server.sql("select count(*) from runs where id = :id", id=run_id)[0][0]
    files = [os.path.join(folder, n) for folder, dirs, names in os.walk(server.data_dir)
             for n in dirs + names if n in (f"run-{run_id}", f"run-{run_id}.log")]
    return {**{k: v for k, v in rows.items() if v}, **({"files": files} if files else {})}


def test_tag_archive_and_bulk_delete_three_runs(live_server, page: Page):
    ids = finished_runs(live_server, 3, "doomed")
    bystander = finished_runs(live_server, 1, "bystander")[0]
    for run_id in ids:
        assert leftovers(live_server, run_id).get("files"), run_id  # there is something to delete

    live_server.sign_in(page)
    page.goto(live_server.url + "/")
    rows = [page.locator(f"#run-row-{run_id}") for run_id in ids]
    bar = page.locator("#bulk-bar")
    expect(bar).to_be_hidden()
    for run_id in ids:
        page.locator(f"#compare-{run_id}").check()
    expect(bar).to_be_visible()
    expect(page.locator("#bulk-count")).to_have_text("3 selected")

    # Tag them: a chip on each row, in the tag's colour.
    page.fill("#bulk-tag", "sweep-a")
    page.locator("#bulk-tag-add").click()
    expect(page.locator("#bulk-message")).to_have_text("Tagged 3 runs “sweep-a”.")
    for row in rows:
        expect(row.locator('.tag-chip[data-tag="sweep-a"]')).to_be_visible()
    expect(page.locator(f'#run-row-{bystander} .tag-chip')).to_have_count(0)
    colour = page.locator(f'#run-row-{ids[0]} .tag-chip').evaluate("e => getComputedStyle(e).color")
    assert colour != "rgb(0, 0, 0)"

    # Archive them: gone from the dashboard, back with "Show archived", marked archived.
    page.locator("#bulk-archive").click()
    expect(page.locator("#bulk-message")).to_have_text("Archived 3 runs.")
    for row in rows:
        expect(row).to_have_count(0)
    expect(page.locator(f"#run-row-{bystander}")).to_be_visible()
    expect(bar).to_be_hidden()  # nothing ticked is on show
    page.locator("#filter-archived").check()
    expect(page).to_have_url(re.compile(r"archived=1"))
    for row in rows:
        expect(row).to_be_visible()
        expect(row.locator(".archived-badge")).to_be_visible()
        expect(row.locator("input[type=checkbox]")).to_be_checked()  # the selection was kept
    expect(page.locator("#bulk-count")).to_have_text("3 selected")

    # Delete them: the confirmation says how many and how much disk; cancel first, then confirm.
    page.locator("#bulk-delete").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#delete-summary")).to_have_text(re.compile(r"^Delete 3 runs and free \d+(\.\d)? (B|KiB|MiB) on disk\?$"))
    page.locator("#delete-cancel").click()
    expect(dialog).to_be_hidden()
    for row in rows:
        expect(row).to_be_visible()
    page.locator("#bulk-delete").click()
    expect(dialog).to_be_visible()
    page.locator("#delete-confirm").click()
    expect(page.locator("#bulk-message")).to_have_text(re.compile(r"^Deleted 3 runs, freed \d+(\.\d)? (B|KiB|MiB)\.$"))
    for row in rows:
        expect(row).to_have_count(0)
    expect(page.locator(f"#run-row-{bystander}")).to_be_visible()
    expect(bar).to_be_hidden()

    # Gone from the database and from disk; the bystander is untouched.
    for run_id in ids:
        assert leftovers(live_server, run_id) == {}, run_id
    assert leftovers(live_server, bystander).get("files")
    with live_server.api() as api:
        assert api.get(f"/api/runs/{bystander}").json()["status"] == "completed"
        assert [t["runs"] for t in api.get("/api/tags").json() if t["name"] == "sweep-a"] == [0]


def test_manage_one_run_from_its_page(live_server, page: Page):
    run_id = finished_runs(live_server, 1, "single")[0]
    live_server.sign_in(page)
    page.goto(f"{live_server.url}/runs/{run_id}")

    page.fill("#tags-input", "baseline, digits , baseline")
    page.locator("#tags-save").click()
    expect(page.locator("#run-tags .tag-chip")).to_have_text(["baseline", "digits"])

    page.locator(".note-edit summary").click()
    page.fill("#run-name-input", "renamed run")
    page.fill("#note-input", "Learning rate **too high**. <script>window.pwned = 1</script>")
    page.locator("#note-save").click()
    expect(page.locator("#run-name")).to_have_text("renamed run")
    expect(page.locator("#run-note strong")).to_have_text("too high")
    expect(page.locator("#run-note")).to_contain_text("<script>window.pwned = 1</script>")  # shown as text
    assert page.evaluate("window.pwned") is None

    page.locator("#archive-button").click()
    expect(page.locator("#archived-badge")).to_be_visible()
    expect(page.locator("#archive-button")).to_have_text("Unarchive")

    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.locator("#delete-button").click()
    expect(page).to_have_url(live_server.url + "/")
    assert asked and asked[0].startswith(f"Delete run #{run_id}") and re.search(r"frees \d", asked[0]), asked
    assert leftovers(live_server, run_id) == {}
