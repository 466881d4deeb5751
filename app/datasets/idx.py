"""Import local copies of MNIST, Fashion-MNIST (idx files) and CIFAR-10 (binary version).

`trainboard data import NAME DIR` lands here. Checksums are verified on the uncompressed
bytes against the published values, so a truncated or tampered copy is refused. The CIFAR-10
*python* batches are pickles and are never read; the binary version is used instead.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np

from app.core.errors import InvalidInput
from app.datasets import store

# md5 of the uncompressed idx files, as published (see shared/data/MD5SUMS.uncompressed).
IDX_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
CIFAR10_TAR = "cifar-10-binary.tar.gz"
CIFAR10_TAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
_CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR10_BATCH_RECORDS = 10000


def read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InvalidInput(f"{path.name} is not a valid gzip file ({exc}); copy it again") from exc
    return raw


def _find(src_dir: Path, stem: str) -> Path:
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (src_dir / candidate).is_file():
            return src_dir / candidate
    raise InvalidInput(f"{src_dir} has no {stem} (or {stem}.gz): point the import at the folder "
                       "that holds the four idx files")


def parse_idx(data: bytes, what: str) -> np.ndarray:
    """Parse one idx file (unsigned byte payload) into a uint8 array."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise InvalidInput(f"{what} is not an idx file of unsigned bytes")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise InvalidInput(f"{what} is truncated: expected {int(np.prod(dims))} bytes of data")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(tuple(dims)).copy()


def read_idx_dir(name: str, src_dir: Path | str) -> dict[str, np.ndarray]:
    """Read and checksum the four idx files of `name` ("mnist" | "fashion_mnist") from a folder."""
    src_dir = Path(src_dir)
    arrays = {}
    for stem, md5 in IDX_MD5[name].items():
        path = _find(src_dir, stem)
        data = read_maybe_gzip(path)
        digest = hashlib.md5(data).hexdigest()
        if digest != md5:
            raise InvalidInput(f"checksum mismatch for {path.name}: md5 {digest}, expected {md5} "
                               f"(the published {name} file); the copy is corrupt or not {name}")
        arrays[stem] = parse_idx(data, path.name)
    return {
        "x_train": arrays["train-images-idx3-ubyte"][:, None],
        "y_train": arrays["train-labels-idx1-ubyte"].astype(np.int64),
        "x_test": arrays["t10k-images-idx3-ubyte"][:, None],
        "y_test": arrays["t10k-labels-idx1-ubyte"].astype(np.int64),
    }


def _parse_cifar_batch(data: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    expected = CIFAR10_BATCH_RECORDS * _CIFAR_RECORD
    if len(data) != expected:
        raise InvalidInput(f"{what} has {len(data)} bytes, expected {expected}: not a "
                           "CIFAR-10 binary batch (or truncated)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(CIFAR10_BATCH_RECORDS, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise InvalidInput(f"{what} has labels above 9: not a CIFAR-10 binary batch")
    # Each record is label + 1024 R + 1024 G + 1024 B, row-major: already (C, H, W).
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def read_cifar10(src_dir: Path | str) -> dict[str, np.ndarray]:
    """Read CIFAR-10 (binary version) from the tarball (md5-checked) or the six .bin files."""
    src_dir = Path(src_dir)
    blobs: dict[str, bytes] = {}
    tar_path = src_dir / CIFAR10_TAR
    if tar_path.is_file():
        raw = tar_path.read_bytes()
        digest = hashlib.md5(raw).hexdigest()
        if digest != CIFAR10_TAR_MD5:
            raise InvalidInput(f"checksum mismatch for {CIFAR10_TAR}: md5 {digest}, expected {CIFAR10_TAR_MD5}")
        # Members are read in memory, never extracted, so their names cannot escape anywhere.
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in CIFAR10_FILES:
                    blobs[base] = tar.extractfile(member).read()
    else:
        for folder in (src_dir, src_dir / "cifar-10-batches-bin"):
            for fname in CIFAR10_FILES:
                if (folder / fname).is_file():
                    blobs.setdefault(fname, (folder / fname).read_bytes())
    missing = [f for f in CIFAR10_FILES if f not in blobs]
    if missing:
        raise InvalidInput(f"{src_dir} lacks {', '.join(missing)}: give the folder holding "
                           f"{CIFAR10_TAR} or the CIFAR-10 *binary* batches (the python pickles are not read)")
    parts = [_parse_cifar_batch(blobs[f], f) for f in CIFAR10_FILES]
    return {
        "x_train": np.concatenate([p[0] for p in parts[:5]]),
        "y_train": np.concatenate([p[1] for p in parts[:5]]),
        "x_test": parts[5][0],
        "y_test": parts[5][1],
    }


def import_idx(name: str, src_dir: Path | str, data_dir: Path | str, *, replace: bool = True) -> Path:
    """Import a local copy of mnist, fashion_mnist or cifar10 into the cache (checksums verified).

    `replace=False` keeps a complete copy another process wrote meanwhile (see store.write_dataset)."""
    from app.datasets.registry import BUILTINS  # the registry imports this module

    if not Path(src_dir).is_dir():
        raise InvalidInput(f"{src_dir} is not a folder")
    if name in IDX_MD5:
        arrays = read_idx_dir(name, src_dir)
    elif name == "cifar10":
        arrays = read_cifar10(src_dir)
    else:
        raise InvalidInput(f"cannot import {name!r} from files: only mnist, fashion_mnist and cifar10 "
                           "can (use an upload for your own data)")
    return store.write_dataset(data_dir, name, arrays, BUILTINS[name].meta(arrays["x_train"]), replace=replace)
