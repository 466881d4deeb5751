"""Screenshots of the run pages for the docs: the dashboard, a live run, a finished run, a comparison.

    .venv/bin/python bench/screenshots.py [--out docs/screenshots] [--dark] [--phone] [--timeout 900]

Starts `trainboard serve` on a temporary data dir, trains a few real runs on offline data sets
(digits, spirals), and drives headless Chromium (the system's /usr/bin/chromium) to capture
dashboard.png, run-live.png, run-finished.png and compare.png (an MLP, a CNN and an LSTM on digits:
the tutorial's "compare CNNs and RNNs on training time and memory").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from tests.conftest import CHROMIUM, LiveServer  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402

DIGITS_MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 64, "activation": "relu"},
                         {"type": "Dense", "units": 10, "activation": "softmax"}]}
DIGITS_CNN = {"layers": [{"type": "Conv2D", "filters": 16, "kernel_size": 3, "activation": "relu"},
                         {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"},
                         {"type": "Dense", "units": 10, "activation": "softmax"}]}
DIGITS_LSTM = {"layers": [{"type": "Reshape", "target_shape": [8, 8]}, {"type": "LSTM", "units": 48},
                          {"type": "Dense", "units": 10, "activation": "softmax"}]}
SPIRALS_MLP = {"layers": [{"type": "Dense", "units": 64, "activation": "relu"},
                          {"type": "Dense", "units": 64, "activation": "relu"},
                          {"type": "Dense", "units": 3, "activation": "softmax"}]}


def launch(api, name: str, spec: dict, dataset: str, **config) -> int:
    response = api.post("/api/runs", json={"name": name, "spec": spec, "dataset": dataset, "config": config})
    response.raise_for_status()
    return response.json()["id"]


def wait_for(api, run_id: int, statuses: tuple[str, ...], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/api/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        time.sleep(0.3)
    raise TimeoutError(f"run {run_id} did not reach {statuses}")


def settle(page: Page) -> None:
    """Let the last chart frame and CSS transitions finish before the picture is taken."""
    page.wait_for_timeout(600)


def draw_a_seven(page: Page) -> None:
    """Two strokes on the predict canvas, as a person would draw a 7."""
    page.locator("#draw-canvas").scroll_into_view_if_needed()
    box = page.locator("#draw-canvas").bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + w * 0.25, y + h * 0.2)
    page.mouse.down()
    page.mouse.move(x + w * 0.75, y + h * 0.2, steps=8)
    page.mouse.move(x + w * 0.4, y + h * 0.85, steps=12)
    page.mouse.up()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--dark", action="store_true", help="dark colour scheme")
    parser.add_argument("--phone", action="store_true", help="a 390 px wide phone viewport")
    parser.add_argument("--timeout", type=float, default=900, help="overall time limit in seconds (exit 124)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    watchdog = harness.Watchdog(args.timeout).__enter__()
    server = LiveServer(Path(tempfile.mkdtemp(prefix="trainboard-shots-")) / "data").start()
    watchdog.track(server.process.pid)
    try:
        with server.api() as api, sync_playwright() as playwright:
            finished = launch(api, "digits MLP, Adam", DIGITS_MLP, "digits", epochs=20, batch_size=32)
            launch(api, "spirals MLP, SGD momentum", SPIRALS_MLP, "spirals", epochs=25, batch_size=32,
                   optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9})
            wait_for(api, finished, ("completed",))
            cnn = launch(api, "digits CNN, Adam", DIGITS_CNN, "digits", epochs=20, batch_size=32)
            lstm = launch(api, "digits LSTM, Adam", DIGITS_LSTM, "digits", epochs=20, batch_size=32)
            stopped = launch(api, "digits MLP, lr 0.1", DIGITS_MLP, "digits", epochs=200, batch_size=4,
                             optimizer={"name": "adam", "lr": 0.1})
            wait_for(api, stopped, ("running",))
            time.sleep(2)
            api.post(f"/api/runs/{stopped}/cancel")
            wait_for(api, stopped, ("cancelled", "failed", "completed"))
            for run in api.get("/api/runs").json()["items"]:
                wait_for(api, run["id"], ("completed", "cancelled", "failed"))
            live = launch(api, "digits MLP, batch 2 (live)", DIGITS_MLP, "digits", epochs=40, batch_size=2,
                          optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9},
                          schedule={"name": "cosine"})

            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            viewport = {"width": 390, "height": 844} if args.phone else {"width": 1360, "height": 900}
            context = browser.new_context(viewport=viewport, device_scale_factor=1 if not args.phone else 2,
                                          color_scheme="dark" if args.dark else "light")
            page = context.new_page()
            suffix = ("-dark" if args.dark else "") + ("-phone" if args.phone else "")

            page.goto(f"{server.url}/runs/{live}")
            page.wait_for_function("window.trainboardRun && window.trainboardRun.epochPoints() >= 4", timeout=120_000)
            settle(page)
            page.screenshot(path=args.out / f"run-live{suffix}.png", full_page=False)

            page.goto(f"{server.url}/")
            settle(page)
            page.screenshot(path=args.out / f"dashboard{suffix}.png", full_page=True)
            api.post(f"/api/runs/{live}/cancel")

            page.goto(f"{server.url}/runs/{finished}")
            page.wait_for_selector("#confusion-matrix")
            page.wait_for_function("window.trainboardRun.status() === 'completed'")
            page.locator("#confusion-matrix td.cell:not(.diag):not(.zero) button").first.click()
            page.wait_for_selector("#gallery-images img")
            draw_a_seven(page)
            page.get_by_role("button", name="Predict drawing").click()
            page.wait_for_selector("#predict-results .bar-row", timeout=60_000)
            page.mouse.move(0, 0)
            page.evaluate("window.scrollTo(0, 0)")
            settle(page)
            page.screenshot(path=args.out / f"run-finished{suffix}.png", full_page=True)

            page.goto(f"{server.url}/compare?runs={finished},{cnn},{lstm}")
            page.wait_for_selector("#cmp-val_accuracy canvas")
            settle(page)
            page.screenshot(path=args.out / f"compare{suffix}.png", full_page=True)
            browser.close()
            print(f"wrote {args.out}/dashboard{suffix}.png, run-live{suffix}.png, run-finished{suffix}.png, "
                  f"compare{suffix}.png")
    finally:
        server.stop()
        watchdog.__exit__(None, None, None)


if __name__ == "__main__":
    main()
