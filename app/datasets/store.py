"""The on-disk cache: one folder of .npy files plus meta.json per data set, written atomically.

Layout: <data_dir>/datasets/<name>/{x_train,y_train,x_test,y_test}.npy and meta.json.
Arrays are saved with np.save and loaded with allow_pickle=False: nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
# The files of a cached data set, as remote trainers fetch them (app/datasets/remote.py).
FILE_NAMES = ("meta.json", *(f"{a}.npy" for a in ARRAY_NAMES))
DIGESTS = ".digests.json"


def datasets_root(data_dir: Path | str) -> Path:
    """The folder that holds every cached data set."""
    return Path(data_dir) / "datasets"


def dataset_dir(data_dir: Path | str, name: str) -> Path:
    """The cache folder of one data set (it may not exist yet)."""
    return datasets_root(data_dir) / name


def is_cached(data_dir: Path | str, name: str) -> bool:
    """True when the data set has been materialized completely."""
    folder = dataset_dir(data_dir, name)
    return (folder / "meta.json").is_file() and all((folder / f"{a}.npy").is_file() for a in ARRAY_NAMES)


def read_meta(data_dir: Path | str, name: str) -> dict[str, Any] | None:
    """meta.json of a cached data set, or None when it is not cached."""
    path = dataset_dir(data_dir, name) / "meta.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def read_arrays(data_dir: Path | str, name: str, *, mmap: bool = False) -> dict[str, np.ndarray]:
    """The four arrays of a cached data set, read whole or memory-mapped. Mapped copy-on-write ("c"):
    pages come from the page cache as they are touched (a trainer maps the decoded cache instead of
    reading it), and a write, should a reader make one, stays private to that process."""
    folder = dataset_dir(data_dir, name)
    mode = "c" if mmap else None
    return {a: np.load(folder / f"{a}.npy", mmap_mode=mode, allow_pickle=False) for a in ARRAY_NAMES}


def write_dataset(data_dir: Path | str, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any], *,
                  replace: bool = True) -> Path:
    """Write arrays + meta into a temp folder inside data_dir, then rename it into place.

    Readers never see a half-written data set, and a failure leaves nothing behind. With
    `replace=False` (materializing a built-in on first use) a complete copy that another process
    wrote meanwhile wins and ours is discarded: swapping it out would pull files from under the
    trainers already reading it. An explicit re-import (`replace=True`) swaps in the new copy.
    """
    root = datasets_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        for key in ARRAY_NAMES:
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(arrays[key]), allow_pickle=False)
        meta = {**meta, "name": name, "train_size": int(len(arrays["y_train"])),
                "test_size": int(len(arrays["y_test"]))}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if not replace and is_cached(data_dir, name):
            return final
        if final.exists():
            # Re-import: move the old copy aside first so the swap is one rename.
            old = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=root))
            os.replace(final, old / name)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not is_cached(data_dir, name):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def file_digests(data_dir: Path | str, name: str) -> list[dict[str, Any]]:
    """Each file of a cached data set with its sha256 and size: what a remote trainer's node cache
    is keyed by. Hashed once per version of the files: the digests are kept next to them, keyed by
    each file's size and modification time."""
    folder = dataset_dir(data_dir, name)
    stats = {f: (folder / f).stat() for f in FILE_NAMES}
    keys = {f: [st.st_size, st.st_mtime_ns] for f, st in stats.items()}
    try:
        saved = json.loads((folder / DIGESTS).read_text())
    except (OSError, ValueError):
        saved = {}
    files, changed = [], False
    for f in FILE_NAMES:
        entry = saved.get(f) if isinstance(saved, dict) else None
        if not isinstance(entry, dict) or entry.get("key") != keys[f]:
            digest = hashlib.sha256()
            with open(folder / f, "rb") as file:
                while block := file.read(1 << 20):
                    digest.update(block)
            entry, changed = {"key": keys[f], "sha256": digest.hexdigest()}, True
            saved = {**(saved if isinstance(saved, dict) else {}), f: entry}
        files.append({"name": f, "sha256": entry["sha256"], "bytes": keys[f][0]})
    if changed:  # best effort: another reader may write the same digests at the same time
        tmp = folder / f".{DIGESTS}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(saved))
            os.replace(tmp, folder / DIGESTS)
        except OSError:
            tmp.unlink(missing_ok=True)
    return files
