"""Drive the architecture builder in Chromium the way a person does: type, add, reorder, import, save."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser

TUTORIAL_MLP = """model = tf.keras.models.Sequential([
    tf.keras.layers.Flatten(input_shape=(28, 28)),
    tf.keras.layers.Dense(128, activation='relu'),
    tf.keras.layers.Dense(10, activation='softmax')
])"""


@pytest.fixture
def live_server(tmp_path):
    """`trainboard serve` with an admin, minus the warm trainer: pages never train, and it stops 2 s faster."""
    server = LiveServer(tmp_path / "server-data", env={"TRAINBOARD_WARM_WORKERS": "false"}, accounts=True).start()
    yield server
    server.stop()


def settled(page: Page) -> None:
    """Wait until htmx has swapped and settled: typing into a form that was swapped in a few ms ago
    would otherwise race htmx binding the new form's live-update trigger."""
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')")


def add_layer(page: Page, layer_type: str, index: int) -> None:
    """Pick a type under the list, press Add layer, and wait for the new layer's row."""
    page.select_option("#add_type", layer_type)
    page.get_by_role("button", name="Add layer").click()
    expect(page.locator(f"#layers-{index}-type")).to_have_value(layer_type)
    settled(page)


def test_build_break_fix_save_and_find_in_list(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(5000)
    page.goto(f"{live_server.url}/architectures/new")
    expect(page.locator(".empty-state")).to_contain_text("No layers yet")

    page.fill("#input_shape", "1,28,28")
    add_layer(page, "Flatten", 0)
    expect(page.locator("#layer-0-shape")).to_contain_text("(784,)")
    add_layer(page, "Dense", 1)
    page.fill("#layers-1-units", "128")
    page.select_option("#layers-1-activation", "relu")
    add_layer(page, "Dense", 2)
    page.fill("#layers-2-units", "10")
    page.select_option("#layers-2-activation", "softmax")

    expect(page.locator("#total-params")).to_have_text("101,770")
    expect(page.locator("#layer-1-shape")).to_contain_text("(128,)")
    expect(page.locator("#layer-2-shape")).to_contain_text("1,290")
    expect(page.locator("svg.diagram")).to_contain_text("Dense 10, softmax")

    # Move Flatten below the first Dense: that Dense now gets images, and says so next to itself.
    page.get_by_role("button", name="Move layer 1 down").click()
    expect(page.locator("#layers-0-type")).to_have_value("Dense")
    expect(page.locator("#layer-0-errors")).to_contain_text("receives a 3-D input (1, 28, 28): add a Flatten before it")
    expect(page.locator("#layer-1-errors")).to_be_empty()
    expect(page.locator("#total-params")).to_have_count(0)

    page.get_by_role("button", name="Move layer 2 up").click()
    expect(page.locator("#layer-0-errors")).to_be_empty()
    expect(page.locator("#total-params")).to_have_text("101,770")
    settled(page)

    # A typo while typing shows up without leaving the field.
    page.fill("#layers-1-units", "12x")
    expect(page.locator("#layer-1-errors")).to_contain_text("'units'")
    expect(page.locator("#layers-1-units")).to_be_focused()
    page.fill("#layers-1-units", "128")
    expect(page.locator("#layer-1-errors")).to_be_empty()
    expect(page.locator("#total-params")).to_have_text("101,770")

    page.fill("#name", "Browser MLP")
    page.get_by_role("button", name="Save architecture").click()
    expect(page).to_have_url(re.compile(r"/architectures/\d+\?saved=1$"))
    expect(page.get_by_role("status")).to_contain_text("Saved “Browser MLP”")

    page.get_by_role("navigation").get_by_role("link", name="Architectures").click()
    row = page.locator("#architectures tbody tr", has_text="Browser MLP")
    expect(row).to_contain_text("101,770")
    expect(row.locator("td").nth(1)).to_have_text("3")


def test_import_keras_snippet_then_start_from_preset(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(5000)
    page.goto(f"{live_server.url}/architectures/new")
    page.locator("summary", has_text="Import Keras code").click()

    page.fill("#keras_code", "model = Sequential([\n    Dense(10),\n    Frobnicate(3),\n])")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-errors")).to_contain_text("line 3")

    page.fill("#keras_code", TUTORIAL_MLP)
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-errors")).to_be_empty()
    expect(page.locator("#total-params")).to_have_text("101,770")
    expect(page.locator("#input_shape")).to_have_value("1, 28, 28")
    expect(page.locator("#layers-1-units")).to_have_value("128")

    # One click on a preset card opens the builder filled in; saving it twice is a name conflict.
    page.goto(f"{live_server.url}/architectures")
    page.locator("[data-preset=mnist-mlp]").click()
    expect(page.locator("#total-params")).to_have_text("101,770")
    page.get_by_role("button", name="Save architecture").click()
    expect(page).to_have_url(re.compile(r"/architectures/\d+\?saved=1$"))
    page.goto(f"{live_server.url}/architectures/new?preset=mnist-mlp")
    page.get_by_role("button", name="Save architecture").click()
    expect(page.locator("#name-errors")).to_contain_text("already exists")
    expect(page).to_have_url(re.compile(r"/architectures/new\?preset=mnist-mlp$"))


def test_builder_offers_conv1d_and_layer_normalization_for_sequences(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(5000)
    page.goto(f"{live_server.url}/architectures/new")
    page.fill("#input_shape", "20, 1")
    add_layer(page, "Conv1D", 0)
    page.fill("#layers-0-filters", "8")
    expect(page.locator("#layer-0-shape")).to_contain_text("(18, 8)")
    page.select_option("#layers-0-padding", "same")
    expect(page.locator("#layer-0-shape")).to_contain_text("(20, 8)")
    add_layer(page, "LayerNormalization", 1)
    expect(page.locator("#layers-1-epsilon")).to_have_value("0.001")
    expect(page.locator("#layer-1-shape")).to_contain_text("16 params")
    expect(page.locator("#total-params")).to_have_text("48")  # 3 * 1 * 8 + 8, then 2 * 8
    expect(page.locator("svg.diagram")).to_contain_text("Conv1D 8, 3, same, relu")


KERAS_WITH_SETTINGS = """model = tf.keras.Sequential([
    tf.keras.layers.Flatten(input_shape=(8, 8)),
    tf.keras.layers.Dense(64, activation="relu"),
    tf.keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, batch_size=128, epochs=2, validation_split=0.1)"""


def expect_keras_settings(page: Page) -> None:
    """The launch form shows the snippet's compile/fit settings and the data set its input fits."""
    expect(page.locator("#form-notice")).to_contain_text("The training settings saved with “Keras digits”")
    expect(page.locator("#config-optimizer-name")).to_have_value("rmsprop")
    expect(page.locator("#config-epochs")).to_have_value("2")
    expect(page.locator("#config-batch_size")).to_have_value("128")
    expect(page.locator("#config-val_split")).to_have_value("0.1")
    expect(page.locator("#config-loss")).to_have_value("cross_entropy")
    expect(page.locator("#dataset")).to_have_value("digits")


def test_pasted_keras_settings_reach_the_launch_form_by_every_path(live_server, page: Page):
    live_server.sign_in(page)
    page.set_default_timeout(5000)
    page.goto(f"{live_server.url}/architectures/new")
    page.locator("summary", has_text="Import Keras code").click()
    page.fill("#keras_code", KERAS_WITH_SETTINGS)
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("rmsprop lr 0.001 · cross entropy · 2 epochs · batch 128")
    settled(page)
    page.fill("#name", "Keras digits")
    page.get_by_role("button", name="Save architecture").click()
    expect(page).to_have_url(re.compile(r"/architectures/\d+\?saved=1$"))
    architecture_url = page.url.split("?")[0]

    # Save, then Train…
    page.locator("#train-link").click()
    expect(page).to_have_url(re.compile(r"/runs/new\?architecture_id=\d+$"))
    expect(page.locator("#model")).to_have_value(re.compile(r"^architecture:\d+$"))
    expect_keras_settings(page)

    # Open the saved architecture later (nothing in its URL), then Train…
    page.goto(architecture_url)
    expect(page.locator("#saved-training")).to_contain_text("rmsprop lr 0.001")
    page.locator("#train-link").click()
    expect_keras_settings(page)

    # The architectures list's Train link.
    page.goto(f"{live_server.url}/architectures")
    page.get_by_role("link", name="train Keras digits").click()
    expect_keras_settings(page)
