"""The data set registry: built-ins and uploads, their info, loading with a seeded validation split.

The web process imports this module, so it and everything it imports stay free of torch and
torchvision; downloads (app/datasets/download.py) need neither.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import InvalidInput, NotFound
from app.datasets import sources, store
from app.engine.types import DatasetArrays

DIGITS = [str(i) for i in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class DatasetUnavailable(InvalidInput):
    """A built-in whose files are not here and could not be downloaded."""


@dataclass
class DatasetInfo:
    """What the app shows about a data set before (or without) loading it."""

    name: str
    title: str
    kind: str  # "image" | "tabular" | "points" | "sequence"
    input_shape: list[int]
    class_names: list[str]
    train_size: int
    test_size: int
    mean: list[float] | None = None
    std: list[float] | None = None
    available: bool = True
    how_to_get: str | None = None
    source: str = "builtin"  # "builtin" | "upload"
    num_classes: int = field(init=False)

    def __post_init__(self) -> None:
        self.num_classes = len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def meta(self, x_train: np.ndarray | None = None) -> dict[str, Any]:
        """meta.json content for this built-in (normalization measured on x_train if not fixed)."""
        mean, std = self.mean, self.std
        if mean is None and x_train is not None:
            mean, std = sources.channel_stats(x_train)
        return {"title": self.title, "kind": self.kind, "input_shape": self.input_shape,
                "class_names": self.class_names, "mean": mean, "std": std, "source": self.source}


def _how_to_import(name: str, data_dir: Path | str) -> str:
    return (f"{name} is not here yet: download it (the Download button on the dashboard, or: trainboard data "
            f"download {name}) into {Path(data_dir).resolve()}, or import files you have: trainboard data "
            f"import {name} FOLDER")


BUILTINS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("mnist", "MNIST handwritten digits", "image", [1, 28, 28], DIGITS, 60000, 10000,
                    [0.1307], [0.3081]),
        DatasetInfo("fashion_mnist", "Fashion-MNIST clothing", "image", [1, 28, 28], FASHION, 60000, 10000,
                    [0.2860], [0.3530]),
        DatasetInfo("cifar10", "CIFAR-10 small photos", "image", [3, 32, 32], CIFAR10, 50000, 10000,
                    [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
        DatasetInfo("digits", "scikit-learn 8x8 digits", "image", [1, 8, 8], DIGITS, 1437, 360),
        DatasetInfo("spirals", "Three interleaved spirals (synthetic)", "points", [2], ["0", "1", "2"],
                    2000, 500),
        DatasetInfo("moons", "Two moons (synthetic)", "points", [2], ["0", "1"], 2000, 500),
        DatasetInfo("circles", "Two circles (synthetic)", "points", [2], ["inner", "outer"], 2000, 500),
        DatasetInfo("sequence", "Up-before-down pulses (synthetic sequences)", "sequence",
                    [sources.SEQ_LEN, 1], ["up first", "down first"], 2000, 500),
    ]
}
DOWNLOADABLE = {"mnist", "fashion_mnist", "cifar10"}


def _info_from_meta(meta: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(meta["name"], meta.get("title") or meta["name"], meta["kind"], list(meta["input_shape"]),
                       list(meta["class_names"]), int(meta["train_size"]), int(meta["test_size"]),
                       meta.get("mean"), meta.get("std"), source=meta.get("source", "upload"))


def get_dataset_info(name: str, data_dir: Path | str) -> DatasetInfo:
    """Info on one data set; NotFound (listing the known names) if there is none by that name."""
    meta = store.read_meta(data_dir, name) if NAME_RE.match(name) else None
    if meta is not None:
        return _info_from_meta(meta)
    if name in BUILTINS:
        info = BUILTINS[name]
        if name in DOWNLOADABLE and sources.find_local_copy(name, data_dir) is None:
            info = DatasetInfo(**{k: v for k, v in asdict(info).items() if k != "num_classes"})
            info.available, info.how_to_get = False, _how_to_import(name, data_dir)
        return info
    known = ", ".join(d.name for d in list_datasets(data_dir))
    raise NotFound(f"no data set named {name!r}; known: {known}")


def list_datasets(data_dir: Path | str) -> list[DatasetInfo]:
    """Built-ins first (in a fixed order), then uploads by name."""
    infos = [get_dataset_info(name, data_dir) for name in BUILTINS]
    root = store.datasets_root(data_dir)
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.name not in BUILTINS and NAME_RE.match(folder.name):
                meta = store.read_meta(data_dir, folder.name)
                if meta is not None and store.is_cached(data_dir, folder.name):
                    infos.append(_info_from_meta(meta))
    return infos


def check_upload_name(name: str, data_dir: Path | str, *, replace: bool = False) -> None:
    """Reject names that are malformed, belong to a built-in, or (unless replace) are taken."""
    if not NAME_RE.match(name or ""):
        raise InvalidInput(f"invalid data set name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', "
                           "starting with a letter or digit")
    if name in BUILTINS:
        raise InvalidInput(f"{name!r} is a built-in data set: choose another name")
    if not replace and store.is_cached(data_dir, name):
        raise InvalidInput(f"a data set named {name!r} already exists: choose another name or delete it first")


def ensure_cached(name: str, data_dir: Path | str, *, download: bool = True) -> None:
    """Materialize a built-in into the cache if it is not there yet."""
    if store.is_cached(data_dir, name):
        return
    if name not in BUILTINS:
        get_dataset_info(name, data_dir)  # raises NotFound with the known names
    info = BUILTINS[name]
    if name in DOWNLOADABLE:
        src = sources.find_local_copy(name, data_dir)
        if src is not None:
            from app.datasets.idx import import_idx

            import_idx(name, src, data_dir, replace=False)
        elif download:
            from app.datasets import download as downloads

            downloads.download(name, data_dir, wait=True)  # DownloadFailed says how to import by hand
        else:
            raise DatasetUnavailable(_how_to_import(name, data_dir))
        return
    arrays = sources.generate(name)
    store.write_dataset(data_dir, name, arrays, info.meta(arrays["x_train"]), replace=False)


def split_validation(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified split of indices into (train, val); each class gives ~fraction of its samples."""
    rng = np.random.default_rng(seed)
    if fraction <= 0:
        return np.arange(len(y)), np.arange(0)
    if not 0 < fraction < 1:
        raise InvalidInput(f"val_split must be between 0 and 1, got {fraction}")
    val_parts = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        take = int(round(len(members) * fraction))
        val_parts.append(rng.permutation(members)[:take])
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.arange(0)
    mask = np.ones(len(y), dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def load_dataset(name: str, data_dir: Path | str, *, val_split: float = 0.1, seed: int = 0,
                 download: bool = True) -> DatasetArrays:
    """Load a data set from the cache (materializing built-ins first) with a seeded validation split.

    The cache holds the decoded arrays (.npy, written once when the data set is imported or first used);
    they are memory-mapped, not parsed or copied again per run. Without a validation split the training
    arrays are the mapped files themselves; with one, the two splits are gathered from them."""
    ensure_cached(name, data_dir, download=download)
    meta = store.read_meta(data_dir, name)
    arrays = store.read_arrays(data_dir, name, mmap=True)
    train_idx, val_idx = split_validation(arrays["y_train"], val_split, seed)
    x, y = arrays["x_train"], arrays["y_train"]
    x_train, y_train = (x, y) if len(val_idx) == 0 else (x[train_idx], y[train_idx])
    return DatasetArrays(
        name=name, x_train=x_train, y_train=y_train, x_val=x[val_idx], y_val=y[val_idx],
        x_test=arrays["x_test"], y_test=arrays["y_test"], class_names=list(meta["class_names"]),
        input_shape=list(meta["input_shape"]), mean=meta.get("mean"), std=meta.get("std"))


def render_sample_png(name: str, data_dir: Path | str, index: int, split: str = "test") -> bytes:
    """A PNG of one sample: the image upscaled (nearest), a scatter for points, a line plot for sequences."""
    from app.datasets.render import render_sample

    meta, x, y = _split_arrays(name, data_dir, split)
    if not 0 <= index < len(x):
        raise InvalidInput(f"sample index {index} is out of range: the {split} split has {len(x)} samples")
    return render_sample(meta, x, y, index)


def _split_arrays(name: str, data_dir: Path | str, split: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    if split not in ("train", "test"):
        raise InvalidInput(f"split must be 'train' or 'test', got {split!r}")
    ensure_cached(name, data_dir, download=False)
    meta = store.read_meta(data_dir, name)
    arrays = store.read_arrays(data_dir, name, mmap=True)
    return meta, arrays[f"x_{split}"], arrays[f"y_{split}"]


def render_points_png(name: str, data_dir: Path | str, split: str = "test") -> bytes:
    """A PNG of a 2-D points data set's split: every point, coloured by class (render.class_colour)."""
    from app.datasets.render import render_points

    meta, x, y = _split_arrays(name, data_dir, split)
    if meta["kind"] != "points" or x.ndim != 2 or x.shape[1] != 2:
        raise InvalidInput(f"{name} holds {meta['kind']} data, not 2-D points: there is no scatter plot of it")
    return render_points(x, y)


@dataclass
class SampleRows:
    """The first rows of a tabular split, as the data sets page shows them."""

    columns: list[str]  # "label", then the feature names (the first `max_columns`)
    rows: list[list[str]]  # the label as its class name, then the values formatted for reading
    hidden_columns: int  # feature columns left out to keep the table narrow


def sample_rows(name: str, data_dir: Path | str, *, split: str = "test", limit: int = 5,
                max_columns: int = 6) -> SampleRows:
    """The first `limit` rows of a tabular data set (a CSV upload): a picture of a row would say nothing."""
    meta, x, y = _split_arrays(name, data_dir, split)
    if meta["kind"] != "tabular":
        raise InvalidInput(f"{name} holds {meta['kind']} data, not table rows")
    features = list(meta.get("feature_names") or [f"x{i}" for i in range(x.shape[1])])
    shown = min(len(features), max_columns)
    class_names = list(meta["class_names"])
    rows = [[class_names[int(y[i])] if int(y[i]) < len(class_names) else str(int(y[i]))]
            + [f"{float(v):.4g}" for v in x[i, :shown]] for i in range(min(limit, len(x)))]
    return SampleRows(columns=["label", *features[:shown]], rows=rows, hidden_columns=len(features) - shown)


def import_idx(name: str, src_dir: Path | str, data_dir: Path | str) -> DatasetInfo:
    """`trainboard data import NAME DIR`: import local mnist/fashion_mnist/cifar10 files (checksummed)."""
    from app.datasets import idx

    idx.import_idx(name, src_dir, data_dir)
    return get_dataset_info(name, data_dir)


def import_csv(name: str, fileobj_or_path: Any, data_dir: Path | str, *, label_column: str = "label",
               **limits: Any) -> DatasetInfo:
    """Upload a CSV (numeric features + a label column) as data set `name`."""
    from app.datasets import uploads

    uploads.import_csv(name, fileobj_or_path, data_dir, label_column=label_column, **limits)
    return get_dataset_info(name, data_dir)


def import_image_zip(name: str, fileobj_or_path: Any, data_dir: Path | str, **limits: Any) -> DatasetInfo:
    """Upload a zip of class folders of images as data set `name`."""
    from app.datasets import uploads

    uploads.import_image_zip(name, fileobj_or_path, data_dir, **limits)
    return get_dataset_info(name, data_dir)


def class_counts(name: str, data_dir: Path | str) -> dict[str, list[int]]:
    """Samples per class in each split ({"train": [...], "test": [...]}), for class-balance charts."""
    info = get_dataset_info(name, data_dir)
    if not info.available:
        raise DatasetUnavailable(info.how_to_get or f"{name} is not on this machine")
    ensure_cached(name, data_dir, download=False)
    arrays = store.read_arrays(data_dir, name, mmap=True)
    return {split: np.bincount(np.asarray(arrays[f"y_{split}"]), minlength=info.num_classes).tolist()
            for split in ("train", "test")}
