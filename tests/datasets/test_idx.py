"""Importing local MNIST / CIFAR-10 files: checksums, layouts and clear errors."""

from __future__ import annotations

import gzip
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from app.core.errors import InvalidInput
from app.datasets import idx, registry


def test_import_real_mnist(tmp_path, mnist_files):
    info = registry.import_idx("mnist", mnist_files, tmp_path)
    assert (info.train_size, info.test_size, info.available) == (60000, 10000, True)
    data = registry.load_dataset("mnist", tmp_path)
    assert data.x_train.shape[1:] == (1, 28, 28) and data.x_train.dtype == np.uint8
    assert len(data.y_train) + len(data.y_val) == 60000
    png = registry.render_sample_png("mnist", tmp_path, 0)
    assert Image.open(io.BytesIO(png)).size == (112, 112)


def test_corrupted_copy_is_refused(tmp_path, mnist_files):
    src = tmp_path / "src"
    shutil.copytree(mnist_files, src)
    raw = bytearray(gzip.decompress((src / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    (src / "t10k-labels-idx1-ubyte.gz").unlink()
    (src / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))  # uncompressed files work too
    with pytest.raises(InvalidInput, match="checksum mismatch for t10k-labels-idx1-ubyte"):
        registry.import_idx("mnist", src, tmp_path / "data")
    assert not (tmp_path / "data" / "datasets" / "mnist").exists()


def test_missing_files_and_unknown_names(tmp_path):
    with pytest.raises(InvalidInput, match="train-images-idx3-ubyte"):
        registry.import_idx("fashion_mnist", tmp_path, tmp_path)
    with pytest.raises(InvalidInput, match="only mnist, fashion_mnist and cifar10"):
        registry.import_idx("digits", tmp_path, tmp_path)


def test_torchvision_layout_is_found_offline(tmp_path, mnist_files):
    shutil.copytree(mnist_files, tmp_path / "MNIST" / "raw")
    assert registry.get_dataset_info("mnist", tmp_path).available
    data = registry.load_dataset("mnist", tmp_path, download=False)
    assert len(data.y_test) == 10000


def test_offline_without_files_says_how_to_import(tmp_path):
    with pytest.raises(registry.DatasetUnavailable, match="trainboard data import mnist FOLDER"):
        registry.load_dataset("mnist", tmp_path, download=False)


def test_cifar10_binary_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "CIFAR10_BATCH_RECORDS", 10)  # real batches hold 10000 records
    rng = np.random.default_rng(0)
    folder = tmp_path / "src" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in idx.CIFAR10_FILES:
        records = rng.integers(0, 256, (10, 3073), dtype=np.uint8)
        records[:, 0] = np.arange(10)
        (folder / name).write_bytes(records.tobytes())
    info = registry.import_idx("cifar10", tmp_path / "src", tmp_path / "data")
    assert (info.train_size, info.test_size) == (50, 10)
    data = registry.load_dataset("cifar10", tmp_path / "data", val_split=0)
    first = np.frombuffer((folder / "data_batch_1.bin").read_bytes(), dtype=np.uint8)[1:3073]
    assert np.array_equal(data.x_train[0].reshape(-1), first)  # R plane, G plane, B plane: (C, H, W)
    (folder / "test_batch.bin").write_bytes(b"\0" * 100)
    with pytest.raises(InvalidInput, match="test_batch.bin has 100 bytes"):
        registry.import_idx("cifar10", tmp_path / "src", tmp_path / "data")
