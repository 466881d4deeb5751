"""Download MNIST, Fashion-MNIST and CIFAR-10 from their public sources (or a mirror) and import them.

`trainboard data download NAME`, the dashboard's download buttons (which start that command as a
process of its own: the web process never downloads) and a trainer that needs a built-in that is
not here yet all land here. The files go where torchvision keeps them
(<data_dir>/downloads/MNIST/raw/, FashionMNIST/raw/, cifar-10-binary.tar.gz), then are imported as
`trainboard data import` does (app/datasets/idx.py).

Each file is checked before it is kept: the idx files by the md5 of their *uncompressed* bytes
(the published values, so a mirror may serve recompressed copies), the CIFAR-10 tarball by its
own md5. `TRAINBOARD_DATASET_MIRROR` replaces the public sources with MIRROR/<folder>/<file>
(mnist/, fashion-mnist/, cifar10/: a folder laid out like that, served over HTTP).

A download records its state in <data_dir>/downloads/<name>.json for the pages to show. No torch
here, and httpx, psutil and fcntl only inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import InvalidInput
from app.datasets import idx, store
from app.datasets.registry import DatasetUnavailable, get_dataset_info

# Called as bytes arrive: (file name, bytes so far, its size when the server says it).
Progress = Callable[[str, int, "int | None"], None]

ROOT = Path(__file__).resolve().parents[2]
MAX_FILE_BYTES = 512 * 1024 * 1024  # the largest file (CIFAR-10's tarball) is 163 MB
# An idx file once gunzipped: the largest (Fashion-/MNIST's training images) is 47 MB. A file that
# decompresses past this is refused while it is read (a small gzip can expand a thousandfold).
MAX_IDX_BYTES = 64 * 1024 * 1024
CHUNK = 1 << 16
_IDX_FILES = tuple(f"{stem}.gz" for stem in idx.IDX_MD5["mnist"])


@dataclass(frozen=True)
class Source:
    """Where one data set's files come from and where they go."""

    title: str
    folder: str  # under <data_dir>/downloads, as torchvision lays it out
    files: tuple[str, ...]
    urls: tuple[str, ...]  # public base URLs, tried in this order
    mirror_folder: str  # TRAINBOARD_DATASET_MIRROR/<mirror_folder>/<file>
    size_mb: int
    by_hand: str  # where a person gets the files for `trainboard data import`


SOURCES = {
    "mnist": Source("MNIST", "MNIST/raw", _IDX_FILES,
                    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
                    "mnist", 11, "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion_mnist": Source("Fashion-MNIST", "FashionMNIST/raw", _IDX_FILES,
                            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
                            "fashion-mnist", 30, "https://github.com/zalandoresearch/fashion-mnist"),
    "cifar10": Source("CIFAR-10", ".", (idx.CIFAR10_TAR,), ("https://www.cs.toronto.edu/~kriz/",),
                      "cifar10", 163, "https://www.cs.toronto.edu/~kriz/cifar.html (the binary version)"),
}
RUNNING, DONE, FAILED = ("starting", "downloading", "importing"), "done", "failed"


class DownloadFailed(DatasetUnavailable):
    """No source gave a good copy (offline, blocked, a bad mirror); the message says what else to do."""


class DownloadBusy(InvalidInput):
    """Another process is downloading the same data set."""


def canonical(name: str) -> str:
    """The registry's name for what a person typed: fashion-mnist → fashion_mnist."""
    return name.strip().lower().replace("-", "_")


def downloads_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / "downloads"


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise InvalidInput(f"{name!r} cannot be downloaded: only mnist, fashion-mnist and cifar10 can "
                           "(the other built-ins are made here; upload your own data on the data sets page)")
    return SOURCES[name]


def by_hand(name: str) -> str:
    """The manual alternative, in words."""
    source = _source(name)
    files = ", ".join(source.files[:-1]) + (" and " if len(source.files) > 1 else "") + source.files[-1]
    return (f"get {files} from {source.by_hand} on a machine with internet access, copy them into a folder "
            f"here and run: trainboard data import {name} FOLDER")


def _mirror_urls(source: Source, mirror: str | None) -> tuple[str, ...]:
    if mirror is None:
        from app.core.config import get_settings

        mirror = get_settings().dataset_mirror
    return (f"{mirror.rstrip('/')}/{source.mirror_folder}/",) if mirror else source.urls


def _verify(name: str, path: Path, file: str) -> None:
    """Raise InvalidInput unless `path` holds the published bytes of `file`."""
    if name == "cifar10":
        digest = hashlib.md5()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        expected, got = idx.CIFAR10_TAR_MD5, digest.hexdigest()
    else:
        expected = idx.IDX_MD5[name][file.removesuffix(".gz")]
        got = _idx_md5(name, path)
    if got != expected:
        raise InvalidInput(f"checksum mismatch (md5 {got}, expected {expected}): not the published {file}")


def _idx_md5(name: str, path: Path) -> str:
    """md5 of an idx file's bytes (gunzipped when gzipped), read in chunks and never past MAX_IDX_BYTES."""
    import gzip
    import zlib

    digest, size = hashlib.md5(), 0
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > MAX_IDX_BYTES:
                    raise InvalidInput(f"more than {MAX_IDX_BYTES >> 20} MiB once decompressed: not a {name} file")
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidInput(f"not a readable gzip file ({exc})") from exc
    return digest.hexdigest()


def _reason(exc: Exception) -> str:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} {exc.response.reason_phrase}"
    if isinstance(exc, InvalidInput):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _get(name: str, url: str, target: Path, file: str, progress: Progress | None) -> None:
    """One file from one URL into `target`, checked; nothing is left behind when it fails."""
    import httpx

    part = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=httpx.Timeout(60.0, connect=15.0),
                          headers={"User-Agent": "trainboard"}) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length") or 0) or None
            done = 0
            if progress:
                progress(file, 0, total)
            with open(part, "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    done += len(chunk)
                    if done > MAX_FILE_BYTES:
                        raise InvalidInput(f"more than {MAX_FILE_BYTES >> 20} MiB: not a {name} file")
                    out.write(chunk)
                    if progress:
                        progress(file, done, total)
        _verify(name, part, file)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def fetch_files(name: str, folder: Path | str, *, mirror: str | None = None,
                progress: Progress | None = None) -> Path:
    """Download the files of `name` that `folder` lacks (each checked); DownloadFailed says what else to do.

    `mirror` replaces the public sources (None: TRAINBOARD_DATASET_MIRROR). Returns the folder."""
    source = _source(name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for file in source.files:
        target = folder / file
        if target.is_file():  # only checked files are ever renamed into place
            continue
        errors = []
        for base in _mirror_urls(source, mirror):
            try:
                _get(name, base + file, target, file, progress)
                break
            except Exception as exc:  # network, HTTP status, a bad copy: try the next source
                errors.append(f"{base + file}: {_reason(exc)}")
        else:
            raise DownloadFailed(f"could not download {name} ({'; '.join(errors)}). Without internet access "
                                 f"here, {by_hand(name)}")
    return folder


# ---------- a whole download: lock, files, import, with its state on disk for the pages ----------

def _state_path(name: str, data_dir: Path | str) -> Path:
    return downloads_dir(data_dir) / f"{name}.json"


def _log_path(name: str, data_dir: Path | str) -> Path:
    return downloads_dir(data_dir) / f"{name}.log"


def _started(pid: int | None = None) -> float:
    """When process `pid` (this one) started: with the pid, it names the process even after the pid is reused."""
    import psutil

    return psutil.Process(pid).create_time()


def _write_state(path: Path, state: dict[str, Any]) -> None:
    part = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    part.write_text(json.dumps({**state, "updated": time.time()}))
    os.replace(part, path)


class _Recorder:
    """Writes the state file (atomically, at most every 0.25 s while bytes arrive)."""

    def __init__(self, name: str, data_dir: Path | str, files: int):
        self.path, self.files, self.seen, self.last = _state_path(name, data_dir), files, [], 0.0

    def write(self, **state: Any) -> None:
        _write_state(self.path, {**state, "files": self.files, "pid": os.getpid(), "started": _started()})
        self.last = time.monotonic()

    def __call__(self, file: str, done: int, total: int | None) -> None:
        if file not in self.seen:
            self.seen.append(file)
        elif time.monotonic() - self.last < 0.25 and done != total:
            return
        self.write(state="downloading", file=file, file_index=len(self.seen), done=done, total=total)


def download(name: str, data_dir: Path | str, *, mirror: str | None = None, progress: Progress | None = None,
             wait: bool = False) -> bool:
    """Download and import `name` into data_dir unless it is here already; True when it downloaded.

    One download per data set at a time: with another running, DownloadBusy (or, with `wait`, wait
    for it and use its files)."""
    import fcntl

    source = _source(name)
    if store.is_cached(data_dir, name):
        return False
    root = downloads_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise DownloadBusy(f"{name} is being downloaded by another process already") from None
        if store.is_cached(data_dir, name):  # the one we waited for did it
            return False
        recorder = _Recorder(name, data_dir, len(source.files))
        recorder.write(state="starting")

        def report(file: str, done: int, total: int | None) -> None:
            recorder(file, done, total)
            if progress:
                progress(file, done, total)

        try:
            folder = fetch_files(name, root / source.folder, mirror=mirror, progress=report)
            recorder.write(state="importing")
            idx.import_idx(name, folder, data_dir)
        except InvalidInput as exc:
            recorder.write(state=FAILED, message=exc.message)
            raise
        except Exception as exc:  # a full disk, a permission: shown on the page, raised here
            recorder.write(state=FAILED, message=f"{type(exc).__name__}: {exc}")
            raise
        recorder.write(state=DONE)
    return True


# ---------- the web process's side: start a download as its own process, read its state ----------

# The download of each (data dir, data set) this process started last.
_children: dict[tuple[Path, str], subprocess.Popen] = {}
_exiting: list[subprocess.Popen] = []  # earlier ones, still to be reaped
_children_lock = threading.RLock()  # start() reads state(), which reaps under it too


def _alive(current: dict[str, Any]) -> bool:
    """Whether the process that wrote this state still runs (the same process: pid and start time)."""
    import psutil

    try:
        process = psutil.Process(current["pid"])
        same = abs(process.create_time() - float(current.get("started", process.create_time()))) < 1
        return same and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def _stopped(name: str, data_dir: Path | str, current: dict[str, Any]) -> dict[str, Any]:
    """A download whose process is gone without saying so failed: with the last line of its log."""
    try:
        lines = _log_path(name, data_dir).read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    last = lines[-1] if lines else ""
    return {**current, "state": FAILED, "message": "the download stopped before it finished" + (f": {last}" if last else "")}


def start(name: str, data_dir: Path | str) -> None:
    """Start `trainboard data download NAME` as a process of its own, unless one is running."""
    _source(name)
    data_dir = Path(data_dir).resolve()
    with _children_lock:
        if (state(name, data_dir) or {}).get("state") in RUNNING:
            return
        previous = _children.pop((data_dir, name), None)
        if previous is not None and previous.poll() is None:  # it wrote its last state and is exiting
            _exiting.append(previous)
        downloads_dir(data_dir).mkdir(parents=True, exist_ok=True)
        with open(_log_path(name, data_dir), "wb") as log:
            _children[data_dir, name] = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "data", "download", name], cwd=ROOT, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})


def state(name: str, data_dir: Path | str) -> dict[str, Any] | None:
    """The last download's state (None if there was none): `state` is starting, downloading, importing,
    done or failed (with `message`); a download whose process is gone without saying so failed."""
    key = (Path(data_dir).resolve(), name)
    with _children_lock:  # reap the children that have exited
        _exiting[:] = [process for process in _exiting if process.poll() is None]
        child = _children.get(key)
        exited = None
        if child is not None and child.poll() is not None:
            exited, child = _children.pop(key), None
    try:
        current = json.loads(_state_path(name, data_dir).read_text())
    except (OSError, ValueError):
        current = None
    if child is not None and (current is None or current.get("pid") != child.pid):
        return {"state": "starting", "pid": child.pid}  # it has not written its state yet
    if exited is not None and exited.returncode != 0 and (current is None or current.get("pid") != exited.pid):
        # It ended before writing any state (an import error, an unwritable data dir): keep why.
        failed = _stopped(name, data_dir, {"pid": exited.pid})
        _write_state(_state_path(name, data_dir), failed)
        return failed
    if current is None or current.get("state") in (DONE, FAILED) or _alive(current):
        return current
    return _stopped(name, data_dir, current)


def view(name: str, data_dir: Path | str) -> dict[str, Any]:
    """What the pages show for one downloadable data set: its info, the download's state and where it goes."""
    source = _source(name)
    current = state(name, data_dir) or {}
    return {"name": name, "info": get_dataset_info(name, data_dir), "title": source.title,
            "state": current.get("state", ""), "download": current, "size_mb": source.size_mb,
            "data_dir": str(Path(data_dir).resolve()), "running": current.get("state") in RUNNING,
            "by_hand": by_hand(name)}
