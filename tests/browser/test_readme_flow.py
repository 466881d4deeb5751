"""The README's first steps in Chromium, from a fresh data dir: download MNIST from the dashboard (the real
download code against a local mirror: only the network is mocked), paste the tutorial's Keras code with
its compile() and fit() settings, save, click Train: the launch form holds rmsprop, 2 epochs, batch 128
and MNIST."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser

TUTORIAL = """import tensorflow as tf

model = tf.keras.models.Sequential([
    tf.keras.layers.Flatten(input_shape=(28, 28)),
    tf.keras.layers.Dense(128, activation='relu'),
    tf.keras.layers.Dense(10, activation='softmax')
])
model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=128, epochs=2, validation_split=0.1)"""


def test_download_paste_save_train_keeps_the_keras_settings(page: Page, tmp_path, dataset_mirror):
    server = LiveServer(tmp_path / "data", env={"TRAINBOARD_DATASET_MIRROR": dataset_mirror,
                                                "TRAINBOARD_WARM_WORKERS": "0"}, accounts=True).start()
    try:
        server.sign_in(page)
        page.goto(f"{server.url}/")
        page.click('button[data-launch="preset:mnist-mlp"][data-download="mnist"]')
        launch = page.locator('form[action="/runs/quick"] button[data-launch="preset:mnist-mlp"]')
        expect(launch).to_be_enabled(timeout=60_000)  # downloaded and imported by a process of its own

        page.goto(f"{server.url}/architectures/new")
        page.locator("summary", has_text="Import Keras code").click()
        page.fill("#keras_code", TUTORIAL)
        page.get_by_role("button", name="Import", exact=True).click()
        expect(page.locator("#total-params")).to_have_text("101,770")
        expect(page.get_by_role("status")).to_contain_text("rmsprop")
        page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
        page.fill("#name", "tutorial MLP")
        page.get_by_role("button", name="Save architecture").click()
        expect(page).to_have_url(re.compile(r"/architectures/\d+\?saved=1$"))

        page.locator("#train-link").click()
        expect(page).to_have_url(re.compile(r"/runs/new\?architecture_id=\d+$"))
        expect(page.locator("#config-optimizer-name")).to_have_value("rmsprop")
        expect(page.locator("#config-epochs")).to_have_value("2")
        expect(page.locator("#config-batch_size")).to_have_value("128")
        expect(page.locator("#config-val_split")).to_have_value("0.1")
        expect(page.locator("#dataset")).to_have_value("mnist")  # the data set the input shape fits
    finally:
        server.stop()
