"""The CIFAR-10 CNN and a frozen-backbone transfer model train on CIFAR-shaped synthetic data."""

from __future__ import annotations

import torch

from tests.engine.engine_testing import CNN_SPEC, cifar_like, run

TRANSFER_SPEC = {"layers": [{"type": "Pretrained", "backbone": "resnet18", "weights": "none", "trainable": False},
                            {"type": "Dense", "units": 10, "activation": "softmax"}]}


def test_cifar_cnn_one_epoch(tmp_path):
    result, sink = run(tmp_path, CNN_SPEC, cifar_like(64), epochs=1, batch_size=16)
    assert result.epochs_completed == 1 and result.test_accuracy is not None
    assert sink.of("epoch")[0]["step"] == 4
    assert {a["name"] for a in sink.of("artifact")} == {"weights", "torchscript", "onnx"}


def test_frozen_resnet18_transfer_one_epoch(tmp_path):
    result, _ = run(tmp_path, TRANSFER_SPEC, cifar_like(32), epochs=2, batch_size=16)
    assert result.epochs_completed == 2
    first = torch.load(tmp_path / "run" / "ckpt" / "epoch-0001.pt", weights_only=True)["model"]
    second = torch.load(tmp_path / "run" / "ckpt" / "epoch-0002.pt", weights_only=True)["model"]
    backbone = [k for k in first if k.startswith("layers.0.")]
    head = [k for k in first if not k.startswith("layers.0.")]
    assert backbone and head
    assert all(torch.equal(first[k], second[k]) for k in backbone)  # frozen, BatchNorm stats included
    assert not all(torch.equal(first[k], second[k]) for k in head)
