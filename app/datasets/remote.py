"""A remote trainer's node cache: data sets fetched from the server, kept by content hash.

A trainer on another machine (a Ray worker) needs only the server's URL and its run's ingest
token. It asks the server for the run's data set (`GET /api/ingest/runs/{id}/dataset`: each file's
name, sha256 and size), downloads the files it does not hold yet into `blobs/<sha256>` (checked
against the hash before they are kept) and reads the data set through a view folder of links to
those blobs, `views/<digest>/datasets/<name>/`, laid out like the server's own data directory,
so app/datasets/registry.py loads it unchanged. A data set that changes on the server gets new
hashes and so a new view; the next run of the same data set on that node downloads nothing.

The cache lives in TRAINBOARD_NODE_CACHE (default ~/.cache/trainboard).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.datasets.registry import NAME_RE
from app.datasets.store import FILE_NAMES, is_cached

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class BadManifest(ValueError):
    """The server's answer does not describe a data set this cache can hold."""


def node_cache() -> Path:
    """Where this node keeps what remote trainers fetch."""
    return Path(os.environ.get("TRAINBOARD_NODE_CACHE") or Path.home() / ".cache" / "trainboard")


def check_manifest(manifest: Any) -> tuple[str, list[dict[str, Any]]]:
    """The data set's name and files, when every part of the manifest is one this cache can trust as
    a path (a name the server could have made, the known file names, sha256 digests)."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise BadManifest("the server's data set manifest has no file list")
    name = manifest.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadManifest(f"the server named a data set this cache cannot hold: {name!r}")
    files = manifest["files"]
    if not all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in files):
        raise BadManifest("every file in the server's data set manifest needs a name")
    names = sorted(f["name"] for f in files)
    if names != sorted(FILE_NAMES):
        raise BadManifest(f"a data set has the files {', '.join(FILE_NAMES)}; the server listed {names}")
    for f in files:
        if not (isinstance(f.get("sha256"), str) and SHA256_RE.match(f["sha256"])
                and isinstance(f.get("bytes"), int) and f["bytes"] >= 0):
            raise BadManifest(f"the server's entry for {f['name']} has no valid sha256 and size")
    return name, files


def materialize(manifest: Any, download: Callable[[str], Iterator[bytes]], cache: Path | None = None) -> Path:
    """A data directory holding the manifest's data set: missing blobs are fetched with
    `download(file_name)` (chunks of bytes) and checked against their sha256 and size."""
    name, files = check_manifest(manifest)
    cache = (cache or node_cache()).resolve()
    blobs = cache / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for f in files:
        blob = blobs / f["sha256"]
        if blob.is_file():
            continue
        part = blobs / f".{f['sha256']}.{secrets.token_hex(6)}.part"
        digest, size = hashlib.sha256(), 0
        try:
            with open(part, "wb") as out:
                for chunk in download(f["name"]):
                    size += len(chunk)
                    if size > f["bytes"]:
                        raise BadManifest(f"{name}/{f['name']} is larger than the {f['bytes']} bytes announced")
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != f["sha256"] or size != f["bytes"]:
                raise BadManifest(f"{name}/{f['name']} arrived with another sha256 or size than announced")
            os.replace(part, blob)
        finally:
            with contextlib.suppress(OSError):
                part.unlink()
    key = hashlib.sha256(json.dumps(sorted((f["name"], f["sha256"]) for f in files)).encode()).hexdigest()[:24]
    root = cache / "views" / f"{name}-{key}"
    if not is_cached(root, name):
        staging = cache / "views" / f".{name}-{key}.{secrets.token_hex(6)}"
        (staging / "datasets" / name).mkdir(parents=True)
        for f in files:
            (staging / "datasets" / name / f["name"]).symlink_to(blobs / f["sha256"])
        if root.exists():  # a view left half-made (e.g. by a crash): make it again
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(staging, root)
        except OSError:  # another trainer on this node made the same view first
            if not is_cached(root, name):
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root
