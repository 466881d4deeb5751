"""User uploads: a CSV of numeric features + a label column, or a zip of class folders of images.

Zips are never extracted to disk: members are read into memory one at a time, after their
names, types and sizes pass the checks, so a hostile archive cannot write anywhere. The
cached result is written atomically (store.write_dataset), so a failed import leaves nothing.
"""

from __future__ import annotations

import csv
import io
import stat
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.core.errors import InvalidInput
from app.datasets import store
from app.datasets.registry import check_upload_name
from app.datasets.sources import channel_stats

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_SIDE = 64  # uploaded images are resized to at most 64x64: enough for small CNNs, cheap on CPU
MAX_PIXELS = 4096 * 4096  # one decoded image; larger is a decompression bomb, not a training sample


def _sorted_labels(values: list[str]) -> list[str]:
    unique = set(values)
    try:
        return sorted(unique, key=float)
    except ValueError:
        return sorted(unique)


def _test_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from app.datasets.registry import split_validation

    train, test = split_validation(y, test_fraction, seed)
    if len(test) == 0 or len(train) == 0:
        raise InvalidInput("too few samples to hold some out for testing: upload at least a few per class")
    return train, test


def _save(name: str, data_dir: Path | str, x: np.ndarray, y: np.ndarray, class_names: list[str],
          meta: dict[str, Any], test_fraction: float, seed: int) -> Path:
    if len(class_names) < 2:
        raise InvalidInput(f"found only one class ({class_names[0] if class_names else 'none'}): "
                           "a classifier needs at least two")
    train, test = _test_split(y, test_fraction, seed)
    mean, std = channel_stats(x[train])
    arrays = {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}
    meta = {**meta, "class_names": class_names, "mean": mean, "std": std, "source": "upload"}
    return store.write_dataset(data_dir, name, arrays, meta)


def import_csv(name: str, fileobj_or_path: IO[bytes] | IO[str] | Path | str, data_dir: Path | str, *,
               label_column: str = "label", test_fraction: float = 0.2, seed: int = 0,
               max_rows: int = 1_000_000) -> Path:
    """Import a CSV (header row; numeric features; a label column) as a tabular data set."""
    check_upload_name(name, data_dir)
    if isinstance(fileobj_or_path, (str, Path)):
        text = Path(fileobj_or_path).read_bytes()
    else:
        text = fileobj_or_path.read()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput("the CSV is not UTF-8 text: save it as UTF-8 and upload again") from exc
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise InvalidInput("the CSV is empty: it needs a header row and one row per sample")
    header = [h.strip() for h in header]
    if label_column not in header:
        raise InvalidInput(f"the CSV has no {label_column!r} column (columns: {', '.join(header)}); "
                           "name the class column that way or choose the label column")
    label_at = header.index(label_column)
    features = [h for i, h in enumerate(header) if i != label_at]
    if not features:
        raise InvalidInput("the CSV has only the label column: add at least one numeric feature column")
    values, labels = [], []
    for line_no, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidInput(f"CSV line {line_no} has {len(row)} fields, the header has {len(header)}")
        if len(labels) >= max_rows:
            raise InvalidInput(f"the CSV has more than {max_rows} rows: upload a smaller sample")
        labels.append(row[label_at].strip())
        try:
            values.append([float(c) for i, c in enumerate(row) if i != label_at])
        except ValueError as exc:
            raise InvalidInput(f"CSV line {line_no}: {exc}; feature columns must be numbers") from exc
    if not labels:
        raise InvalidInput("the CSV has a header but no data rows")
    x = np.asarray(values, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InvalidInput("the CSV holds NaN or infinite feature values: fill or drop those rows")
    class_names = _sorted_labels(labels)
    index = {c: i for i, c in enumerate(class_names)}
    y = np.asarray([index[v] for v in labels], dtype=np.int64)
    meta = {"title": name, "kind": "tabular", "input_shape": [len(features)], "feature_names": features}
    return _save(name, data_dir, x, y, class_names, meta, test_fraction, seed)


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's path if it is a safe, regular file worth reading; raises on unsafe entries."""
    raw = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidInput(f"the zip contains a symbolic link ({raw}): upload plain files only")
    path = PurePosixPath(raw.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise InvalidInput(f"the zip contains an unsafe path ({raw}): paths must stay inside the archive")
    if info.is_dir() or path.name.startswith(".") or "__MACOSX" in path.parts:
        return None
    return path


def _open_zip(source: IO[bytes] | Path | str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source if not isinstance(source, str) else Path(source))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"the upload is not a readable zip file ({exc})") from exc


def import_image_zip(name: str, fileobj_or_path: IO[bytes] | Path | str, data_dir: Path | str, *,
                     max_total_bytes: int = 200 * 1024 * 1024, max_files: int = 50_000,
                     max_ratio: float = 100.0, test_fraction: float = 0.2, seed: int = 0) -> Path:
    """Import a zip of class folders (cls/xxx.png) as an image data set, resized to a common size."""
    check_upload_name(name, data_dir)
    with _open_zip(fileobj_or_path) as archive:
        members = [(info, p) for info in archive.infolist() if (p := _member_path(info)) is not None]
        members = [(info, p) for info, p in members if p.suffix.lower() in IMAGE_SUFFIXES]
        if len(members) > max_files:
            raise InvalidInput(f"the zip holds {len(members)} images, more than the limit of {max_files}")
        total = 0
        for info, _ in members:
            total += info.file_size
            # A tiny member that inflates enormously is a zip bomb; small files may compress well.
            if info.file_size > 1 << 20 and info.file_size > max_ratio * max(info.compress_size, 1):
                raise InvalidInput(f"{info.filename} expands {info.file_size // max(info.compress_size, 1)}x "
                                   f"(limit {max_ratio:g}x): the zip looks like a zip bomb")
        if total > max_total_bytes:
            raise InvalidInput(f"the zip's images add up to {total} bytes uncompressed, over the limit of "
                               f"{max_total_bytes}")
        # A single top folder around the class folders is common ("pets/cat/1.png"): strip it.
        tops = {p.parts[0] for _, p in members if len(p.parts) > 2}
        strip = 1 if len(tops) == 1 and all(len(p.parts) == 3 for _, p in members) else 0
        samples = []
        for info, path in members:
            parts = path.parts[strip:]
            if len(parts) != 2:
                raise InvalidInput(f"{info.filename} is not inside a class folder: lay the zip out as "
                                   "CLASS/IMAGE.png, one folder per class")
            with archive.open(info) as member:
                data = member.read(info.file_size + 1)
            samples.append((parts[0], info.filename, _decode(data, info.filename)))
    if not samples:
        raise InvalidInput("the zip holds no images: lay it out as CLASS/IMAGE.png, one folder per class")
    return _save_images(name, data_dir, samples, test_fraction, seed)


def _decode(data: bytes, filename: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise InvalidInput(f"{filename} is {image.width}x{image.height} pixels: too large to be a sample")
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"{filename} is not a readable image ({exc}); remove or replace it") from exc
    return image


def _save_images(name: str, data_dir: Path | str, samples: list[tuple[str, str, Image.Image]],
                 test_fraction: float, seed: int) -> Path:
    width, height = Counter(img.size for _, _, img in samples).most_common(1)[0][0]
    scale = min(1.0, MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grayscale = all(img.mode in ("1", "L", "LA", "I", "I;16", "F") for _, _, img in samples)
    mode = "L" if grayscale else "RGB"
    pixels = []
    for _, _, img in samples:
        img = img.convert(mode)
        if img.size != size:
            img = img.resize(size, Image.Resampling.BILINEAR)
        array = np.asarray(img, dtype=np.uint8)
        pixels.append(array[None] if grayscale else array.transpose(2, 0, 1))
    class_names = sorted({cls for cls, _, _ in samples})
    index = {c: i for i, c in enumerate(class_names)}
    y = np.asarray([index[cls] for cls, _, _ in samples], dtype=np.int64)
    x = np.stack(pixels)
    meta = {"title": name, "kind": "image", "input_shape": list(x.shape[1:])}
    return _save(name, data_dir, x, y, class_names, meta, test_fraction, seed)
