"""User uploads: a CSV of numeric features + a label column, or a zip of class folders of images.

Uploads are hostile until proven otherwise, and the web process must stay light while it reads
them. So:

- Nothing is read whole. A CSV is parsed streaming from the (spooled) upload file, line by line
  with a bound on each record, and its rows go in blocks to a scratch file on disk; an image zip
  is checked from its directory and its image headers before any image is decoded, and decoded
  images go one at a time, resized, into a scratch array on disk. Memory stays bounded by the
  largest single record or image, not by the upload.
- Every cap is checked as early as it can be: the upload's bytes (413) before parsing; a zip's
  entry count and directory size before the directory is parsed; names, links, sizes and
  compression ratios before any member is read; the decoded pixels of all images before any is
  decoded.
- Zips are never extracted to disk, so a hostile archive cannot write anywhere. Scratch files
  live in a hidden folder that is always removed, and the data set itself is written atomically
  (store.write_dataset): a refused upload leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import stat
import tempfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
from numpy.lib.format import open_memmap
from PIL import Image

from app.auth.context import CURRENT_USER
from app.core.config import get_settings
from app.core.errors import InvalidInput, TooLarge
from app.core.limits import format_size
from app.datasets import store
from app.datasets.registry import check_upload_name

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_SIDE = 64  # uploaded images are resized to at most 64x64: enough for small CNNs, cheap on CPU
MAX_PIXELS = 4096 * 4096  # one decoded image; larger is a decompression bomb, not a training sample
MAX_IMAGE_BYTES = 64 * 1024 * 1024  # one zip member, uncompressed (a 4096x4096 RGBA BMP is 64 MiB)
MAX_RECORD_CHARS = 8 * 1024 * 1024  # one CSV record (a row; quoted fields may span lines)
MAX_CLASSES = 1000  # distinct labels in one upload
BLOCK_BYTES = 4 * 1024 * 1024  # rows parsed or copied per step, in bytes


# --- size of the upload --------------------------------------------------------------------------

def _upload_limit(max_bytes: int | None) -> int:
    return max_bytes if max_bytes is not None else get_settings().max_upload_bytes


def _too_large(size: int | None, limit: int) -> TooLarge:
    what = f" ({format_size(size)})" if size is not None else ""
    message = (f"the upload{what} is over the limit of {format_size(limit)}: upload a smaller file, or raise "
               "TRAINBOARD_MAX_UPLOAD_BYTES")
    return TooLarge(message, [{"field": "file", "message": message}])


def _check_upload_size(fileobj: IO[Any], limit: int) -> None:
    """413 at once when a seekable upload is already known to be over the limit."""
    try:
        here = fileobj.tell()
        size = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(here)
    except (AttributeError, OSError, ValueError):
        return
    if isinstance(size, int) and size > limit:
        raise _too_large(size, limit)


class _CappedReader(io.RawIOBase):
    """Reads a binary file object, refusing (413) once more than `limit` bytes have come through."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        super().__init__()
        self.source, self.limit, self.count = source, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        if isinstance(data, str):
            raise TypeError("expected a binary file")
        n = len(data)
        self.count += n
        if self.count > self.limit:
            raise _too_large(None, self.limit)
        buffer[:n] = data
        return n


@contextlib.contextmanager
def _binary(source: IO[Any] | Path | str) -> Iterator[IO[Any]]:
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


# --- scratch space and the final write -----------------------------------------------------------

@contextlib.contextmanager
def _scratch(data_dir: Path | str, name: str) -> Iterator[Path]:
    """A hidden folder next to the data sets (same disk), always removed afterwards."""
    root = store.datasets_root(data_dir)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".upload-{name}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                root.rmdir()  # only when still empty: the upload was refused


def _rows_per_block(row_bytes: int) -> int:
    return max(1, BLOCK_BYTES // max(1, row_bytes))


def _gather(x: np.ndarray, index: np.ndarray, path: Path) -> np.ndarray:
    """x[index] written block by block into a .npy memmap (never the whole selection in memory)."""
    out = open_memmap(path, mode="w+", dtype=x.dtype, shape=(len(index), *x.shape[1:]))
    step = _rows_per_block(int(np.prod(x.shape[1:], dtype=np.int64)) * x.itemsize)
    for start in range(0, len(index), step):
        out[start:start + step] = x[index[start:start + step]]
    out.flush()
    return out


def _channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel (images, scaled to [0, 1]) or per-feature mean/std, block by block (Chan et al.)."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    count, mean, m2 = 0, None, None
    step = _rows_per_block(int(np.prod(x.shape[1:], dtype=np.int64)) * 8)
    for start in range(0, len(x), step):
        block = np.asarray(x[start:start + step], dtype=np.float64)
        if x.dtype == np.uint8:
            block /= 255.0
        n = block.size // block.shape[1]  # values per channel (images) or per feature (tables)
        block_mean = block.mean(axis=axes)
        block_m2 = block.var(axis=axes) * n
        if mean is None:
            count, mean, m2 = n, block_mean, block_m2
        else:
            delta = block_mean - mean
            total = count + n
            mean = mean + delta * n / total
            m2 = m2 + block_m2 + delta ** 2 * count * n / total
            count = total
    if mean is None:
        return [], []
    std = np.sqrt(m2 / max(count, 1))
    std = np.where(std > 1e-8, std, 1.0)  # a constant feature would divide by zero
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


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


def _save(name: str, data_dir: Path | str, scratch: Path, x: np.ndarray, codes: np.ndarray, labels: list[str],
          meta: dict[str, Any], test_fraction: float, seed: int) -> Path:
    """Split x (a memmap in `scratch`) and the labels (`codes` index `labels`), then write the data set."""
    class_names = _sorted_labels(labels)
    if len(class_names) < 2:
        raise InvalidInput(f"found only one class ({class_names[0] if class_names else 'none'}): "
                           "a classifier needs at least two")
    position = {c: i for i, c in enumerate(class_names)}
    y = np.asarray([position[label] for label in labels], dtype=np.int64)[codes]
    train, test = _test_split(y, test_fraction, seed)
    x_train = _gather(x, train, scratch / "x_train.npy")
    x_test = _gather(x, test, scratch / "x_test.npy")
    mean, std = _channel_stats(x_train)
    arrays = {"x_train": x_train, "y_train": y[train], "x_test": x_test, "y_test": y[test]}
    meta = {**meta, "class_names": class_names, "mean": mean, "std": std, "source": "upload",
            "created_by": CURRENT_USER.get()}  # the uploading user's id (None without accounts)
    return store.write_dataset(data_dir, name, arrays, meta)


class _Labels:
    """Label strings → small integer codes in order of first appearance, with a cap on classes."""

    def __init__(self, limit: int, where: str) -> None:
        self.codes: dict[str, int] = {}
        self.limit, self.where = limit, where

    def code(self, label: str) -> int:
        found = self.codes.get(label)
        if found is None:
            if len(self.codes) >= self.limit:
                raise InvalidInput(f"{self.where} has more than {self.limit} distinct classes: a label column "
                                   "names each sample's class, so it should repeat a few values")
            found = self.codes[label] = len(self.codes)
        return found

    @property
    def names(self) -> list[str]:
        return list(self.codes)


# --- CSV -----------------------------------------------------------------------------------------

class _RecordLines:
    """Lines for csv.reader, each read with a bound, and a bound on the characters of one record.

    Binary sources are decoded line by line (UTF-8; a BOM is dropped), so a decoding error names
    its line.
    """

    def __init__(self, source: IO[Any], limit: int) -> None:
        self.source, self.limit, self.chars, self.lines = source, limit, 0, 0

    def __iter__(self) -> Iterator[str]:
        while True:
            line = self.source.readline(self.limit + 1)
            if not line:
                return
            self.lines += 1
            self.chars += len(line)
            if self.chars > self.limit:
                raise InvalidInput(f"CSV line {self.lines} is longer than {self.limit} characters: "
                                   "a row holds one sample's numbers and its label")
            if isinstance(line, bytes):
                try:
                    line = line.decode("utf-8-sig" if self.lines == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidInput(f"CSV line {self.lines} is not UTF-8 text ({exc.reason} at byte "
                                       f"{exc.start + 1}): save the file as UTF-8 and upload again") from exc
            yield line


def _csv_source(source: IO[Any], limit: int) -> IO[Any]:
    if isinstance(source, io.TextIOBase):
        return source  # already text (tests, the CLI)
    return io.BufferedReader(_CappedReader(source, limit), 1 << 16)


def import_csv(name: str, fileobj_or_path: IO[bytes] | IO[str] | Path | str, data_dir: Path | str, *,
               label_column: str = "label", test_fraction: float = 0.2, seed: int = 0,
               max_rows: int = 1_000_000, max_bytes: int | None = None, max_classes: int = MAX_CLASSES) -> Path:
    """Import a CSV (header row; numeric features; a label column) as a tabular data set, streaming."""
    check_upload_name(name, data_dir)
    limit = _upload_limit(max_bytes)
    with _binary(fileobj_or_path) as source:
        _check_upload_size(source, limit)
        lines = _RecordLines(_csv_source(source, limit), MAX_RECORD_CHARS)
        with _scratch(data_dir, name) as scratch:
            return _import_csv_rows(name, data_dir, scratch, lines, label_column=label_column,
                                    test_fraction=test_fraction, seed=seed, max_rows=max_rows,
                                    max_classes=max_classes)


def _import_csv_rows(name: str, data_dir: Path | str, scratch: Path, lines: _RecordLines, *, label_column: str,
                     test_fraction: float, seed: int, max_rows: int, max_classes: int) -> Path:
    rows = csv.reader(lines)
    try:
        header = next(rows, None)
    except csv.Error as exc:
        raise InvalidInput(f"CSV line {rows.line_num}: {exc}") from exc
    if not header:
        raise InvalidInput("the CSV is empty: it needs a header row and one row per sample")
    header = [h.strip() for h in header]
    if label_column not in header:
        shown = ", ".join(header[:20]) + (f", … ({len(header)} in all)" if len(header) > 20 else "")
        raise InvalidInput(f"the CSV has no {label_column!r} column (columns: {shown}); "
                           "name the class column that way or choose the label column",
                           [{"field": "label_column", "message": "no such column"}])
    label_at = header.index(label_column)
    n_features = len(header) - 1
    if not n_features:
        raise InvalidInput("the CSV has only the label column: add at least one numeric feature column",
                           [{"field": "label_column", "message": "no feature columns besides it"}])
    labels = _Labels(max_classes, f"the CSV's {label_column!r} column")
    block_rows = _rows_per_block(4 * n_features)
    block = np.empty((block_rows, n_features), dtype=np.float32)
    codes = np.empty(block_rows, dtype=np.int32)
    code_blocks: list[np.ndarray] = []
    filled = count = 0
    raw_path = scratch / "x.raw"
    with open(raw_path, "wb") as raw:
        def flush() -> None:
            nonlocal filled
            if not np.isfinite(block[:filled]).all():
                raise InvalidInput("the CSV holds NaN or infinite feature values: fill or drop those rows")
            raw.write(block[:filled].tobytes())
            code_blocks.append(codes[:filled].copy())
            filled = 0

        while True:
            lines.chars = 0
            try:
                row = next(rows, None)
            except csv.Error as exc:
                raise InvalidInput(f"CSV line {rows.line_num}: {exc}") from exc
            if row is None:
                break
            line_no = rows.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InvalidInput(f"CSV line {line_no} has {len(row)} fields, the header has {len(header)}")
            if count >= max_rows:
                raise InvalidInput(f"the CSV has more than {max_rows} rows: upload a smaller sample")
            label = row.pop(label_at).strip()
            try:
                block[filled] = [float(c) for c in row]
            except ValueError as exc:
                raise InvalidInput(f"CSV line {line_no}: {exc}; feature columns must be numbers") from exc
            codes[filled] = labels.code(label)
            filled += 1
            count += 1
            if filled == block_rows:
                flush()
        flush()
    if not count:
        raise InvalidInput("the CSV has a header but no data rows")
    x = np.memmap(raw_path, dtype=np.float32, mode="r", shape=(count, n_features))
    features = [h for i, h in enumerate(header) if i != label_at]
    meta = {"title": name, "kind": "tabular", "input_shape": [n_features], "feature_names": features}
    return _save(name, data_dir, scratch, x, np.concatenate(code_blocks), labels.names, meta, test_fraction, seed)


# --- image zips ----------------------------------------------------------------------------------

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


def _check_directory(source: IO[bytes], max_files: int) -> None:
    """Refuse a zip whose directory lists too many entries before zipfile parses all of them."""
    try:
        end = zipfile._EndRecData(source)  # the end-of-central-directory record (zip64-aware)
    except (OSError, ValueError, AttributeError):
        end = None
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            source.seek(0)
    if not end:
        return  # not a zip: zipfile says so in words
    entries, directory_bytes = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    # A directory entry is 46 bytes + its name: ~300 bytes each is generous for real archives.
    if entries > max_files or directory_bytes > 300 * max_files + 65536:
        shown = entries if entries > max_files else f"a {format_size(directory_bytes)} directory of"
        raise InvalidInput(f"the zip holds {shown} entries, more than the limit of {max_files}")


def _open_zip(source: IO[bytes] | Path | str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source if not isinstance(source, str) else Path(source))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInput(f"the upload is not a readable zip file ({exc})") from exc


def _unreadable(filename: str, exc: BaseException) -> InvalidInput:
    return InvalidInput(f"{filename} is not a readable image ({exc}); remove or replace it")


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, int], str]:
    """(size, mode) from the image's header only: PIL's open is lazy, nothing is decoded here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with archive.open(info) as member, Image.open(member) as image:
                size, mode = image.size, image.mode
    except Image.DecompressionBombError as exc:
        raise InvalidInput(f"{info.filename} is too large to be a sample ({exc}); the limit is "
                           f"{MAX_PIXELS} pixels (4096x4096) per image") from exc
    except Exception as exc:  # noqa: BLE001 - hostile bytes make PIL fail in many ways: all are "unreadable"
        raise _unreadable(info.filename, exc) from exc
    if size[0] * size[1] > MAX_PIXELS:
        raise InvalidInput(f"{info.filename} is {size[0]}x{size[1]} pixels: too large to be a sample "
                           f"(the limit is {MAX_PIXELS} pixels, 4096x4096, per image)")
    return size, mode


def _decode(data: bytes, filename: str, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image decoded, converted to `mode` and resized to `size`: a uint8 (C, H, W) array."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:  # the header changed since the first look
                    raise InvalidInput(f"{filename} is {image.width}x{image.height} pixels: too large to be a "
                                       "sample")
                image.draft(mode, size)  # JPEG: decode at a reduced scale when that is enough
                picture = image.convert(mode)
        if picture.size != size:
            picture = picture.resize(size, Image.Resampling.BILINEAR)
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile bytes make PIL fail in many ways: all are "unreadable"
        raise _unreadable(filename, exc) from exc
    array = np.asarray(picture, dtype=np.uint8)
    return array[None] if mode == "L" else array.transpose(2, 0, 1)


def import_image_zip(name: str, fileobj_or_path: IO[bytes] | Path | str, data_dir: Path | str, *,
                     max_total_bytes: int = 200 * 1024 * 1024, max_files: int = 50_000,
                     max_ratio: float = 100.0, max_pixels: int | None = None, max_bytes: int | None = None,
                     test_fraction: float = 0.2, seed: int = 0) -> Path:
    """Import a zip of class folders (cls/xxx.png) as an image data set, resized to a common size."""
    check_upload_name(name, data_dir)
    limit = _upload_limit(max_bytes)
    max_pixels = max_pixels if max_pixels is not None else get_settings().max_upload_pixels
    with _binary(fileobj_or_path) as source:
        _check_upload_size(source, limit)
        _check_directory(source, max_files)
        with _open_zip(source) as archive:
            return _import_members(name, data_dir, archive, max_total_bytes=max_total_bytes, max_files=max_files,
                                   max_ratio=max_ratio, max_pixels=max_pixels, test_fraction=test_fraction,
                                   seed=seed)


def _import_members(name: str, data_dir: Path | str, archive: zipfile.ZipFile, *, max_total_bytes: int,
                    max_files: int, max_ratio: float, max_pixels: int, test_fraction: float, seed: int) -> Path:
    infos = archive.infolist()
    if len(infos) > max_files:
        raise InvalidInput(f"the zip holds {len(infos)} entries, more than the limit of {max_files}")
    members = [(info, p) for info in infos if (p := _member_path(info)) is not None]
    members = [(info, p) for info, p in members if p.suffix.lower() in IMAGE_SUFFIXES]
    total = 0
    for info, _ in members:
        total += info.file_size
        # A tiny member that inflates enormously is a zip bomb; small files may compress well.
        if info.file_size > 1 << 20 and info.file_size > max_ratio * max(info.compress_size, 1):
            raise InvalidInput(f"{info.filename} expands {info.file_size // max(info.compress_size, 1)}x "
                               f"(limit {max_ratio:g}x): the zip looks like a zip bomb")
        if info.file_size > MAX_IMAGE_BYTES:
            raise InvalidInput(f"{info.filename} is {format_size(info.file_size)} uncompressed, over the limit of "
                               f"{format_size(MAX_IMAGE_BYTES)} for one image")
    if total > max_total_bytes:
        raise InvalidInput(f"the zip's images add up to {total} bytes uncompressed, over the limit of "
                           f"{max_total_bytes}")
    if not members:
        raise InvalidInput("the zip holds no images: lay it out as CLASS/IMAGE.png, one folder per class")
    # A single top folder around the class folders is common ("pets/cat/1.png"): strip it.
    tops = {p.parts[0] for _, p in members if len(p.parts) > 2}
    strip = 1 if len(tops) == 1 and all(len(p.parts) == 3 for _, p in members) else 0
    classes = []
    for info, path in members:
        parts = path.parts[strip:]
        if len(parts) != 2:
            raise InvalidInput(f"{info.filename} is not inside a class folder: lay the zip out as "
                               "CLASS/IMAGE.png, one folder per class")
        classes.append(parts[0])
    labels = _Labels(MAX_CLASSES, "the zip")
    codes = np.asarray([labels.code(c) for c in classes], dtype=np.int32)
    if len(labels.names) < 2:
        raise InvalidInput(f"found only one class ({classes[0]}): a classifier needs at least two")

    # Headers first: sizes and modes of every image, and the pixels they would decode to.
    headers, pixels = [], 0
    for info, _ in members:
        size, mode = _header(archive, info)
        pixels += size[0] * size[1]
        if pixels > max_pixels:
            raise InvalidInput(f"the zip's images add up to more than {max_pixels:,} pixels once decoded "
                               f"(limit TRAINBOARD_MAX_UPLOAD_PIXELS): use fewer or smaller images — "
                               f"they are resized to at most {MAX_SIDE}x{MAX_SIDE} anyway")
        headers.append((size, mode))
    width, height = Counter(size for size, _ in headers).most_common(1)[0][0]
    scale = min(1.0, MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grayscale = all(mode in ("1", "L", "LA", "I", "I;16", "F") for _, mode in headers)
    mode = "L" if grayscale else "RGB"

    with _scratch(data_dir, name) as scratch:
        x = open_memmap(scratch / "x.npy", mode="w+", dtype=np.uint8,
                        shape=(len(members), 1 if grayscale else 3, size[1], size[0]))
        read = 0
        for i, (info, _) in enumerate(members):
            try:
                with archive.open(info) as member:
                    data = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise _unreadable(info.filename, exc) from exc
            read += len(data)
            if len(data) > info.file_size or read > max_total_bytes:  # the directory lied about sizes
                raise InvalidInput(f"{info.filename} holds more bytes than the zip's directory says: the zip "
                                   "looks like a zip bomb")
            x[i] = _decode(data, info.filename, mode, size)
            del data
        x.flush()
        meta = {"title": name, "kind": "image", "input_shape": list(x.shape[1:])}
        return _save(name, data_dir, scratch, x, codes, labels.names, meta, test_fraction, seed)
