"""Pages render, and the builder's form round-trips through the architectures service (TestClient)."""

from __future__ import annotations

import re
from html import unescape

import pytest

from app.architectures.spec import LAYER_TYPES
from app.web.architecture_form import LAYER_FORMS, Editor
from tests.conftest import LOCAL

HTMX = {"HX-Request": "true"}


@pytest.fixture
def client(data_dir):
    """Pages need no executor: without one, each test skips the ~2 s trainer start and stop."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client
MNIST_FORM = {
    "name": "MNIST MLP",
    "description": "the tutorial's perceptron",
    "input_shape": "1, 28, 28",
    "layers-0-type": "Flatten",
    "layers-1-type": "Dense", "layers-1-units": "128", "layers-1-activation": "relu", "layers-1-use_bias": ["0", "1"],
    "layers-2-type": "Dense", "layers-2-units": "10", "layers-2-activation": "softmax", "layers-2-use_bias": ["0", "1"],
}


def layer_item(html: str, index: int) -> str:
    """The <li> of one layer in the builder (its form, shape slot and error slot)."""
    match = re.search(rf'<li class="layer[^"]*" id="layer-{index}".*?</li>', html, re.S)
    assert match, f"no layer {index} in the page"
    return match.group(0)


def errors_in(html: str) -> list[str]:
    return [unescape(m) for m in re.findall(r'<p class="error" role="alert">(.*?)</p>', html, re.S)]


def slot(html: str, slot_id: str) -> str:
    """The text of one message slot (e.g. name-errors): what a person reads next to that field."""
    match = re.search(rf'id="{slot_id}".*?</div>', html, re.S)
    assert match, f"no #{slot_id} in the page"
    return " ".join(errors_in(match.group(0)))


@pytest.mark.parametrize("url", ["/", "/architectures", "/architectures/new"])
def test_pages_render_with_layout_and_vendored_scripts(client, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.text
    assert "/static/vendor/htmx/htmx.min.js" in html and "/static/vendor/htmx/sse.min.js" in html
    assert "/static/vendor/uplot/uPlot.iife.min.js" in html
    assert "https://" not in html  # nothing from a CDN
    for link in ('href="/"', 'href="/architectures"', 'href="/datasets"'):
        assert link in html


def test_static_assets_are_served(client):
    assert client.get("/static/css/app.css").status_code == 200
    assert client.get("/static/vendor/htmx/htmx.min.js").status_code == 200


def test_empty_list_has_an_empty_state_and_presets(client):
    html = client.get("/architectures").text
    assert "No saved architectures yet" in html
    assert 'href="/architectures/new?preset=mnist-mlp"' in html
    assert "101,770" in html  # the preset card shows its parameter count


def test_preset_prefills_the_builder(client):
    response = client.get("/architectures/new?preset=mnist-mlp")
    assert response.status_code == 200
    html = response.text
    assert re.search(r'id="total-params">101,770<', html)
    assert 'value="1, 28, 28"' in html
    assert 'id="layers-1-units" name="layers-1-units" value="128"' in html
    assert "<svg" in html and "Dense 128, relu" in html  # the diagram, drawn on the server
    assert not errors_in(html)


def test_htmx_gets_the_editor_partial_and_a_browser_the_page(client):
    partial = client.get("/architectures/new?preset=mnist-mlp", headers=HTMX).text
    assert partial.lstrip().startswith("<form") and "<html" not in partial
    assert "<html" in client.get("/architectures/new?preset=mnist-mlp").text


def test_dense_after_conv_without_flatten_is_reported_next_to_that_layer(client):
    form = {
        "input_shape": "1, 28, 28",
        "layers-0-type": "Conv2D", "layers-0-filters": "8", "layers-0-kernel_size": "3",
        "layers-1-type": "Dense", "layers-1-units": "10", "layers-1-activation": "softmax",
    }
    response = client.post("/architectures/editor", data=form, headers=HTMX)
    assert response.status_code == 200
    dense = layer_item(response.text, 1)
    assert errors_in(dense) == ["layer 2 (Dense): receives a 3-D input (8, 26, 26): add a Flatten before it"]
    assert not errors_in(layer_item(response.text, 0))
    assert "(8, 26, 26)" in layer_item(response.text, 0)  # shapes before the bad layer still show

    live = client.post("/architectures/editor/live", data=form, headers=HTMX).text
    assert re.search(r'id="layer-1-errors" class="messages" hx-swap-oob="true"><p class="error"', live)


def test_input_shape_errors_show_next_to_the_input_field(client):
    form = {**MNIST_FORM, "input_shape": "28 by 28"}
    html = client.post("/architectures/editor", data=form, headers=HTMX).text
    slot_text = slot(html, "input-shape-errors")
    assert "cannot read '28 by 28'" in slot_text
    html = client.post("/architectures/editor", data={**form, "input_shape": "28, 28, 1"}, headers=HTMX).text
    slot_text = slot(html, "input-shape-errors")
    assert "channels-last" in slot_text


def test_bad_field_value_is_named_next_to_its_layer(client):
    form = {**MNIST_FORM, "layers-1-units": "many"}
    html = client.post("/architectures/editor", data=form, headers=HTMX).text
    [message] = errors_in(layer_item(html, 1))
    assert message.startswith("layer 2 (Dense): 'units'")
    assert 'id="layers-1-units" name="layers-1-units" value="many"' in html


@pytest.mark.parametrize(("action", "types"), [
    ("add", ["Flatten", "Dense", "Dense", "Dropout"]),
    ("remove:0", ["Dense", "Dense"]),
    ("up:1", ["Dense", "Flatten", "Dense"]),
    ("down:0", ["Dense", "Flatten", "Dense"]),
    ("up:0", ["Flatten", "Dense", "Dense"]),
])
def test_editor_actions(client, action, types):
    html = client.post("/architectures/editor", data={**MNIST_FORM, "add_type": "Dropout", "action": action},
                       headers=HTMX).text
    found = re.findall(r'<select id="layers-\d+-type"[^>]*>.*?<option value="(\w+)" selected>', html, re.S)
    assert found == types


def test_changing_a_layer_type_keeps_shared_fields_and_fills_new_ones(client):
    form = {**MNIST_FORM, "layers-1-type": "LSTM"}
    editor = Editor.from_form(_form_data(form))
    assert editor.layers[1].values == {"units": "128", "return_sequences": False, "bidirectional": False}


def test_keras_import_fills_the_builder(client):
    code = (
        "model = tf.keras.models.Sequential([\n"
        "    tf.keras.layers.Flatten(input_shape=(28, 28)),\n"
        "    tf.keras.layers.Dense(128, activation='relu'),\n"
        "    tf.keras.layers.Dense(10, activation='softmax')\n"
        "])\n"
    )
    html = client.post("/architectures/editor", data={"keras_code": code, "action": "import"}, headers=HTMX).text
    assert re.search(r'id="total-params">101,770<', html)
    assert "Imported 3 layers" in html and "compile/fit" not in html
    code += ("model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])\n"
             "model.fit(x_train, y_train, epochs=5)\n")
    html = client.post("/architectures/editor", data={"keras_code": code, "action": "import"}, headers=HTMX).text
    assert "Its compile/fit settings: adam lr 0.001 · cross entropy · 5 epochs" in html


def form_value(form: str, name: str) -> str:
    """The value a launch-form input or select shows."""
    select = re.search(rf'<select id="[^"]*" name="{re.escape(name)}".*?</select>', form, re.S)
    if select:
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', select.group(0))
        return chosen.group(1) if chosen else ""
    return re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', form).group(1)


def test_imported_settings_are_saved_with_an_architecture_and_fill_in_the_launch_form(client):
    saved = client.post("/architectures", data=MNIST_FORM, follow_redirects=False).headers["location"]
    architecture_id = int(re.search(r"/architectures/(\d+)", saved).group(1))
    assert client.get(f"/api/architectures/{architecture_id}").json()["training"] == {}
    code = ("model = Sequential([Flatten(input_shape=(28, 28)), Dense(64, activation='relu'), Dense(10)])\n"
            "model.compile(optimizer=SGD(learning_rate=0.05, momentum=0.9), loss='mse')\n"
            "model.fit(x, y, epochs=7, batch_size=128, callbacks=[EarlyStopping(patience=2)])\n")
    html = client.post("/architectures/editor", data={"keras_code": code, "action": "import",
                                                     "architecture_id": str(architecture_id)}, headers=HTMX).text
    assert "Saving keeps them with the architecture" in html and "train-with-settings" not in html
    updated = client.post(f"/architectures/{architecture_id}", data={**MNIST_FORM, "keras_code": code},
                          follow_redirects=False)
    assert updated.headers["location"] == f"/architectures/{architecture_id}?saved=1"  # nothing rides in the URL
    training = client.get(f"/api/architectures/{architecture_id}").json()["training"]
    assert training["optimizer"] == {"name": "sgd", "lr": 0.05, "momentum": 0.9} and training["epochs"] == 7

    form = client.get(f"/runs/new?architecture_id={architecture_id}").text
    assert form_value(form, "model") == f"architecture:{architecture_id}"
    assert "The training settings saved with “MNIST MLP” are filled in." in form
    for name, value in (("config.epochs", "7"), ("config.batch_size", "128"), ("config.optimizer.name", "sgd"),
                        ("config.optimizer.lr", "0.05"), ("config.optimizer.momentum", "0.9"), ("config.loss", "mse"),
                        ("config.early_stopping.patience", "2")):
        assert form_value(form, name) == value, name
    assert re.search(r'name="config.early_stopping.enabled"[^>]*checked', form)
    # A link's own settings still win over the saved ones.
    assert form_value(client.get(f"/runs/new?architecture_id={architecture_id}&config.epochs=3").text,
                      "config.epochs") == "3"
    # Saving again without Keras code keeps them.
    client.post(f"/architectures/{architecture_id}", data={**MNIST_FORM, "name": "MNIST MLP 2"})
    assert client.get(f"/api/architectures/{architecture_id}").json()["training"] == training


def test_imported_settings_survive_saving_a_new_architecture(client):
    code = ("model = Sequential([Flatten(input_shape=(8, 8)), Dense(32, activation='relu'), "
            "Dense(10, activation='softmax')])\n"
            "model.compile(optimizer='rmsprop', loss='sparse_categorical_crossentropy', metrics=['accuracy'])\n"
            "model.fit(x, y, batch_size=128, epochs=2, validation_split=0.1)\n")
    imported = client.post("/architectures/editor", data={"keras_code": code, "action": "import"}, headers=HTMX).text
    assert "Saving keeps them with the architecture" in imported
    digits_form = {**MNIST_FORM, "name": "digits", "input_shape": "1, 8, 8", "layers-1-units": "32", "keras_code": code}
    location = client.post("/architectures", data=digits_form, follow_redirects=False).headers["location"]
    architecture_id = int(re.search(r"/architectures/(\d+)\?saved=1$", location).group(1))
    page = client.get(location).text
    assert "The launch form starts from its training settings: rmsprop lr 0.001 · cross entropy · 2 epochs · " \
           "batch 128 · validation split 0.1." in page
    assert "Trains with: rmsprop lr 0.001" in client.get(f"/architectures/{architecture_id}").text
    link = unescape(re.search(r'<a href="([^"]+)" id="train-with-settings">', page).group(1))
    assert link == f"/runs/new?architecture_id={architecture_id}"
    # Every way to the launch form: the notice's link, the page's Train…, the list's Train….
    assert f'href="/runs/new?architecture_id={architecture_id}" id="train-link"' in page
    assert f'href="/runs/new?architecture_id={architecture_id}" aria-label="train digits"' in client.get(
        "/architectures").text
    form = client.get(link).text
    for name, value in (("config.optimizer.name", "rmsprop"), ("config.epochs", "2"), ("config.batch_size", "128"),
                        ("config.val_split", "0.1"), ("config.loss", "cross_entropy"),
                        ("dataset", "digits")):  # the one data set here with 8x8 samples and 10 classes
        assert form_value(form, name) == value, name
    plain = client.post("/architectures", data={**MNIST_FORM, "name": "no keras"}, follow_redirects=False)
    plain_id = int(re.search(r"/architectures/(\d+)", plain.headers["location"]).group(1))
    assert client.get(f"/api/architectures/{plain_id}").json()["training"] == {}  # nothing imported: nothing saved
    assert "form-notice" not in client.get(f"/runs/new?architecture_id={plain_id}").text


def test_keras_import_errors_show_line_numbers_next_to_the_box(client):
    code = "model = Sequential([\n    Dense(10),\n    Frobnicate(3),\n])\n"
    html = client.post("/architectures/editor", data={"keras_code": code, "action": "import"}, headers=HTMX).text
    slot_text = slot(html, "import-errors")
    assert "line 3" in slot_text


def test_save_creates_the_architecture_and_lists_it(client):
    response = client.post("/architectures", data=MNIST_FORM, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert re.fullmatch(r"/architectures/\d+\?saved=1", location)
    page = client.get(location).text
    assert "Saved “MNIST MLP”" in page and re.search(r'id="total-params">101,770<', page)

    [saved] = client.get("/api/architectures").json()["items"]
    assert saved["name"] == "MNIST MLP" and saved["total_params"] == 101_770
    assert saved["spec"] == {"input_shape": [1, 28, 28], "layers": [
        {"type": "Flatten"},
        {"type": "Dense", "units": 128, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]}

    listing = client.get("/architectures").text
    assert f'href="/architectures/{saved["id"]}"' in listing and "101,770" in listing
    # From the saved architecture to training it: the launch form opens with it chosen.
    train = f'href="/runs/new?architecture_id={saved["id"]}"'
    assert train in page and train in listing
    form = client.get(f"/runs/new?architecture_id={saved['id']}").text
    assert re.search(rf'<option value="architecture:{saved["id"]}" selected>', form)


def test_save_from_htmx_redirects_with_a_header(client):
    response = client.post("/architectures", data=MNIST_FORM, headers=HTMX)
    assert response.status_code == 200
    assert re.fullmatch(r"/architectures/\d+\?saved=1", response.headers["HX-Redirect"])


def test_update_saves_changes(client):
    created = client.post("/architectures", data=MNIST_FORM, follow_redirects=False).headers["location"]
    architecture_id = int(re.search(r"/architectures/(\d+)", created).group(1))
    form = {**MNIST_FORM, "name": "Wider MLP", "layers-1-units": "256"}
    response = client.post(f"/architectures/{architecture_id}", data=form, follow_redirects=False)
    assert response.status_code == 303
    saved = client.get(f"/api/architectures/{architecture_id}").json()
    assert saved["name"] == "Wider MLP" and saved["total_params"] == 784 * 256 + 256 + 256 * 10 + 10


def test_conflicting_name_shows_the_error_next_to_the_name_and_saves_nothing(client):
    client.post("/architectures", data=MNIST_FORM)
    response = client.post("/architectures", data={**MNIST_FORM, "layers-1-units": "64"}, headers=HTMX)
    assert response.status_code == 422
    slot_text = slot(response.text, "name-errors")
    assert "already exists" in slot_text
    assert client.get("/api/architectures").json()["total"] == 1


def test_invalid_spec_or_missing_name_saves_nothing(client):
    bad = {**MNIST_FORM, "layers-0-type": "Dropout", "layers-0-rate": "0.2"}  # Dense on (1, 28, 28)
    response = client.post("/architectures", data=bad, headers=HTMX)
    assert response.status_code == 422
    assert "add a Flatten before it" in " ".join(errors_in(layer_item(response.text, 1)))
    response = client.post("/architectures", data={**MNIST_FORM, "name": "  "}, headers=HTMX)
    assert response.status_code == 422
    assert "give the architecture a name" in slot(response.text, "name-errors")
    response = client.post("/architectures", data={**MNIST_FORM, "name": "x" * 201}, headers=HTMX)
    assert response.status_code == 422
    assert "name: string should have at most 200 characters" in slot(response.text, "name-errors")
    assert client.get("/api/architectures").json()["total"] == 0


def test_unknown_architecture_and_preset_are_404_pages(client):
    response = client.get("/architectures/4242")
    assert response.status_code == 404
    assert "<html" in response.text and "does not exist" in response.text
    assert client.post("/architectures/4242", data=MNIST_FORM).status_code == 404
    assert client.get("/architectures/new?preset=no-such-preset").status_code == 404


def test_every_layer_type_and_field_has_a_form():
    assert set(LAYER_FORMS) == set(LAYER_TYPES)
    for layer_type, model in LAYER_TYPES.items():
        fields = {f.name for f in LAYER_FORMS[layer_type]}
        assert fields == set(model.model_fields) - {"type"}, layer_type


@pytest.mark.parametrize("spec", [
    {"input_shape": [3, 32, 32], "layers": [
        {"type": "Conv2D", "filters": 32, "kernel_size": [3, 5], "strides": 2, "padding": "same", "use_bias": False},
        {"type": "MaxPooling2D", "pool_size": 3, "strides": 1}, {"type": "BatchNormalization", "momentum": 0.9},
        {"type": "GlobalAveragePooling2D"}, {"type": "Dropout", "rate": 0.5}, {"type": "Dense", "units": 10}]},
    {"input_shape": [1, 28, 28], "layers": [
        {"type": "Reshape", "target_shape": [28, -1]},
        {"type": "LSTM", "units": 32, "return_sequences": True, "bidirectional": True},
        {"type": "SimpleRNN", "units": 8, "activation": "relu"}, {"type": "Dense", "units": 10}]},
    {"input_shape": [3, 64, 64], "layers": [
        {"type": "Pretrained", "backbone": "mobilenet_v3_small", "weights": "none", "trainable": True},
        {"type": "Dense", "units": 5, "activation": "softmax"}]},
])
def test_spec_to_form_and_back_is_lossless(spec):
    editor = Editor.from_spec(spec)
    form = {"input_shape": editor.input_shape}
    for index, layer in enumerate(editor.layers):
        form[f"layers-{index}-type"] = layer.type
        for name, value in layer.values.items():
            form[f"layers-{index}-{name}"] = ["0", "1"] if value is True else ["0"] if value is False else value
    assert Editor.from_form(_form_data(form)).spec() == spec


def _form_data(fields: dict) -> object:
    from starlette.datastructures import FormData

    items = []
    for key, value in fields.items():
        items.extend((key, v) for v in (value if isinstance(value, list) else [value]))
    return FormData(items)


def test_keras_code_without_an_input_shape_says_where_to_add_one(client):
    code = "model = Sequential([Flatten(), Dense(10)])"
    html = client.post("/architectures/editor", data={"keras_code": code, "action": "import"}, headers=HTMX).text
    assert "Flatten(input_shape=(28, 28))" in slot(html, "import-errors")
