"""The tutorial's models, ready to train (the seed's presets), fitted to any data set they can take, and
the default model for a data set that has none. Torch-free.

`model_for` is the one place a run's preset or default model becomes a spec: the server (runs service)
and `trainboard run` in this process both call it, so they train the same layers.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from pydantic import BaseModel

from app.architectures import service
from app.core.errors import InvalidInput, NotFound


class Preset(BaseModel):
    name: str
    title: str
    description: str
    dataset: str  # the data set it is meant for, by registry name
    spec: dict[str, Any]


def _dense(units: int, activation: str = "linear") -> dict[str, Any]:
    return {"type": "Dense", "units": units, "activation": activation}


def _conv(filters: int) -> dict[str, Any]:
    return {"type": "Conv2D", "filters": filters, "kernel_size": 3, "activation": "relu"}


_PRESETS = [
    Preset(
        name="mnist-mlp",
        title="MNIST multilayer perceptron",
        description="Flatten each 28x28 digit into 784 pixels and classify it with one hidden layer of 128 units.",
        dataset="mnist",
        spec={"input_shape": [1, 28, 28],
              "layers": [{"type": "Flatten"}, _dense(128, "relu"), _dense(10, "softmax")]},
    ),
    Preset(
        name="mnist-mlp-dropout",
        title="MNIST perceptron with dropout",
        description="The same perceptron with 20% dropout after the hidden layer, which curbs overfitting.",
        dataset="mnist",
        spec={"input_shape": [1, 28, 28],
              "layers": [{"type": "Flatten"}, _dense(128, "relu"), {"type": "Dropout", "rate": 0.2},
                         _dense(10, "softmax")]},
    ),
    Preset(
        name="cifar10-cnn",
        title="CIFAR-10 convolutional network",
        description="Three 3x3 convolutions with max pooling learn image features that a small dense head classifies.",
        dataset="cifar10",
        spec={"input_shape": [3, 32, 32],
              "layers": [_conv(32), {"type": "MaxPooling2D", "pool_size": 2}, _conv(64),
                         {"type": "MaxPooling2D", "pool_size": 2}, _conv(64), {"type": "Flatten"},
                         _dense(64, "relu"), _dense(10)]},
    ),
    Preset(
        name="mnist-lstm",
        title="MNIST read row by row with an LSTM",
        description="Read each digit's 28 rows as 28 timesteps of 28 pixels and classify the LSTM's last state.",
        dataset="mnist",
        # The data set's samples are (1, 28, 28): Reshape drops the channel axis to get (T, F).
        spec={"input_shape": [1, 28, 28],
              "layers": [{"type": "Reshape", "target_shape": [28, 28]}, {"type": "LSTM", "units": 128},
                         _dense(10, "softmax")]},
    ),
    Preset(
        name="transfer-resnet18",
        title="CIFAR-10 transfer learning with ResNet-18",
        description="Reuse a frozen ImageNet ResNet-18 as a feature extractor and train only a new 10-class layer.",
        dataset="cifar10",
        spec={"input_shape": [3, 32, 32],
              "layers": [{"type": "Pretrained", "backbone": "resnet18", "weights": "imagenet", "trainable": False},
                         _dense(10, "softmax")]},
    ),
]
_BY_NAME = {preset.name: preset for preset in _PRESETS}


def list_presets() -> list[Preset]:
    """All presets, in tutorial order (copies: callers may change them freely)."""
    return [preset.model_copy(deep=True) for preset in _PRESETS]


def get_preset(name: str) -> Preset:
    """One preset by name; NotFound lists the known names."""
    preset = _BY_NAME.get(name)
    if preset is None:
        raise NotFound(f"no preset named '{name}'; known presets: {', '.join(_BY_NAME)}")
    return preset.model_copy(deep=True)


class DataShape(Protocol):
    """What a model needs to know of its data set (a `DatasetInfo` is one)."""

    name: str
    kind: str
    input_shape: list[int]
    num_classes: int


def model_for(preset: str | None, data: DataShape) -> dict[str, Any]:
    """The spec a run trains on `data`: the named preset fitted to it, or (None) the default model."""
    return fit_preset(preset, data) if preset is not None else default_spec(data)


def default_spec(data: DataShape) -> dict[str, Any]:
    """A model for any data set: for images, 3x3 convolutions (16, 32, then 64 filters, `same` padding),
    each followed by 2x2 max pooling until the picture is 8 pixels or less across (at most 4 blocks), then
    Dense 64 and the output layer; for anything else an MLP with two hidden layers of 32 to 256 units
    (the power of two that holds the features plus the classes)."""
    shape, classes = list(data.input_shape), data.num_classes
    head = [_dense(64, "relu"), _dense(classes, "softmax")]
    if data.kind == "image" and len(shape) == 3 and min(shape[1:]) >= 8:
        layers: list[dict[str, Any]] = []
        size = min(shape[1:])
        for block in range(4):
            if block >= 2 and size <= 8:
                break
            layers += [{**_conv(min(16 * 2**block, 64)), "padding": "same"}, {"type": "MaxPooling2D", "pool_size": 2}]
            size //= 2
        return {"input_shape": shape, "layers": [*layers, {"type": "Flatten"}, *head]}
    features = math.prod(shape)
    hidden = min(256, max(32, 2 ** math.ceil(math.log2(features + classes))))
    flatten = [{"type": "Flatten"}] if len(shape) > 1 else []
    return {"input_shape": shape, "layers": [*flatten, _dense(hidden, "relu"), _dense(hidden, "relu"),
                                             _dense(classes, "softmax")]}


def fit_preset(name: str, data: DataShape) -> dict[str, Any]:
    """The preset's layers on `data`: its input shape becomes the data set's (a first Reshape that only
    drops the channel axis follows it) and its last Dense gets one unit per class. When that is not
    enough (a convolution on a flat vector, an image too small for its poolings), InvalidInput says so."""
    preset = get_preset(name)
    spec = preset.spec
    if list(data.input_shape) == spec["input_shape"] and _output_units(spec) == data.num_classes:
        return spec
    made_for, shape = spec["input_shape"], list(data.input_shape)
    first, last = spec["layers"][0], spec["layers"][-1]
    if first["type"] == "Reshape" and [1, *first["target_shape"]] == made_for and shape[0] == 1 and len(shape) > 1:
        first["target_shape"] = shape[1:]
    if last["type"] == "Dense":
        last["units"] = data.num_classes
    spec["input_shape"] = shape
    try:
        service.validate(spec=spec)
    except InvalidInput as exc:
        reason = exc.message
        raise InvalidInput(
            f"preset '{name}' is made for {preset.dataset} ({_shape(made_for)}) and cannot take data set "
            f"'{data.name}' ({_shape(shape)}, {data.num_classes} classes) by changing only its input and output "
            f"layers: {reason}. Choose the default model or one made for this data set",
            [{"field": "preset", "message": f"does not fit {data.name}: {reason}"}],
        ) from exc
    return spec


def _output_units(spec: dict[str, Any]) -> int | None:
    last = spec["layers"][-1]
    return last.get("units") if last["type"] == "Dense" else None


def _shape(shape: list[int]) -> str:
    return "x".join(str(size) for size in shape)
