"""The registry: built-ins, info, loading with a seeded split, sample PNGs, and no torch in the web process."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.errors import InvalidInput, NotFound
from app.datasets import registry

ROOT = Path(__file__).resolve().parents[2]


def test_builtins_listed(tmp_path):
    infos = {i.name: i for i in registry.list_datasets(tmp_path)}
    assert {"mnist", "fashion_mnist", "cifar10", "digits", "spirals", "moons", "circles", "sequence"} <= set(infos)
    assert infos["digits"].available and infos["digits"].input_shape == [1, 8, 8]
    assert not infos["cifar10"].available and "trainboard data import cifar10" in infos["cifar10"].how_to_get
    assert infos["spirals"].num_classes == 3 and infos["sequence"].kind == "sequence"


def test_unknown_name_lists_known(tmp_path):
    with pytest.raises(NotFound, match="known: mnist, fashion_mnist"):
        registry.get_dataset_info("nope", tmp_path)


@pytest.mark.parametrize("name", ["digits", "moons", "spirals", "circles", "sequence"])
def test_load_builtin(tmp_path, name):
    data = registry.load_dataset(name, tmp_path, val_split=0.2, seed=3)
    info = registry.get_dataset_info(name, tmp_path)
    assert len(data.y_train) + len(data.y_val) == info.train_size and len(data.y_test) == info.test_size
    assert list(data.x_train.shape[1:]) == info.input_shape == data.input_shape
    assert set(np.unique(data.y_train)) == set(range(info.num_classes))
    assert data.y_train.dtype == np.int64 and data.mean is not None
    if info.kind == "image":
        assert data.x_train.dtype == np.uint8
    # Cached as .npy + meta.json; loading again gives the same seeded split.
    assert (tmp_path / "datasets" / name / "x_train.npy").is_file()
    again = registry.load_dataset(name, tmp_path, val_split=0.2, seed=3)
    assert np.array_equal(again.y_val, data.y_val) and np.array_equal(again.x_val, data.x_val)
    other = registry.load_dataset(name, tmp_path, val_split=0.2, seed=4)
    assert not np.array_equal(other.x_val, data.x_val)


def test_validation_split_is_stratified():
    y = np.repeat(np.arange(4), [100, 50, 30, 20])
    train, val = registry.split_validation(y, 0.1, seed=0)
    assert np.bincount(y[val]).tolist() == [10, 5, 3, 2]
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(y)


def _png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.size


def test_render_samples(tmp_path):
    assert _png_size(registry.render_sample_png("digits", tmp_path, 0)) == (112, 112)
    assert _png_size(registry.render_sample_png("moons", tmp_path, 5, split="train"))[0] > 50
    assert _png_size(registry.render_sample_png("sequence", tmp_path, 1)) == (200, 100)
    with pytest.raises(InvalidInput, match="out of range"):
        registry.render_sample_png("digits", tmp_path, 10_000)


def test_sequence_needs_order(tmp_path):
    data = registry.load_dataset("sequence", tmp_path)
    # The class cannot be read from the values alone: both classes hold one +1 and one -1 pulse.
    sums = data.x_train.sum(axis=(1, 2))
    assert abs(sums[data.y_train == 0].mean() - sums[data.y_train == 1].mean()) < 0.1


def test_registry_import_does_not_import_torch():
    code = ("import sys; import app.datasets.registry as r, app.datasets.uploads, app.datasets.idx; "
            "print('torch' in sys.modules, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_first_use_never_swaps_out_a_copy_that_trainers_are_reading(tmp_path):
    """Eight trainers may materialize a built-in at once: the first complete copy stays in place."""
    from app.datasets import sources, store

    registry.ensure_cached("digits", tmp_path)
    x_test = store.dataset_dir(tmp_path, "digits") / "x_test.npy"
    inode = x_test.stat().st_ino
    arrays = sources.generate("digits")
    meta = registry.BUILTINS["digits"].meta(arrays["x_train"])
    store.write_dataset(tmp_path, "digits", arrays, meta, replace=False)  # a late second materializer
    assert x_test.stat().st_ino == inode
    store.write_dataset(tmp_path, "digits", arrays, meta)  # an explicit re-import swaps it
    assert x_test.stat().st_ino != inode
    assert not [p for p in store.datasets_root(tmp_path).iterdir() if p.name.startswith(".")]  # no temp left
