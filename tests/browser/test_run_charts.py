"""The live run page in Chromium, on real digits runs: progress inside a long first epoch (steps of the
epoch, speed, ETA, running loss and accuracy, on the run page and the dashboard row), and the charts'
tools (smoothing, log-scale loss, x axis by step, epoch or wall time, hover values, CSV download)."""

from __future__ import annotations

import csv
import math
import re
from itertools import pairwise

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("runs-browser"), pytest.mark.usefixtures("patient_expect")]

WAIT_MS = 60_000  # two cores shared with other test runs: trainers start and train at varying speed


def mlp(units: int) -> dict:
    """Two hidden layers of `units`: with batch_size=1 on digits an epoch of 1,294 steps lasts seconds."""
    return {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": units, "activation": "relu"},
                       {"type": "Dense", "units": units, "activation": "relu"},
                       {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("charts-browser") / "server-data", accounts=True).start()
    yield server
    server.stop()


def launch(server: LiveServer, spec: dict, **config) -> int:
    with server.api() as api:
        response = api.post("/api/runs", json={"spec": spec, "dataset": "digits", "config": config})
        assert response.status_code == 201, response.text
        return response.json()["id"]


def ema(values: list, weight: float) -> list:
    """TensorBoard's debiased exponential moving average, as the page must compute it."""
    out, last, count = [], 0.0, 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        last, count = last * weight + (1 - weight) * v, count + 1
        out.append(last / (1 - weight ** count) if weight > 0 else v)
    return out


def close(a: list, b: list) -> bool:
    return len(a) == len(b) and all((x is None and y is None) or (x is not None and y is not None and
                                    math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)) for x, y in zip(a, b, strict=True))


def ticks(page: Page, chart: str, axis: str) -> list[str]:
    return page.locator(f"#chart-{chart}").get_attribute(f"data-{axis}-ticks").split(" | ")


def test_a_long_first_epoch_shows_its_steps_speed_eta_and_running_figures_before_it_ends(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    run_id = launch(live_server, mlp(2048), epochs=2, batch_size=1)  # an epoch of seconds even on a fast machine
    page.goto(f"{live_server.url}/runs/{run_id}")
    # All at one moment, while no epoch has finished yet: the bar's steps, an ETA and the live stats.
    page.wait_for_function("""() => {
        const p = window.trainboardRun.progress(), text = (id) => document.getElementById(id).textContent;
        return p.epochsDone === 0 && p.current !== null && p.current.step > 0 && p.eta > 0
            && /^epoch 1 of 2 · step [\\d,]+\\/1,294$/.test(text("run-progress-text"))
            && /^ETA \\d+ (s|min)/.test(text("run-eta"))
            && /^[\\d,]+$/.test(text("stat-speed"))
            && /^\\d\\.\\d{4}$/.test(text("stat-train-loss")) && /^\\d+\\.\\d%$/.test(text("stat-train-acc"))
            && text("stat-val-loss") === "–";
    }""")
    first = page.evaluate("window.trainboardRun.progress().current.step")
    # It moves on inside the same epoch, and so does the bar: no need to wait for the epoch to end.
    page.wait_for_function(f"""() => {{ const p = window.trainboardRun.progress();
        return p.epochsDone === 0 && p.current.step > {first}; }}""")
    now = page.evaluate("""() => ({progress: window.trainboardRun.progress(),
                                   width: parseFloat(document.getElementById('run-progress-fill').style.width)})""")
    assert now["progress"]["epochsDone"] == 0  # the first epoch lasts seconds: still under way
    assert now["width"] == pytest.approx(50 * now["progress"]["current"]["fraction"], abs=0.06) and now["width"] > 0

    # The dashboard row says the same: the step of the epoch under way and an ETA.
    page.goto(live_server.url + "/")
    expect(page.locator(f"#run-row-{run_id} .progress-text")).to_have_text(
        re.compile(r"^epoch [12] of 2 · step [\d,]+/1,294 · ETA \d+ (s|min)"))
    with live_server.api() as api:
        api.post(f"/api/runs/{run_id}/cancel")
    expect(page.locator(f"#run-row-{run_id} [data-status-badge]")).to_have_text("cancelled")


def test_chart_tools_smoothing_log_scale_x_axis_hover_and_csv(live_server, page: Page, tmp_path):
    live_server.sign_in(page)
    page.set_default_timeout(WAIT_MS)
    run_id = launch(live_server, mlp(256), epochs=2, batch_size=1)
    page.goto(f"{live_server.url}/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("completed")

    def loss_chart() -> dict:
        return page.evaluate("window.trainboardRun.chart('loss')")

    chart = loss_chart()
    assert chart["labels"] == ["train (step, raw)", "train (step, smoothed)", "train (epoch)", "validation"]
    x, raw, smoothed = chart["data"][0], chart["data"][1], chart["data"][2]
    steps = [v for v in raw if v is not None]
    assert len(steps) >= 3 and len(set(steps)) >= 3, chart
    assert x == sorted(x) and x[-1] == 2 * 1294  # by step
    # Smoothing: the step curve's EMA with the slider's weight (0.6 at first), the raw curve kept, faint.
    expect(page.locator("#chart-smoothing-value")).to_have_text("0.60")
    assert chart["view"]["smoothing"] == 0.6 and close(smoothed, ema(raw, 0.6))
    assert chart["alphas"][0] < 0.5 and chart["alphas"][1] == 1
    page.locator("#chart-smoothing").fill("0.95")
    expect(page.locator("#chart-smoothing-value")).to_have_text("0.95")
    expect(page.locator("#chart-loss")).to_have_attribute("data-smoothing", "0.95")
    heavy = loss_chart()["data"]
    assert heavy[1] == raw and close(heavy[2], ema(raw, 0.95))

    def wiggle(series: list) -> float:
        values = [v for v in series if v is not None]
        return sum(abs(b - a) for a, b in pairwise(values))

    assert wiggle(heavy[2]) < wiggle(smoothed) < wiggle(raw)
    page.locator("#chart-smoothing").fill("0")
    expect(page.locator("#chart-smoothing-value")).to_have_text("0.00")
    expect(page.locator("#chart-loss")).to_have_attribute("data-smoothing", "0")
    assert close(loss_chart()["data"][2], raw)

    # Log-scale loss: the scale and the axis the user reads change; accuracy stays linear.
    loss = page.locator("#chart-loss")
    expect(loss).to_have_attribute("data-y-scale", "linear")
    linear = [float(t) for t in ticks(page, "loss", "y")]
    gaps = [b - a for a, b in pairwise(linear)]
    assert len(linear) >= 2 and all(math.isclose(g, gaps[0], rel_tol=1e-6) for g in gaps)  # evenly spaced
    page.get_by_label("Log-scale loss").check()
    expect(loss).to_have_attribute("data-y-scale", "log")
    assert loss_chart()["yDistr"] == 3 and page.evaluate("window.trainboardRun.chart('accuracy').yDistr") == 1
    logarithmic = [float(t) for t in ticks(page, "loss", "y")]
    assert len(logarithmic) >= 2 and all(v > 0 for v in logarithmic)
    assert all(math.isclose(v / 10 ** math.floor(math.log10(v)), round(v / 10 ** math.floor(math.log10(v))))
               for v in logarithmic)  # 0.1, 0.2, 0.5, 1, 2...: powers of ten and their multiples
    assert logarithmic != linear

    # The x axis by epoch: whole epochs only, 0 to 2; by wall time: seconds from 0, never below.
    page.locator("#chart-x").select_option("epoch")
    expect(loss).to_have_attribute("data-x-axis", "epoch")
    assert ticks(page, "loss", "x") == ["0", "1", "2"]
    by_epoch = loss_chart()["data"][0]
    assert by_epoch == sorted(by_epoch) and 0 < by_epoch[0] < 0.01 and by_epoch[-1] == 2
    page.locator("#chart-x").select_option("time")
    expect(loss).to_have_attribute("data-x-axis", "time")
    labels = ticks(page, "loss", "x")
    assert labels[0] == "0 s" and all(re.fullmatch(r"\d+ (s|min)( \d+ s)?", t) for t in labels), labels
    assert loss_chart()["data"][0][0] == 0 and loss_chart()["yDistr"] == 3  # the log scale stays

    # Hovering shows the values under the cursor in the legend.
    page.locator("#chart-loss .u-over").scroll_into_view_if_needed()  # the mouse hovers inside the viewport only
    over = page.locator("#chart-loss .u-over").bounding_box()
    page.mouse.move(over["x"] + over["width"] * 0.5, over["y"] + over["height"] * 0.5)
    legend = page.locator("#chart-loss .u-legend .u-series")
    expect(legend.nth(0).locator(".u-value")).to_have_text(re.compile(r"^\d+(\.\d)? s$|^\d+ min"))
    expect(legend.nth(1).locator(".u-value")).to_have_text(re.compile(r"^\d\.\d+$"))

    # The view is kept for the next page; the CSV holds every point of the charts.
    page.reload()
    expect(page.locator("#chart-log")).to_be_checked()
    expect(page.locator("#chart-x")).to_have_value("time")
    expect(page.locator("#chart-smoothing-value")).to_have_text("0.00")
    expect(page.locator("#run-status")).to_have_text("completed")
    with page.expect_download() as download:
        page.locator("#chart-csv").click()
    path = tmp_path / "metrics.csv"
    download.value.save_as(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert download.value.suggested_filename == f"run-{run_id}-metrics.csv"
    assert [r["kind"] for r in rows].count("epoch") == 2
    assert sorted({int(r["step"]) for r in rows}) == x  # one row per chart point (step and epoch rows can share one)
    assert [float(r["loss"]) for r in rows if r["kind"] == "step"] == pytest.approx(steps)

    # Compare draws the run's curves by whole epochs too.
    page.goto(f"{live_server.url}/compare?runs={run_id}")
    expect(page.locator("#cmp-val_accuracy")).to_have_attribute("data-x-ticks", "1 | 2")
