"""The run page's "Precision" stat in Chromium, on real digits runs: what the trainer chose and why, live over
the page's stream or rendered with the page, and the same words in the log."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("runs-browser")]

WAIT_MS = 60_000  # two cores shared with other test runs: trainers start and train at varying speed
MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 16, "activation": "relu"},
                  {"type": "Dense", "units": 10, "activation": "softmax"}]}
CNN = {"layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
                  {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"},
                  {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("precision-browser") / "server-data", accounts=True).start()
    yield server
    server.stop()


def launch(server: LiveServer, spec: dict, **config) -> int:
    with server.api() as api:
        response = api.post("/api/runs", json={"spec": spec, "dataset": "digits", "config": config})
        assert response.status_code == 201, response.text
        return response.json()["id"]


def test_the_run_page_says_which_precision_the_trainer_chose_and_why(live_server, page: Page):
    live_server.sign_in(page)
    cnn = launch(live_server, CNN, epochs=2, device="cpu", precision="bf16")
    mlp = launch(live_server, MLP, epochs=1, device="cpu")  # auto: an MLP stays fp32 whatever the CPU
    page.goto(f"{live_server.url}/runs/{cnn}")
    stat = page.locator("#stat-precision")
    expect(stat).to_have_text(re.compile(r"^bf16 \(bf16 autocast \+ channels-last: set for this run, on a CPU "),
                              timeout=WAIT_MS)
    expect(page.locator("#run-log")).to_contain_text("training on cpu (bf16 autocast + channels-last", timeout=WAIT_MS)
    page.wait_for_function("() => window.trainboardRun.status() === 'completed'", timeout=WAIT_MS)
    page.reload()  # rendered with the page from the stored event
    expect(stat).to_have_text(re.compile(r"^bf16 \(bf16 autocast \+ channels-last: set for this run"))
    page.goto(f"{live_server.url}/runs/{mlp}")
    expect(stat).to_have_text("fp32 (fp32: not a convolutional model (MLPs and RNNs measured slower in bf16 on CPU))",
                              timeout=WAIT_MS)
