"""Where built-in data sets come from: local copies (downloads: app/datasets/download.py), sklearn, generators.

scikit-learn is imported inside the functions that need it: this module is imported by the web
process, which must not pay for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEQ_LEN = 20
_TV_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel (images) or per-feature mean/std, images measured after scaling uint8 to [0, 1]."""
    xf = x.astype(np.float64)
    if x.dtype == np.uint8:
        xf /= 255.0
    axes = (0, 2, 3) if x.ndim == 4 else tuple(i for i in range(x.ndim) if i != x.ndim - 1)
    mean = xf.mean(axis=axes)
    std = xf.std(axis=axes)
    std = np.where(std > 1e-8, std, 1.0)  # a constant feature would divide by zero
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def _search_roots(data_dir: Path | str) -> list[Path]:
    data_dir = Path(data_dir)
    return [data_dir, data_dir / "datasets", data_dir / "downloads"]


def find_local_copy(name: str, data_dir: Path | str) -> Path | None:
    """A folder under data_dir holding the raw files of a downloadable built-in (torchvision's layout)."""
    for root in _search_roots(data_dir):
        if name in _TV_FOLDERS:
            raw = root / _TV_FOLDERS[name] / "raw"
            if any(raw.glob("t10k-labels*")) and any(raw.glob("train-images*")):
                return raw
        elif name == "cifar10":
            if (root / "cifar-10-binary.tar.gz").is_file():
                return root
            if (root / "cifar-10-batches-bin" / "test_batch.bin").is_file():
                return root / "cifar-10-batches-bin"
    return None


def _to_uint8_images(images: np.ndarray, max_value: float) -> np.ndarray:
    return np.clip(np.rint(images * (255.0 / max_value)), 0, 255).astype(np.uint8)


def _split(x: np.ndarray, y: np.ndarray, test_size: int, seed: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:test_size], order[test_size:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def digits() -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 digits (ships with the package), as uint8 [1, 8, 8] images."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = _to_uint8_images(bunch.images, 16.0)[:, None]
    return _split(x, bunch.target.astype(np.int64), 360, seed=0)


def _points(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if name == "spirals":
        y = rng.integers(0, 3, n)
        r = rng.uniform(0.05, 1.0, n)
        theta = r * 4.0 + y * (2 * np.pi / 3) + rng.normal(0, 0.2, n)
        x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    elif name == "moons":
        y = rng.integers(0, 2, n)
        t = rng.uniform(0, np.pi, n)
        x = np.where(y[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1),
                     np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
        x = x + rng.normal(0, 0.1, x.shape)
    else:  # circles
        y = rng.integers(0, 2, n)
        t = rng.uniform(0, 2 * np.pi, n)
        r = np.where(y == 0, 0.5, 1.0)[:, None]
        x = r * np.stack([np.cos(t), np.sin(t)], 1) + rng.normal(0, 0.08, (n, 2))
    return x.astype(np.float32), y.astype(np.int64)


def _sequences(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Noise with one +1 pulse and one -1 pulse at random places; the class says which comes
    # first. Sums and histograms cannot tell: a model has to see the order.
    x = rng.normal(0, 0.2, (n, SEQ_LEN, 1))
    first = rng.integers(0, SEQ_LEN - 1, n)
    second = np.array([rng.integers(f + 1, SEQ_LEN) for f in first])
    y = rng.integers(0, 2, n)
    up_at = np.where(y == 0, first, second)
    down_at = np.where(y == 0, second, first)
    x[np.arange(n), up_at, 0] += 1.0
    x[np.arange(n), down_at, 0] -= 1.0
    return x.astype(np.float32), y.astype(np.int64)


def generate(name: str) -> dict[str, np.ndarray]:
    """Make a generated built-in (digits, points, sequence): the same arrays every time."""
    if name == "digits":
        return digits()
    rng = np.random.default_rng({"spirals": 1, "moons": 2, "circles": 3, "sequence": 4}[name])
    n_train, n_test = 2000, 500
    x, y = _sequences(n_train + n_test, rng) if name == "sequence" else _points(name, n_train + n_test, rng)
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}

