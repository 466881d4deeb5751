"""The tutorial's models, ready to train: the seed's presets. Torch-free."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.core.errors import NotFound


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
