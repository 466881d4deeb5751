"""Trainers map the decoded data set cache (.npy files) into memory: nothing is parsed or copied again
per run (issue 18, item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from app.datasets import idx, registry, sources, store
from app.datasets.registry import BUILTINS


def _refuse(*args, **kwargs):
    raise AssertionError("the decoded cache should have been used")


@pytest.fixture
def cached_mnist(tmp_path):
    """An "mnist" whose decoded cache is already written (as `trainboard data import` leaves it), with
    real-looking idx .gz files next to it that a second parse would read."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (120, 1, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, 120).astype(np.int64),
              "x_test": rng.integers(0, 256, (30, 1, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, 30).astype(np.int64)}
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in idx.IDX_MD5["mnist"]:
        (raw / f"{stem}.gz").write_bytes(b"\x1f\x8b not parsed")
    store.write_dataset(tmp_path, "mnist", arrays, BUILTINS["mnist"].meta(arrays["x_train"]))
    return tmp_path, arrays


def test_a_cached_data_set_is_mapped_not_parsed(cached_mnist, monkeypatch):
    data_dir, arrays = cached_mnist
    for module, name in ((idx, "read_maybe_gzip"), (idx, "parse_idx"), (idx, "import_idx"),
                         (sources, "find_local_copy"), (sources, "generate")):
        monkeypatch.setattr(module, name, _refuse)
    data = registry.load_dataset("mnist", data_dir, val_split=0.0)
    # No validation split: the training arrays are the mapped files themselves, not copies.
    assert isinstance(data.x_train, np.memmap) and isinstance(data.y_train, np.memmap)
    assert str(data.x_train.filename).endswith("x_train.npy")
    assert np.array_equal(data.x_train, arrays["x_train"]) and np.array_equal(data.y_test, arrays["y_test"])
    split = registry.load_dataset("mnist", data_dir, val_split=0.25, seed=1)
    assert len(split.y_train) + len(split.y_val) == 120 and len(split.y_val) > 0
    # Mapped copy-on-write: a reader that writes changes its own pages, never the cache.
    data.x_train[0] = 0
    assert np.array_equal(store.read_arrays(data_dir, "mnist")["x_train"], arrays["x_train"])


def test_a_built_in_is_decoded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    calls = []
    real = sources.generate
    monkeypatch.setattr(sources, "generate", lambda name: calls.append(name) or real(name))
    first = registry.load_dataset("moons", tmp_path, val_split=0.0)
    second = registry.load_dataset("moons", tmp_path, val_split=0.0)
    assert calls == ["moons"] and store.is_cached(tmp_path, "moons")
    assert isinstance(second.x_train, np.memmap) and np.array_equal(first.x_train, second.x_train)
