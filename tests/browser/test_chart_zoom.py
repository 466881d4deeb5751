"""Charts that stay light, in Chromium: a run with 100,000 step rows opens with a downsampled snapshot
(under 1 MB of page and chart data), its stream starts after the snapshot, and zooming into a range
draws that range at full resolution; zooming out returns to the overview."""

from __future__ import annotations

import math

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("runs-browser")]

WAIT_MS = 60_000
STEPS = 100_000
PER_EPOCH = 10_000


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("zoom-browser") / "server-data", accounts=True).start()
    yield server
    server.stop()


def loss_at(step: int) -> float:
    return 2.0 / math.sqrt(step) + 0.05 * math.sin(step / 7.0)


def seed_long_run(server: LiveServer) -> int:
    """A finished run of STEPS step rows and an epoch row every PER_EPOCH steps, written straight into
    the server's database with Core bulk inserts (a trainer would take hours)."""
    from sqlalchemy import insert, update
    from sqlalchemy.orm import Session

    import app.main  # noqa: F401  (every model's table, for the foreign keys)
    from app.core.db import make_engine
    from app.runs.events import append_events
    from app.runs.models import Run, RunEvent

    engine = make_engine(server.database_url)
    try:
        with Session(engine) as db_session, db_session.begin():
            run = Run(name="long run", spec={"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10}]},
                      dataset="digits", config={"epochs": STEPS // PER_EPOCH}, status="completed", external=True,
                      epochs_total=STEPS // PER_EPOCH, epoch=STEPS // PER_EPOCH)
            db_session.add(run)
            db_session.flush()
            append_events(db_session, run.id, [("status", {"status": "running"})])
            rows, seq, t0 = [], 1, 1_700_000_000.0
            for step in range(1, STEPS + 1):
                epoch = (step - 1) // PER_EPOCH + 1
                seq += 1
                payload = {"epoch": epoch, "step": step, "loss": loss_at(step), "accuracy": 1 - 1 / (1 + step / 1000),
                           "epoch_progress": ((step - 1) % PER_EPOCH + 1) / PER_EPOCH, "ts": t0 + step * 0.05}
                rows.append({"run_id": run.id, "seq": seq, "kind": "step", "epoch": epoch, "step": step,
                             "payload": payload, "ts": payload["ts"]})
                if step % PER_EPOCH == 0:
                    seq += 1
                    payload = {"epoch": epoch, "epochs": STEPS // PER_EPOCH, "step": step, "train_loss": 0.3,
                               "train_accuracy": 0.9, "val_loss": 0.35, "val_accuracy": 0.88, "lr": 0.01,
                               "epoch_time": 500.0, "ts": t0 + step * 0.05}
                    rows.append({"run_id": run.id, "seq": seq, "kind": "epoch", "epoch": epoch, "step": step,
                                 "payload": payload, "ts": payload["ts"]})
            for start in range(0, len(rows), 20_000):
                db_session.execute(insert(RunEvent), rows[start:start + 20_000])
            db_session.execute(update(Run).where(Run.id == run.id).values(last_seq=seq))
            append_events(db_session, run.id, [("status", {"status": "completed"})])
            return run.id
    finally:
        engine.dispose()


def raw_points(page: Page, chart: str = "loss") -> dict:
    """The raw step curve as drawn: its x and y where it has a point."""
    data = page.evaluate(f"window.trainboardRun.chart('{chart}').data")
    pairs = [(x, y) for x, y in zip(data[0], data[1], strict=True) if y is not None]
    return {"x": [p[0] for p in pairs], "y": [p[1] for p in pairs]}


def test_a_long_run_opens_light_and_zooms_to_full_resolution(live_server, page: Page):
    expect.set_options(timeout=WAIT_MS)
    page.set_default_timeout(WAIT_MS)
    run_id = seed_long_run(live_server)
    live_server.sign_in(page)

    transferred: dict[str, int] = {}

    def count(request) -> None:
        url = request.url
        if url.startswith((f"{live_server.url}/runs/{run_id}", f"{live_server.url}/api/runs/{run_id}")):
            transferred[url] = transferred.get(url, 0) + request.sizes()["responseBodySize"]

    page.on("requestfinished", count)
    # The stream of a finished run, opened after the snapshot, ends at once (`end`, then the page closes
    # it: Chromium reports that request as failed, with nothing but `retry:` and `end` in it) and the page
    # asks for the run once more to be sure it ended.
    with page.expect_request_finished(lambda request: request.url.endswith(f"/api/runs/{run_id}")):
        page.goto(f"{live_server.url}/runs/{run_id}")
    expect(page.locator("#run-page")).to_have_attribute("data-snapshot", "downsampled")
    expect(page.locator("#run-status")).to_have_text("completed")
    # The stream starts after the snapshot: no step row of the history comes down it, and it ends.
    page.wait_for_function("window.trainboardRun.lastSeq() === window.trainboardRun.snapshotSeq()")
    assert page.evaluate("window.trainboardRun.seqs()") == []
    snapshot_url = next(url for url in transferred if "/series?" in url)
    page_bytes = sum(transferred.values())
    print(f"\nrun page with {STEPS:,} step rows: {page_bytes:,} bytes of page and chart data "
          f"({transferred[snapshot_url]:,} of them the snapshot): {sorted(transferred)}")
    assert page_bytes < 1_000_000, transferred

    overview = raw_points(page)
    assert 100 < len(overview["y"]) <= 2000  # at most the overview's points per series
    assert overview["x"][0] == 1 and overview["x"][-1] == STEPS  # first and last kept
    assert len(page.evaluate("window.trainboardRun.chart('accuracy').data[1].filter((v) => v !== null)")) <= 2000
    # The epoch rows come whole: train and validation points at every epoch's last step.
    validation = page.evaluate("window.trainboardRun.chart('loss').data[4].filter((v) => v !== null).length")
    assert validation == STEPS // PER_EPOCH

    # Zoom into 40,000–40,600 (drag-select does this through uPlot's setScale): full resolution there.
    page.evaluate("window.trainboardRun.zoom('loss', 40000, 40600)")
    expect(page.locator("#chart-loss")).to_have_attribute("data-detail", "full")
    expect(page.locator("#chart-loss")).to_have_attribute("data-zoomed", "true")
    zoomed = raw_points(page)
    inside = [(x, y) for x, y in zip(zoomed["x"], zoomed["y"], strict=True) if 40000 <= x <= 40600]
    assert [x for x, _ in inside] == list(range(40000, 40601))  # every step of the range
    assert all(math.isclose(y, loss_at(x), rel_tol=1e-9) for x, y in inside)
    scale = page.evaluate("(() => { const u = document.getElementById('chart-loss').uplot; "
                          "return [u.scales.x.min, u.scales.x.max]; })()")
    assert scale == [40000, 40600]  # the chart stays where the reader zoomed
    # The overview around the range is still drawn (panning out shows it).
    assert zoomed["x"][0] == 1 and zoomed["x"][-1] == STEPS

    # Zooming out (a double-click, uPlot's reset) returns to the overview.
    page.locator("#chart-loss .u-over").dblclick()
    expect(page.locator("#chart-loss")).to_have_attribute("data-zoomed", "false")
    expect(page.locator("#chart-loss")).to_have_attribute("data-detail", "")
    assert raw_points(page) == overview

    # A real drag across the chart zooms too.
    over = page.locator("#chart-loss .u-over")
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.50, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.51, box["y"] + box["height"] * 0.5, steps=4)
    page.mouse.up()
    expect(page.locator("#chart-loss")).to_have_attribute("data-detail", "full")
    low, high = page.evaluate("(() => { const u = document.getElementById('chart-loss').uplot; "
                              "return [u.scales.x.min, u.scales.x.max]; })()")
    assert 0 < high - low < 4000
    drawn = [x for x in raw_points(page)["x"] if low <= x <= high]
    assert drawn == list(range(math.ceil(low), math.floor(high) + 1))
