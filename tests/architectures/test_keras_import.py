"""Keras source → spec, read with `ast` (never executed), as pasted from tutorials and web pages."""

from __future__ import annotations

import pytest

from app.architectures.keras_import import (
    KerasImportError,
    import_keras,
    import_keras_source,
    import_keras_with_notes,
)
from app.architectures.summary import summarize
from app.runs.schemas import TrainConfigIn, usable_config

MNIST_SNIPPET = """model = tf.keras.models.Sequential([
    tf.keras.layers.Flatten(input_shape=(28, 28)),
    tf.keras.layers.Dense(128, activation='relu'),
    tf.keras.layers.Dense(10, activation='softmax')
])
"""

CIFAR_SNIPPET = """model = models.Sequential()
model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(32, 32, 3)))
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Conv2D(64, (3, 3), activation='relu'))
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Conv2D(64, (3, 3), activation='relu'))
model.add(layers.Flatten())
model.add(layers.Dense(64, activation='relu'))
model.add(layers.Dense(10))
"""


def curly(code: str) -> str:
    """What a web page does to quotes and spaces."""
    out, opened = [], False
    for char in code:
        if char == "'":
            out.append("\u2019" if opened else "\u2018")
            opened = not opened
        else:
            out.append(char)
    return "".join(out).replace("    ", "\u00a0\u00a0\u00a0\u00a0", 1)


@pytest.mark.parametrize("code", [MNIST_SNIPPET, curly(MNIST_SNIPPET)])
def test_mnist_snippet(code):
    spec = import_keras(code)
    assert spec == {"input_shape": [1, 28, 28], "layers": [
        {"type": "Flatten"},
        {"type": "Dense", "units": 128, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]}
    assert summarize(spec).total_params == 101_770


@pytest.mark.parametrize("code", [CIFAR_SNIPPET, curly(CIFAR_SNIPPET)])
def test_cifar_snippet_in_model_add_style(code):
    spec = import_keras(code)
    assert spec["input_shape"] == [3, 32, 32]
    assert spec["layers"][0] == {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"}
    assert spec["layers"][1] == {"type": "MaxPooling2D", "pool_size": 2}
    assert summarize(spec).total_params == 122_570


def test_repl_prompts_imports_calls_and_notes():
    code = (
        ">>> import tensorflow as tf\n"
        ">>> from tensorflow.keras import layers, regularizers\n"
        ">>> model = tf.keras.Sequential([\n"
        "...     keras.Input(shape=(28, 28, 1)),\n"
        "...     layers.Conv2D(8, 3, padding=\u201csame\u201d, kernel_regularizer=regularizers.l2(0.01)),\n"
        "...     layers.Flatten(),\n"
        "...     layers.Dropout(0.2),\n"
        "...     layers.Dense(10),\n"
        "... ])\n"
        "<Sequential name=sequential, built=True>\n"
        ">>> model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n"
        ">>> model.fit(x_train, y_train, epochs=5)\n"
    )
    spec, notes = import_keras_with_notes(code)
    assert spec["input_shape"] == [1, 28, 28]
    assert [layer["type"] for layer in spec["layers"]] == ["Conv2D", "Flatten", "Dropout", "Dense"]
    assert spec["layers"][2] == {"type": "Dropout", "rate": 0.2}
    assert any("line 5" in note and "kernel_regularizer" in note for note in notes)
    assert not any("compile" in note or "fit" in note for note in notes)  # they became run settings
    assert import_keras_source(code)[2] == {"optimizer": {"name": "adam", "lr": 0.001}, "loss": "cross_entropy",
                                            "epochs": 5}
    assert summarize(spec).total_params == 8 * 9 + 8 + 8 * 28 * 28 * 10 + 10


def test_compile_and_fit_become_run_settings_and_what_has_no_counterpart_is_noted():
    code = """
EPOCHS = 8
model = Sequential([layers.Flatten(input_shape=(8, 8)), layers.Dense(10, activation="softmax")])
opt = tf.keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True, epsilon=1e-7)
model.compile(opt, tf.keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
stop = tf.keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=2, restore_best_weights=True)
history = model.fit(x_train, y_train, 64, EPOCHS, validation_split=0.2, callbacks=[stop, TensorBoard("logs")])
"""
    _, notes, training = import_keras_source(code)
    assert training == {
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "eps": 1e-7},
        "loss": "cross_entropy", "batch_size": 64, "epochs": 8, "val_split": 0.2,
        "early_stopping": {"monitor": "val_accuracy", "patience": 2, "min_delta": 0.0, "restore_best": True}}
    assert any("line 7" in note and "callback" in note for note in notes)
    usable = usable_config(training, notes)  # SGD takes no epsilon here: dropped, and said so
    assert usable["optimizer"] == {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True}
    assert "dropped the optimizer's eps" in notes[-1]
    TrainConfigIn.model_validate(usable)


@pytest.mark.parametrize("compile_call, expected, note", [
    ("model.compile(optimizer='adagrad', loss='mse')", {"loss": "mse"}, "optimizer adagrad"),
    ("model.compile(optimizer=tf.keras.optimizers.Adam(1e-4), loss='hinge')",
     {"optimizer": {"name": "adam", "lr": 1e-4}}, "loss hinge"),
    ("model.compile(optimizer=RMSprop(learning_rate=lr), loss='binary_crossentropy')",
     {"optimizer": {"name": "rmsprop", "lr": 0.001}, "loss": "binary_cross_entropy"}, "could not read the optimizer's lr"),
])
def test_unknown_training_settings_are_noted_not_errors(compile_call, expected, note):
    code = f"model = Sequential([layers.Dense(10, input_shape=(4,))])\n{compile_call}\n"
    _, notes, training = import_keras_source(code)
    assert training == expected
    assert any(note in n for n in notes), notes


def test_indented_block_bare_names_constants_and_l2():
    code = """
        num_classes = 10
        model = Sequential()
        model.add(Dense(64, input_dim=20, kernel_regularizer=l2(0.01)))
        model.add(Activation('relu'))
        model.add(BatchNormalization(momentum=0.9))
        model.add(Dense(num_classes, activation=tf.nn.softmax))
    """
    spec = import_keras(code)
    assert spec == {"input_shape": [20], "layers": [
        {"type": "Dense", "units": 64}, {"type": "Activation", "activation": "relu"},
        {"type": "BatchNormalization", "momentum": 0.9},
        {"type": "Dense", "units": 10, "activation": "softmax"}]}


def test_sequences_stay_timesteps_by_features_and_bidirectional_and_embedding():
    spec = import_keras("model = keras.Sequential([layers.Bidirectional(layers.LSTM(32, return_sequences=True), "
                        "input_shape=(28, 28)), layers.GRU(16), layers.Dense(10)])")
    assert spec["input_shape"] == [28, 28]
    assert spec["layers"][0] == {"type": "LSTM", "units": 32, "return_sequences": True, "bidirectional": True}
    spec = import_keras("model = Sequential([Embedding(5000, 32, input_length=100), SimpleRNN(8), Dense(1, "
                        "activation='sigmoid')])")
    assert spec["input_shape"] == [100]
    assert spec["layers"][0] == {"type": "Embedding", "input_dim": 5000, "output_dim": 32}
    assert summarize(spec).output_activation == "sigmoid"


def test_reshape_targets_become_channels_first():
    spec = import_keras("model = Sequential([Reshape((28, 28, 1), input_shape=(784,)), Conv2D(4, 3), Flatten(), "
                        "Dense(10)])")
    assert spec["input_shape"] == [784]
    assert spec["layers"][0] == {"type": "Reshape", "target_shape": [1, 28, 28]}
    summarize(spec)


def test_keras_applications_backbone():
    code = """
base = tf.keras.applications.MobileNetV3Small(include_top=False, weights='imagenet', input_shape=(96, 96, 3))
base.trainable = False
model = tf.keras.Sequential([base, layers.GlobalAveragePooling2D(), layers.Dense(5, activation='softmax')])
"""
    spec = import_keras(code)
    assert spec["input_shape"] == [3, 96, 96]
    assert spec["layers"][0] == {"type": "Pretrained", "backbone": "mobilenet_v3_small", "weights": "imagenet",
                                 "trainable": False}
    assert [layer["type"] for layer in spec["layers"]] == ["Pretrained", "Dense"]


def test_unsupported_constructs_report_their_lines():
    code = (
        "import tensorflow as tf\n"
        "model = Sequential()\n"
        "model.add(Conv2D(8, 3, input_shape=(28, 28, 1)))\n"
        "model.add(layers.Conv3D(8, 3))\n"
        "model.add(Dense(10, activation='swish'))\n"
        "model.add(Conv2D(8, 3, dilation_rate=2))\n"
    )
    with pytest.raises(KerasImportError) as caught:
        import_keras(code)
    details = caught.value.details
    assert [d["line"] for d in details] == [4, 5, 6]
    assert details[0]["message"].startswith("line 4: layer 'Conv3D' is not supported; supported: Dense, Conv2D")
    assert "activation 'swish' is not supported" in details[1]["message"]
    assert "dilation_rate=2" in details[2]["message"]
    assert caught.value.status_code == 422 and "line 4" in caught.value.message


@pytest.mark.parametrize(("code", "line", "words"), [
    ("x = 1\nmodel = Sequential([Dense(10)(inputs)])", 2, "expected a layer call"),
    ("inputs = Input((4,))\noutputs = layers.Dense(2)(inputs)", 2, "functional API"),
    ("class Net(keras.Model):\n    pass", 1, "subclassed models"),
    ("model = Sequential([\n    Dense(10,\n", 2, "not valid Python"),
    ("import numpy as np\nprint('hi')", None, "no Sequential model found"),
    ("model = Sequential([Dense(units)])", 1, "without running the code"),
])
def test_errors_name_the_line(code, line, words):
    with pytest.raises(KerasImportError) as caught:
        import_keras(code)
    [detail] = caught.value.details
    assert detail["line"] == line and words in detail["message"]


def test_code_is_never_executed(tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w')\nmodel = Sequential([Dense(2, input_shape=(3,))])"
    import_keras(code)
    assert not marker.exists()


KERAS_IO_CONVNET = """import keras
from keras import layers

num_classes = 10
input_shape = {shape}
kernel = {kernel}

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=kernel, activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dense(num_classes, activation="softmax"),
    ]
)
"""


@pytest.mark.parametrize("shape, kernel", [("(28, 28, 1)", "(3, 3)"), ("[28, 28, 1]", "[3, 3]"),
                                           ("(28, 28, 1)", "3")])
def test_module_level_constants_resolve_as_tuples_and_lists(shape, kernel):
    """keras.io's convnet names its shapes (`input_shape = (28, 28, 1)`): tuple and list constants both read."""
    spec = import_keras(KERAS_IO_CONVNET.format(shape=shape, kernel=kernel))
    assert spec == {"input_shape": [1, 28, 28], "layers": [
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]}
    assert summarize(spec).output_shape == [10]


def test_constant_input_shape_on_the_first_layer_and_units():
    code = """shape = (8, 8)
hidden = (32)
model = Sequential([Flatten(input_shape=shape), Dense(hidden, activation='relu'), Dense(units=10)])
"""
    spec = import_keras(code)
    assert spec["input_shape"] == [1, 8, 8]
    assert [layer.get("units") for layer in spec["layers"]] == [None, 32, 10]


def test_constant_pair_sizes_read_as_lists():
    code = """pool = (2, 3)
model = Sequential([Conv2D(4, (3, 3), input_shape=(12, 12, 1)), MaxPooling2D(pool_size=pool), Flatten()])
"""
    assert import_keras(code)["layers"][1]["pool_size"] == [2, 3]


def test_source_too_long_or_too_deep_is_a_clear_import_error():
    with pytest.raises(KerasImportError, match="at most 200000"):
        import_keras_source("# " + "x" * 200_000)
    with pytest.raises(KerasImportError, match="nests too deeply"):
        import_keras_source("x = 1" + " + 1" * 40_000)
