"""Helpers shared by the engine tests: tiny specs, jobs and data sets (not a test module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.datasets import registry
from app.engine.loop import train
from app.engine.types import DatasetArrays, ListSink, TrainConfig, TrainJob, TrainResult

# Tiny models gain nothing from intra-op threads, and the suite runs two xdist workers on two
# cores: one thread each avoids oversubscription (spinning OpenMP threads cost ~10x per step).
torch.set_num_threads(1)


def mlp_spec(units: int = 32, classes: int = 10, activation: str = "softmax") -> dict[str, Any]:
    """Flatten, Dense(units, relu), Dense(classes, activation)."""
    return {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": units, "activation": "relu"},
                       {"type": "Dense", "units": classes, "activation": activation}]}


CNN_SPEC = {"layers": [
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 64, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}

LSTM_SPEC = {"layers": [{"type": "LSTM", "units": 24}, {"type": "Dense", "units": 2, "activation": "softmax"}]}


def dataset(name: str, data_dir: Path, **kwargs: Any) -> DatasetArrays:
    """A built-in data set materialized under a test's own data dir."""
    return registry.load_dataset(name, data_dir, **kwargs)


def subset(data: DatasetArrays, n_train: int, n_eval: int | None = None) -> DatasetArrays:
    """The first samples of each split: smaller, faster tests."""
    n_eval = n_eval or n_train
    return DatasetArrays(data.name, data.x_train[:n_train], data.y_train[:n_train], data.x_val[:n_eval],
                         data.y_val[:n_eval], data.x_test[:n_eval], data.y_test[:n_eval], data.class_names,
                         data.input_shape, data.mean, data.std)


def cifar_like(n: int = 64, seed: int = 0) -> DatasetArrays:
    """CIFAR-shaped synthetic images (uint8, 3x32x32, 10 classes) whose class sets the mean colour."""
    rng = np.random.default_rng(seed)

    def make(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, count)
        x = rng.integers(0, 64, (count, 3, 32, 32)) + (y * 19)[:, None, None, None]
        return x.astype(np.uint8), y.astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = make(n), make(n // 4), make(n // 4)
    return DatasetArrays("cifar_like", xt, yt, xv, yv, xs, ys, [str(i) for i in range(10)], [3, 32, 32],
                         [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


def run(tmp_path: Path, spec: dict[str, Any], data: DatasetArrays, *, sink: ListSink | None = None,
        name: str = "run", resume_from: Path | None = None, fork: bool = False, should_stop=None,
        **config: Any) -> tuple[TrainResult, ListSink]:
    """Train `spec` on `data` with TrainConfig(**config) (device cpu); returns (result, sink)."""
    config.setdefault("device", "cpu")
    sink = sink or ListSink()
    job = TrainJob(spec=spec, config=TrainConfig(**config), checkpoint_dir=tmp_path / name / "ckpt",
                   artifacts_dir=tmp_path / name / "export", resume_from=resume_from, fork=fork)
    result = train(job, data, sink, should_stop)
    return result, sink
