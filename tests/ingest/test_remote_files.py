"""Files for remote trainers over the ingest API: the data set manifest and its files (sha256 cached in
.digests.json), the node cache (app/datasets/remote.py), checkpoint upload / prune / resume download,
uploaded exports, and HttpRunStore's fetch/save round trip against a real server."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import LiveServer
from tests.runs.helpers import run_body

FILES = ["meta.json", "x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"]
ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


# -- helpers -------------------------------------------------------------------------------------

def _claimed_run(client, **config) -> tuple[int, dict[str, str]]:
    """A queued run (digits) claimed the way the scheduler claims it, with a fresh ingest token."""
    from app.core.db import session_scope
    from app.runs import ingest, lifecycle

    created = client.post("/api/runs", json=run_body(**config))
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    with session_scope() as db_session:
        assert lifecycle.claim(db_session, run_id, "remote:test") is True
        token = ingest.issue_token(db_session, run_id)
    return run_id, {"Authorization": f"Bearer {token}"}


def _fail(run_id: int) -> None:
    from app.core.db import session_scope
    from app.runs import lifecycle

    with session_scope() as db_session:
        assert lifecycle.fail(db_session, run_id, "worker lost") is True


def _prefix(run_id: int) -> str:
    return f"/api/ingest/runs/{run_id}"


def _manifest(client, run_id: int, auth: dict[str, str]) -> dict:
    answer = client.get(f"{_prefix(run_id)}/dataset", headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _downloader(client, run_id: int, auth: dict[str, str], calls: list[str]):
    def download(name: str) -> Iterator[bytes]:
        calls.append(name)
        answer = client.get(f"{_prefix(run_id)}/dataset/{name}", headers=auth)
        assert answer.status_code == 200, answer.text
        body = answer.content
        for start in range(0, len(body), 1000):  # several chunks, as a stream would give
            yield body[start:start + 1000]

    return download


def _assert_same_arrays(a, b) -> None:
    for key in ARRAYS:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
        assert getattr(a, key).dtype == getattr(b, key).dtype, key
    assert a.class_names == b.class_names and a.input_shape == b.input_shape
    assert (a.mean, a.std) == (b.mean, b.std)


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- 1. the manifest and the files ---------------------------------------------------------------

def test_the_manifest_lists_the_five_files_with_the_sha256_and_size_of_what_is_served(client, data_dir):
    run_id, auth = _claimed_run(client)
    manifest = _manifest(client, run_id, auth)
    assert manifest["name"] == "digits"
    assert [f["name"] for f in manifest["files"]] == FILES
    folder = data_dir / "datasets" / "digits"
    for entry in manifest["files"]:
        served = client.get(f"{_prefix(run_id)}/dataset/{entry['name']}", headers=auth)
        assert served.status_code == 200, served.text
        assert served.headers["content-type"] == "application/octet-stream"
        on_disk = (folder / entry["name"]).read_bytes()
        assert served.content == on_disk, entry["name"]
        assert entry["sha256"] == hashlib.sha256(served.content).hexdigest(), entry["name"]
        assert entry["bytes"] == len(served.content) == (folder / entry["name"]).stat().st_size
    assert json.loads(client.get(f"{_prefix(run_id)}/dataset/meta.json", headers=auth).content)["name"] == "digits"


def test_dataset_routes_refuse_unknown_files_missing_or_foreign_tokens_and_ended_runs(client):
    run_id, auth = _claimed_run(client)
    other_id, other_auth = _claimed_run(client)
    _manifest(client, run_id, auth)
    for name in (".digests.json", "x_train", "secret.npy", "..%2Fmeta.json"):
        missing = client.get(f"{_prefix(run_id)}/dataset/{name}", headers=auth)
        assert missing.status_code == 404, (name, missing.text)
    unknown = client.get(f"{_prefix(run_id)}/dataset/.digests.json", headers=auth).json()
    assert "not '.digests.json'" in unknown["detail"] and "x_train.npy" in unknown["detail"]

    assert client.get(f"{_prefix(run_id)}/dataset").status_code == 401
    assert client.get(f"{_prefix(run_id)}/dataset/meta.json").status_code == 401
    assert client.get(f"{_prefix(run_id)}/dataset", headers={"Authorization": "Bearer nope"}).status_code == 403
    foreign = client.get(f"{_prefix(run_id)}/dataset", headers=other_auth)
    assert foreign.status_code == 403 and f"not the ingest token of run {run_id}" in foreign.json()["detail"]
    assert client.get(f"{_prefix(run_id)}/dataset/meta.json", headers=other_auth).status_code == 403
    assert client.get(f"{_prefix(other_id)}/dataset", headers=other_auth).status_code == 200

    _fail(run_id)
    ended = client.get(f"{_prefix(run_id)}/dataset", headers=auth)
    assert ended.status_code == 403 and "the run has ended" in ended.json()["detail"]
    assert client.get(f"{_prefix(run_id)}/dataset/x_train.npy", headers=auth).status_code == 403
    assert client.get(f"{_prefix(other_id)}/dataset/x_train.npy", headers=other_auth).status_code == 200


@pytest.mark.parametrize("outside", ["relative", "absolute"])
def test_an_external_run_cannot_name_a_folder_outside_the_datasets(client, data_dir, tmp_path, outside):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in FILES:
        (elsewhere / name).write_text(f"not a data set: {name}")
    (data_dir / "datasets").mkdir(exist_ok=True)  # there once any data set was cached
    dataset = "../../elsewhere" if outside == "relative" else str(elsewhere)
    created = client.post("/api/ingest/runs", json={"name": "script", "dataset": dataset})
    if created.status_code == 422:  # refusing the name up front is a fix too
        return
    run_id, auth = created.json()["id"], {"Authorization": f"Bearer {created.json()['token']}"}
    manifest = client.get(f"{_prefix(run_id)}/dataset", headers=auth)
    served = client.get(f"{_prefix(run_id)}/dataset/meta.json", headers=auth)
    assert (manifest.status_code, served.status_code) == (404, 404), (manifest.text, served.text)
    assert sorted(p.name for p in elsewhere.iterdir()) == sorted(FILES)  # no .digests.json written there


# -- 2. digests are computed once per version of the files --------------------------------------

def test_digests_are_kept_in_digests_json_and_recomputed_only_for_a_changed_file(client, data_dir):
    run_id, auth = _claimed_run(client)
    folder = data_dir / "datasets" / "digits"
    first = _manifest(client, run_id, auth)
    saved = json.loads((folder / ".digests.json").read_text())
    assert sorted(saved) == sorted(FILES)
    for entry in first["files"]:
        stat = (folder / entry["name"]).stat()
        assert saved[entry["name"]] == {"key": [stat.st_size, stat.st_mtime_ns], "sha256": entry["sha256"]}

    # A stored digest with the file's key is trusted: the second manifest does not hash again.
    planted = "0" * 64
    saved["x_test.npy"]["sha256"] = planted
    (folder / ".digests.json").write_text(json.dumps(saved))
    second = {f["name"]: f["sha256"] for f in _manifest(client, run_id, auth)["files"]}
    assert second["x_test.npy"] == planted
    assert {k: v for k, v in second.items() if k != "x_test.npy"} == \
        {f["name"]: f["sha256"] for f in first["files"] if f["name"] != "x_test.npy"}

    # A new modification time is a new version of the file: hashed again, and stored again.
    stat = (folder / "x_test.npy").stat()
    os.utime(folder / "x_test.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    third = {f["name"]: f["sha256"] for f in _manifest(client, run_id, auth)["files"]}
    real = hashlib.sha256((folder / "x_test.npy").read_bytes()).hexdigest()
    assert third["x_test.npy"] == real != planted
    restored = json.loads((folder / ".digests.json").read_text())["x_test.npy"]
    assert restored == {"key": [stat.st_size, stat.st_mtime_ns + 1_000_000_000], "sha256": real}
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_file_digests_hashes_each_file_once(data_dir, monkeypatch):
    from app.datasets import registry, store

    registry.ensure_cached("digits", data_dir)
    hashed: list[int] = []
    real_sha256 = hashlib.sha256

    class Spy:
        @staticmethod
        def sha256(*args):
            hashed.append(1)
            return real_sha256(*args)

    monkeypatch.setattr(store, "hashlib", Spy)
    first = store.file_digests(data_dir, "digits")
    assert len(hashed) == 5
    assert store.file_digests(data_dir, "digits") == first
    assert len(hashed) == 5  # nothing hashed the second time


# -- 3. the node cache ---------------------------------------------------------------------------

def test_materialize_builds_a_view_that_loads_like_the_server_copy_and_downloads_once(client, data_dir, tmp_path):
    from app.datasets import registry, remote

    run_id, auth = _claimed_run(client)
    manifest = _manifest(client, run_id, auth)
    cache = tmp_path / "node"
    calls: list[str] = []
    root = remote.materialize(manifest, _downloader(client, run_id, auth, calls), cache)
    assert sorted(calls) == sorted(FILES)
    assert root.parent == (cache / "views").resolve() and root.name.startswith("digits-")
    view = root / "datasets" / "digits"
    for entry in manifest["files"]:
        link = view / entry["name"]
        assert link.is_symlink() and link.resolve() == (cache / "blobs" / entry["sha256"]).resolve()
        assert link.read_bytes() == (data_dir / "datasets" / "digits" / entry["name"]).read_bytes()
    remote_copy = registry.load_dataset("digits", root, download=False)
    _assert_same_arrays(remote_copy, registry.load_dataset("digits", data_dir, download=False))

    again: list[str] = []
    assert remote.materialize(manifest, _downloader(client, run_id, auth, again), cache) == root
    assert again == []
    assert sorted(p.name for p in (cache / "blobs").iterdir()) == sorted(f["sha256"] for f in manifest["files"])
    assert [p.name for p in (cache / "views").iterdir()] == [root.name]


def test_materialize_refuses_wrong_bytes_and_keeps_nothing_of_them(client, tmp_path):
    from app.datasets import remote

    run_id, auth = _claimed_run(client)
    manifest = _manifest(client, run_id, auth)
    served = {f: client.get(f"{_prefix(run_id)}/dataset/{f}", headers=auth).content for f in FILES}

    def corrupted(how):
        def download(name: str) -> Iterator[bytes]:
            yield how(served[name]) if name == "x_train.npy" else served[name]
        return download

    flipped = lambda b: b[:-1] + bytes([b[-1] ^ 1])  # noqa: E731 (same size, other sha256)
    for case, how in (("flipped", flipped), ("short", lambda b: b[:-1]), ("long", lambda b: b + b"\0")):
        cache = tmp_path / case
        with pytest.raises(remote.BadManifest) as refused:
            remote.materialize(manifest, corrupted(how), cache)
        assert "digits/x_train.npy" in str(refused.value), case
        x_train = next(f["sha256"] for f in manifest["files"] if f["name"] == "x_train.npy")
        assert not (cache / "blobs" / x_train).exists(), case
        assert [p.name for p in (cache / "blobs").iterdir() if p.name.endswith(".part")] == [], case
        assert not (cache / "views").exists(), case


def test_materialize_refuses_manifests_it_cannot_trust_before_touching_the_cache(client, tmp_path):
    from app.datasets import remote

    run_id, auth = _claimed_run(client)
    good = _manifest(client, run_id, auth)

    def with_files(change) -> dict:
        return {"name": "digits", "files": change([dict(f) for f in good["files"]])}

    def set_first(key, value):
        return lambda files: [{**files[0], key: value}, *files[1:]]

    bad = {
        "dot-dot name": {**good, "name": "../x"},
        "slash name": {**good, "name": "a/b"},
        "capital name": {**good, "name": "Digits"},
        "no name": {"files": good["files"]},
        "no files": {"name": "digits"},
        "extra file": with_files(lambda fs: fs + [{"name": "extra.npy", "sha256": "a" * 64, "bytes": 1}]),
        "missing file": with_files(lambda fs: fs[1:]),
        "renamed file": with_files(set_first("name", "../meta.json")),
        "duplicate file": with_files(lambda fs: fs[:-1] + [fs[0]]),
        "non-hex sha256": with_files(set_first("sha256", "g" * 64)),
        "upper-case sha256": with_files(set_first("sha256", good["files"][0]["sha256"].upper())),
        "short sha256": with_files(set_first("sha256", "ab")),
        "path sha256": with_files(set_first("sha256", "../" + "a" * 61)),
        "negative size": with_files(set_first("bytes", -1)),
        "text size": with_files(set_first("bytes", "12")),
    }
    cache = tmp_path / "node"
    for case, manifest in bad.items():
        calls: list[str] = []
        with pytest.raises(remote.BadManifest):
            remote.materialize(manifest, _downloader(client, run_id, auth, calls), cache)
        assert calls == [], case
        assert not cache.exists(), case


@pytest.mark.parametrize("extra", ["junk", {"sha256": "a" * 64, "bytes": 1}], ids=["not-a-dict", "no-name"])
def test_malformed_file_entries_are_a_bad_manifest(client, tmp_path, extra):
    from app.datasets import remote

    run_id, auth = _claimed_run(client)
    manifest = _manifest(client, run_id, auth)
    with pytest.raises(remote.BadManifest):
        remote.materialize({**manifest, "files": manifest["files"] + [extra]}, lambda name: iter(()), tmp_path)


# -- 4. checkpoints ------------------------------------------------------------------------------

def test_checkpoints_are_stored_where_a_local_run_keeps_them_and_pruned_ones_deleted(client, data_dir):
    from app.runs.service import checkpoint_path

    run_id, auth = _claimed_run(client)
    bodies = {epoch: os.urandom(3000 + epoch) for epoch in (1, 2, 3, 4)}
    for epoch, pruned in ((1, ""), (2, ""), (3, "1")):
        answer = client.put(f"{_prefix(run_id)}/checkpoints/{epoch}", params={"pruned": pruned},
                            content=bodies[epoch], headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"epoch": epoch, "bytes": len(bodies[epoch])}
    folder = data_dir / "artifacts" / f"run-{run_id}" / "checkpoints"
    assert checkpoint_path(run_id, 2).resolve() == (folder / "epoch-0002.pt").resolve()
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0002.pt", "epoch-0003.pt"]
    assert (folder / "epoch-0002.pt").read_bytes() == bodies[2]
    assert (folder / "epoch-0003.pt").read_bytes() == bodies[3]

    # `pruned` naming the uploaded epoch never deletes it; the others it names go.
    answer = client.put(f"{_prefix(run_id)}/checkpoints/4", params={"pruned": "2,4,99"},
                        content=bodies[4], headers=auth)
    assert answer.status_code == 200, answer.text
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0003.pt", "epoch-0004.pt"]
    assert (folder / "epoch-0004.pt").read_bytes() == bodies[4]
    # An upload again replaces the file whole.
    client.put(f"{_prefix(run_id)}/checkpoints/4", params={"pruned": "4"}, content=b"v2", headers=auth)
    assert (folder / "epoch-0004.pt").read_bytes() == b"v2"

    assert client.put(f"{_prefix(run_id)}/checkpoints/5", content=b"x").status_code == 401
    assert client.put(f"{_prefix(run_id)}/checkpoints/0", content=b"x", headers=auth).status_code == 422
    assert client.put(f"{_prefix(run_id)}/checkpoints/5", params={"pruned": "../3"},
                      content=b"x", headers=auth).status_code == 422
    _fail(run_id)
    assert client.put(f"{_prefix(run_id)}/checkpoints/5", content=b"x", headers=auth).status_code == 403
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0003.pt", "epoch-0004.pt"]


def test_a_resumed_run_downloads_its_checkpoint_and_a_fresh_run_gets_404(client):
    from app.core.db import session_scope
    from app.runs import ingest, lifecycle, service

    run_id, auth = _claimed_run(client)
    fresh = client.get(f"{_prefix(run_id)}/checkpoint", headers=auth)
    assert fresh.status_code == 404
    assert fresh.json()["detail"] == f"run {run_id} starts from scratch: it has no checkpoint to resume from"
    assert client.get(f"{_prefix(run_id)}/checkpoint").status_code == 401

    bodies = {1: b"epoch one" * 50, 2: b"epoch two" * 60}
    events = {"events": [{"seq": 1, "kind": "epoch", "payload": {"epoch": 1}},
                         {"seq": 2, "kind": "epoch", "payload": {"epoch": 2}}]}
    assert client.post(f"{_prefix(run_id)}/events", json=events, headers=auth).status_code == 200
    for epoch, body in bodies.items():
        assert client.put(f"{_prefix(run_id)}/checkpoints/{epoch}", content=body, headers=auth).status_code == 200
    _fail(run_id)
    assert client.get(f"{_prefix(run_id)}/checkpoint", headers=auth).status_code == 403  # ended

    with session_scope() as db_session:
        resumed = service.resume(db_session=db_session, run_id=run_id)
        assert (resumed.status, resumed.resume_epoch) == ("queued", 2)
        assert lifecycle.claim(db_session, run_id, "remote:test") is True
        new_auth = {"Authorization": f"Bearer {ingest.issue_token(db_session, run_id)}"}
    assert client.get(f"{_prefix(run_id)}/order", headers=new_auth).json()["resume_epoch"] == 2
    answer = client.get(f"{_prefix(run_id)}/checkpoint", headers=new_auth)
    assert answer.status_code == 200 and answer.content == bodies[2]
    assert client.get(f"{_prefix(run_id)}/checkpoint", headers=auth).status_code == 403  # the old token

    # A fork downloads its parent's checkpoint of the fork epoch.
    forked = client.post(f"/api/runs/{run_id}/fork", json={"epoch": 1})
    assert forked.status_code == 201, forked.text
    fork_id = forked.json()["id"]
    with session_scope() as db_session:
        assert lifecycle.claim(db_session, fork_id, "remote:test") is True
        fork_auth = {"Authorization": f"Bearer {ingest.issue_token(db_session, fork_id)}"}
    answer = client.get(f"{_prefix(fork_id)}/checkpoint", headers=fork_auth)
    assert answer.status_code == 200 and answer.content == bodies[1]

    # A checkpoint that is gone from the server is a 404 that says so.
    service.checkpoint_path(run_id, 1).unlink()
    missing = client.get(f"{_prefix(fork_id)}/checkpoint", headers=fork_auth)
    assert missing.status_code == 404 and "epoch-0001.pt" in missing.json()["detail"]


def test_a_checkpoint_larger_than_the_json_body_limit_is_accepted(client, data_dir):
    from app.runs.service import checkpoint_path

    run_id, auth = _claimed_run(client)
    body = os.urandom(600 * 1024)  # a small CNN's checkpoint with its optimizer state is larger than this
    answer = client.put(f"{_prefix(run_id)}/checkpoints/1", content=body, headers=auth)
    assert answer.status_code == 200, answer.text
    assert checkpoint_path(run_id, 1).read_bytes() == body


# -- 5. exports ----------------------------------------------------------------------------------

def test_an_artifact_with_its_own_filename_lands_in_export_and_is_listed_by_name(client, data_dir):
    run_id, auth = _claimed_run(client)
    body = os.urandom(700 * 1024)  # over the JSON body limit: artifacts have their own
    answer = client.put(f"{_prefix(run_id)}/artifacts/onnx", params={"filename": "model.onnx"},
                        content=body, headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"name": "onnx", "bytes": len(body)}
    export = data_dir / "artifacts" / f"run-{run_id}" / "export"
    assert sorted(p.name for p in export.iterdir()) == ["model.onnx"]
    assert (export / "model.onnx").read_bytes() == body
    listed = client.get(f"/api/runs/{run_id}/artifacts").json()
    assert {"name": "onnx", "bytes": len(body), "url": f"/api/runs/{run_id}/artifacts/onnx", "pending": False} in listed
    downloaded = client.get(f"/api/runs/{run_id}/artifacts/onnx")
    assert downloaded.status_code == 200 and downloaded.content == body
    assert f"run-{run_id}-model.onnx" in downloaded.headers["content-disposition"]

    # Without a filename the file is named after the artifact.
    assert client.put(f"{_prefix(run_id)}/artifacts/notes.txt", content=b"hi", headers=auth).status_code == 200
    assert (export / "notes.txt").read_bytes() == b"hi"


@pytest.mark.parametrize("filename", ["../x", ".hidden", "..", "a/b", "-x", "x" * 51])
def test_a_bad_artifact_filename_is_refused_and_nothing_is_written(client, data_dir, filename):
    run_id, auth = _claimed_run(client)
    answer = client.put(f"{_prefix(run_id)}/artifacts/onnx", params={"filename": filename},
                        content=b"payload", headers=auth)
    assert answer.status_code == 422, answer.text
    assert _tree(data_dir / "artifacts") == []
    listed = client.get(f"/api/runs/{run_id}/artifacts").json()
    assert [a["name"] for a in listed] == ["pytorch"]


def test_a_bad_artifact_name_is_refused_even_with_a_good_filename(client, data_dir):
    run_id, auth = _claimed_run(client)
    answer = client.put(f"{_prefix(run_id)}/artifacts/.env", params={"filename": "model.onnx"},
                        content=b"payload", headers=auth)
    assert answer.status_code == 422
    assert _tree(data_dir / "artifacts") == []


# -- 6. HttpRunStore against a real server -------------------------------------------------------

def test_http_run_store_fetches_and_uploads_files_against_a_real_server(tmp_path):
    from app.datasets import registry, remote
    from app.runs.http_store import HttpRunStore, IngestRefused

    data = tmp_path / "server"
    server = LiveServer(data, env={"TRAINBOARD_HEARTBEAT_TIMEOUT_S": "600"}).start()
    try:
        with server.api() as api:
            created = api.post("/api/ingest/runs", json={"name": "remote", "dataset": "digits"})
            assert created.status_code == 201, created.text
            run_id, token = created.json()["id"], created.json()["token"]
        store = HttpRunStore(server.url, run_id, token, report_deadline_s=10)
        try:
            cache = tmp_path / "node"
            with pytest.raises(IngestRefused, match="no data set on the server"):
                store.fetch_dataset(cache)  # a script's run names its data set freely: none is served
            server.sql("update runs set external = false where id = :run", run=run_id)  # as a run Trainboard trains
            root = store.fetch_dataset(cache)
            _assert_same_arrays(registry.load_dataset("digits", root, download=False),
                                registry.load_dataset("digits", data, download=False))
            blobs = sorted(p.name for p in (cache / "blobs").iterdir())
            assert len(blobs) == 5 and all(remote.SHA256_RE.match(b) for b in blobs)
            assert store.fetch_dataset(cache) == root  # cached: same view

            with pytest.raises(IngestRefused, match="starts from scratch"):
                store.fetch_checkpoint(tmp_path / "resume" / "ck.pt")

            saved = {}
            for epoch, pruned in ((1, []), (2, []), (3, [1])):
                path = tmp_path / f"local-{epoch}.pt"
                path.write_bytes(saved.setdefault(epoch, os.urandom(100_000 + epoch)))
                store.save_checkpoint(epoch, path, pruned)
            folder = data / "artifacts" / f"run-{run_id}" / "checkpoints"
            assert sorted(p.name for p in folder.iterdir()) == ["epoch-0002.pt", "epoch-0003.pt"]
            assert (folder / "epoch-0003.pt").read_bytes() == saved[3]

            server.sql("update runs set resume_epoch = 3 where id = :run", run=run_id)  # what a resume sets
            dest = store.fetch_checkpoint(tmp_path / "resume" / "ck.pt")
            assert dest.read_bytes() == saved[3]

            onnx = tmp_path / "out" / "model.onnx"
            onnx.parent.mkdir()
            onnx.write_bytes(b"onnx bytes")
            store.save_artifact("onnx", onnx)
            assert (data / "artifacts" / f"run-{run_id}" / "export" / "model.onnx").read_bytes() == b"onnx bytes"
            assert store.report("completed") is True
            with pytest.raises(IngestRefused, match="403"):
                store.fetch_dataset(tmp_path / "after")
            assert store.ended is True
        finally:
            store.close()
    finally:
        server.stop()


def test_a_built_in_not_on_the_server_is_downloaded_by_a_process_of_its_own_while_the_trainer_waits(
        client, monkeypatch, dataset_mirror):
    """The manifest never downloads in the web process: it starts `trainboard data download` and answers
    503 (which a remote trainer retries) until the data set is there."""
    import time

    from app.core.db import session_scope
    from app.runs import ingest, lifecycle

    monkeypatch.setenv("TRAINBOARD_DATASET_MIRROR", dataset_mirror)  # the download process inherits it
    created = client.post("/api/runs", json={"preset": "mnist-mlp", "dataset": "mnist", "config": {"epochs": 1}})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    with session_scope() as db_session:
        assert lifecycle.claim(db_session, run_id, "remote:test") is True
        auth = {"Authorization": f"Bearer {ingest.issue_token(db_session, run_id)}"}
    first = client.get(f"{_prefix(run_id)}/dataset", headers=auth)
    assert first.status_code == 503 and "being downloaded on the server" in first.json()["detail"]
    deadline = time.monotonic() + 120
    while (answer := client.get(f"{_prefix(run_id)}/dataset", headers=auth)).status_code == 503:
        assert time.monotonic() < deadline, "the download never finished"
        time.sleep(0.2)  # polling the server, as the trainer's backoff does
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "mnist" and "meta.json" in {f["name"] for f in answer.json()["files"]}
