"""Downloading a built-in from the pages: a process of its own, its progress on the page until it is done,
its error shown; the hints say where the files go and how to import them by hand."""

from __future__ import annotations

import json
import os
import re
import time
from html import unescape

from app.core.config import get_settings
from app.datasets import registry
from tests.conftest import free_port

HTMX = {"HX-Request": "true"}


def section(html: str, element_id: str) -> str:
    match = re.search(rf'<div class="download-state" id="{element_id}".*?\n</div>', html, re.S)
    assert match, f"no #{element_id} in the page"
    return match.group(0)


def test_the_hint_says_where_files_go_and_how_to_import_them_without_markdown(client, data_dir):
    for page in ("/", "/datasets"):
        hint = section(client.get(page).text, "download-mnist")
        assert f"into <code>{data_dir.resolve()}</code>" in hint
        assert "<code>trainboard data import mnist FOLDER</code>" in hint and "`" not in hint
    quick = re.search(r'<section class="quick-starts.*?</section>', client.get("/").text, re.S).group(0)
    assert "`" not in quick
    datasets_page = client.get("/datasets").text
    assert 'hx-post="/datasets/cifar10/download"' in section(datasets_page, "download-cifar10")


def test_a_download_runs_in_its_own_process_and_its_error_is_shown(client, data_dir, monkeypatch):
    mirror = f"http://127.0.0.1:{free_port()}"  # offline: nothing listens there
    monkeypatch.setenv("TRAINBOARD_DATASET_MIRROR", mirror)
    get_settings.cache_clear()
    started = client.post("/datasets/mnist/download", headers=HTMX)
    assert started.status_code == 200
    assert 'data-state="starting"' in started.text and 'hx-trigger="every 1s"' in started.text  # polls while it runs
    deadline = time.monotonic() + 60
    while 'data-state="failed"' not in (answer := client.get("/datasets/mnist/download", headers=HTMX)).text:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    error = unescape(re.search(r'<p class="error download-error" role="alert">(.*?)</p>', answer.text, re.S).group(1))
    assert f"could not download mnist ({mirror}/mnist/train-images-idx3-ubyte.gz" in error
    assert "trainboard data import mnist FOLDER" in error
    assert 'hx-trigger' not in answer.text and 'data-download="mnist"' in answer.text  # stopped polling; retry
    assert 'id="download-mnist" data-state="failed"' in client.get("/").text  # the dashboard shows it too
    # The dashboard's panel polls without a Download button of its own: its preset buttons are that.
    assert 'hx-post="/datasets/mnist/download?buttons=0"' in client.get("/").text
    assert 'data-download="mnist"' not in client.get("/datasets/mnist/download?buttons=0", headers=HTMX).text
    assert (data_dir / "downloads" / "mnist.log").read_text().startswith("error: could not download mnist")
    again = client.post("/datasets/mnist/download", headers=HTMX)  # the button tries again
    assert again.status_code == 200 and 'data-state="starting"' in again.text
    while 'data-state="failed"' not in client.get("/datasets/mnist/download", headers=HTMX).text:
        assert time.monotonic() < deadline + 60, "the second try never ended"  # (and it is reaped)
        time.sleep(0.2)


def test_progress_is_shown_until_done_then_the_page_reloads(client, data_dir, mnist_files):
    downloads = data_dir / "downloads"
    downloads.mkdir()
    state = {"state": "downloading", "pid": os.getpid(), "file": "train-images-idx3-ubyte.gz", "file_index": 1,
             "files": 4, "done": 1 << 20, "total": 10 << 20}
    (downloads / "mnist.json").write_text(json.dumps(state))
    for page in ("/", "/datasets"):
        shown = section(client.get(page).text, "download-mnist")
        assert 'hx-trigger="every 1s"' in shown and '<progress max="10485760" value="1048576">' in shown
        assert "train-images-idx3-ubyte.gz (file 1 of 4)" in shown and "1.0 MiB of 10.0 MiB" in shown
    assert "HX-Refresh" not in client.get("/datasets/mnist/download", headers=HTMX).headers
    registry.import_idx("mnist", mnist_files, data_dir)
    (downloads / "mnist.json").write_text(json.dumps({"state": "done", "pid": os.getpid()}))
    assert client.get("/datasets/mnist/download", headers=HTMX).headers["HX-Refresh"] == "true"
    launch = re.search(r'<button[^>]*data-launch="preset:mnist-mlp"[^>]*>', client.get("/").text, re.S).group(0)
    assert "data-download" not in launch and "disabled" not in launch


def test_only_downloadable_sets_have_a_download(client):
    assert client.get("/datasets/digits/download").status_code == 404
    assert client.post("/datasets/nope/download", headers=HTMX).status_code == 404
