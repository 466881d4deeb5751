"""Downloading MNIST & co. with the real download code, the network served by a local mirror."""

from __future__ import annotations

import fcntl
import gzip
import json
import shutil
import subprocess

import pytest

from app.core.config import get_settings
from app.core.errors import InvalidInput
from app.datasets import download, registry
from tests.conftest import find_mnist_files, free_port, serve_folder


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused


def test_download_fetches_checks_imports_and_records_its_state(tmp_path, dataset_mirror):
    seen: dict[str, tuple[int, int | None]] = {}
    data_dir = tmp_path / "data"
    assert download.download("mnist", data_dir, mirror=dataset_mirror,
                             progress=lambda file, done, total: seen.__setitem__(file, (done, total)))
    info = registry.get_dataset_info("mnist", data_dir)
    assert (info.available, info.train_size, info.test_size) == (True, 60000, 10000)
    assert set(seen) == set(download.SOURCES["mnist"].files)
    assert all(done == total and total > 0 for done, total in seen.values())  # each file to its last byte
    assert sorted(p.name for p in (data_dir / "downloads" / "MNIST" / "raw").iterdir()) == \
        sorted(download.SOURCES["mnist"].files)  # torchvision's layout, no partial files left
    assert download.state("mnist", data_dir)["state"] == "done"
    # Here already: nothing is fetched (the source is unreachable now).
    assert download.download("mnist", data_dir, mirror=unreachable()) is False


def test_offline_fails_with_the_manual_alternative_and_records_it(tmp_path):
    data_dir = tmp_path / "data"
    mirror = unreachable()
    with pytest.raises(download.DownloadFailed) as caught:
        download.download("mnist", data_dir, mirror=mirror)
    message = caught.value.message
    assert f"{mirror}/mnist/train-images-idx3-ubyte.gz" in message and "Connection refused" in message
    assert "trainboard data import mnist FOLDER" in message and "https://ossci-datasets.s3.amazonaws.com/mnist/" in message
    state = download.state("mnist", data_dir)
    assert state["state"] == "failed" and state["message"] == message
    assert not registry.get_dataset_info("mnist", data_dir).available


def test_a_copy_that_is_not_the_published_file_is_refused(tmp_path, mnist_files):
    bad = tmp_path / "bad" / "mnist"
    shutil.copytree(mnist_files, bad)
    labels = bytearray(gzip.decompress((bad / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[100] = (labels[100] + 1) % 10
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    folder = tmp_path / "files"
    with serve_folder(tmp_path / "bad") as mirror, pytest.raises(download.DownloadFailed, match="checksum mismatch"):
        download.fetch_files("mnist", folder, mirror=mirror)
    assert "t10k-labels-idx1-ubyte.gz" not in {p.name for p in folder.iterdir()}
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_one_download_of_a_data_set_at_a_time(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "downloads").mkdir(parents=True)
    with open(data_dir / "downloads" / "mnist.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as another download holds it
        with pytest.raises(download.DownloadBusy, match="being downloaded by another process"):
            download.download("mnist", data_dir, mirror=unreachable())


def test_a_trainer_downloads_a_missing_built_in_from_the_configured_mirror(tmp_path, dataset_mirror, monkeypatch):
    monkeypatch.setenv("TRAINBOARD_DATASET_MIRROR", dataset_mirror)
    get_settings.cache_clear()
    try:
        data = registry.load_dataset("mnist", tmp_path / "data", download=True)
    finally:
        get_settings.cache_clear()
    assert len(data.y_test) == 10000


def test_only_the_three_downloadable_sets_download(tmp_path):
    with pytest.raises(InvalidInput, match="only mnist, fashion-mnist and cifar10"):
        download.download("digits", tmp_path)
    assert download.canonical("Fashion-MNIST") == "fashion_mnist"


def test_the_tests_mnist_files_come_from_the_documented_places_then_a_cache_filled_once(tmp_path, dataset_mirror,
                                                                                      mnist_files):
    places, cache = [tmp_path / "shared" / "mnist"], tmp_path / "cache" / "mnist"
    assert find_mnist_files([mnist_files], cache, mirror=unreachable()) == mnist_files  # documented place
    assert find_mnist_files(places, cache, mirror=dataset_mirror) == cache  # downloaded into the cache
    assert registry.import_idx("mnist", cache, tmp_path / "data").train_size == 60000
    assert find_mnist_files(places, cache, mirror=unreachable()) == cache  # once: the cache needs no network
    with pytest.raises(RuntimeError) as caught:
        find_mnist_files(places, tmp_path / "empty", mirror=unreachable())
    assert str(places[0]) in str(caught.value) and "TRAINBOARD_SHARED_DATA" in str(caught.value)
    assert "could not be downloaded" in str(caught.value) and "Connection refused" in str(caught.value)


def test_state_of_a_download_whose_process_died_is_failed(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "downloads").mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (data_dir / "downloads" / "mnist.json").write_text(json.dumps({"state": "downloading", "pid": dead.pid}))
    (data_dir / "downloads" / "mnist.log").write_text("downloading train-images-idx3-ubyte.gz\nKilled\n")
    state = download.state("mnist", data_dir)
    assert state["state"] == "failed" and state["message"] == "the download stopped before it finished: Killed"


def test_a_file_that_decompresses_past_the_cap_is_refused_while_it_is_read(tmp_path, monkeypatch):
    """A small gzip can expand a thousandfold: the check stops reading at the cap, not after."""
    monkeypatch.setattr(download, "MAX_IDX_BYTES", 4 << 20)
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as out:
        for _ in range(8):
            out.write(bytes(1 << 20))  # 8 MiB of zeros: a few KiB compressed
    assert bomb.stat().st_size < 64 << 10
    with pytest.raises(InvalidInput, match="more than 4 MiB once decompressed: not a mnist file"):
        download._verify("mnist", bomb, "train-images-idx3-ubyte.gz")
    broken = tmp_path / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 not gzip after all")
    with pytest.raises(InvalidInput, match="not a readable gzip file"):
        download._verify("mnist", broken, "t10k-labels-idx1-ubyte.gz")
