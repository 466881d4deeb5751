"""The seed's numbers on the real MNIST files: the tutorial's MLP reaches 97.4% in 5 epochs."""

from __future__ import annotations

import statistics

import pytest
import torch

from app.datasets import registry
from app.engine.loop import train
from app.engine.types import ListSink, TrainConfig, TrainJob

SEED_SPEC = {"input_shape": [1, 28, 28], "layers": [
    {"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.mark.slow
def test_seed_mlp_on_real_mnist_reaches_tutorial_accuracy(tmp_path, mnist_files):
    """Flatten → Dense 128 relu → Dense 10 softmax, Adam 1e-3, batch 32, 5 epochs, all 60,000 images
    (the tutorial's `fit(x_train, y_train, epochs=5)`), pixels scaled to [0, 1].

    One run's test accuracy depends on its seed (0.9729–0.9781 over seeds 0–5 at one thread here),
    so the claim is about the recipe: the median of three seeds reaches 0.974, and none is far off."""
    torch.set_num_threads(1)  # the same arithmetic on every machine size
    registry.import_idx("mnist", mnist_files, tmp_path)
    data = registry.load_dataset("mnist", tmp_path, val_split=0.0, seed=0)
    assert len(data.y_train) == 60_000 and len(data.y_test) == 10_000
    accuracies = []
    for seed in (0, 1, 2):
        config = TrainConfig(epochs=5, batch_size=32, seed=seed, device="cpu", val_split=0.0)
        job = TrainJob(spec=SEED_SPEC, config=config, checkpoint_dir=tmp_path / f"ckpt-{seed}",
                       artifacts_dir=tmp_path / f"export-{seed}")
        sink = ListSink()
        result = train(job, data, sink)
        assert [e["epoch"] for e in sink.of("epoch")] == [1, 2, 3, 4, 5]
        accuracies.append(result.test_accuracy)
    assert statistics.median(accuracies) >= 0.974, f"test accuracies {accuracies}: median under 0.974"
    assert min(accuracies) >= 0.970, f"test accuracies {accuracies}: one seed far under the recipe"
