"""POST /api/datasets (and the data sets page) under hostile uploads: every one is refused with a
clear 4xx, nothing is left on disk, and the server's memory does not follow the upload's size."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from app.core.config import get_settings
from app.datasets import store, uploads
from tests.conftest import LOCAL


def _png(color, size=(12, 10), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _upload(client, name: str, filename: str, data: bytes, path: str = "/api/datasets"):
    return client.post(path, data={"name": name}, files={"file": (filename, data, "application/octet-stream")})


def _tree(data_dir: Path) -> list[str]:
    root = store.datasets_root(data_dir)
    return sorted(str(p.relative_to(data_dir)) for p in root.rglob("*")) if root.exists() else []


def _refused(client, data_dir: Path, filename: str, data: bytes, status: int = 422) -> str:
    """Upload, expect `status`, and check that nothing was written; the answer's detail."""
    before, listed = _tree(data_dir), client.get("/api/datasets").json()
    answer = _upload(client, "hostile", filename, data)
    assert answer.status_code == status, answer.text
    assert _tree(data_dir) == before
    assert client.get("/api/datasets").json() == listed
    return answer.json()["detail"]


# --- CSV --------------------------------------------------------------------------------------------

def test_a_csv_field_over_the_csv_limit_answers_422_naming_the_line(client, data_dir):
    data = ("a,label\n1,x\n2,y\n" + "3" * 140_000 + ",x\n4,y\n").encode()
    detail = _refused(client, data_dir, "long.csv", data)
    assert "CSV line 4" in detail and "field larger than field limit" in detail, detail


def test_a_csv_line_over_the_record_limit_is_refused_before_it_is_read_whole(client, data_dir, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_RECORD_CHARS", 1000)
    data = ("a,label\n1,x\n" + "1," * 2000 + "x\n").encode()
    assert "CSV line 3 is longer than 1000 characters" in _refused(client, data_dir, "wide.csv", data)


def test_a_csv_that_is_not_utf8_names_its_line(client, data_dir):
    detail = _refused(client, data_dir, "latin.csv", "a,label\n1,x\n2,caf\xe9\n".encode("latin-1"))
    assert "CSV line 3 is not UTF-8" in detail, detail


def test_a_csv_over_the_upload_limit_answers_413(client, data_dir, monkeypatch):
    # The setting changes after the app was made: the body-size middleware keeps its limit, so
    # this is the import's own cap on the bytes it reads, with the same setting.
    monkeypatch.setenv("TRAINBOARD_MAX_UPLOAD_BYTES", "10000")
    get_settings.cache_clear()
    data = ("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(5000))).encode()
    assert len(data) > 10000
    detail = _refused(client, data_dir, "big.csv", data, status=413)
    assert "over the limit of 9.766 KiB" in detail and "TRAINBOARD_MAX_UPLOAD_BYTES" in detail, detail


def test_the_upload_limit_also_caps_a_request_body(data_dir, monkeypatch):
    from fastapi.testclient import TestClient

    from app.main import create_app

    monkeypatch.setenv("TRAINBOARD_MAX_UPLOAD_BYTES", "10000")
    get_settings.cache_clear()
    with TestClient(create_app(start_executor=False), base_url=LOCAL) as client:
        data = ("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(5000))).encode()
        _refused(client, data_dir, "big.csv", data, status=413)


def test_a_csv_is_imported_in_blocks_with_the_same_result(client, data_dir, monkeypatch):
    monkeypatch.setattr(uploads, "BLOCK_BYTES", 64)  # 8 rows of two float32 features per block
    rng = np.random.default_rng(0)
    points = rng.normal(size=(203, 2)).astype(np.float32)
    labels = ["10" if x + y > 0 else "9" for x, y in points]
    text = "a,label,b\n" + "".join(f"{x!r},{c},{y!r}\n" for (x, y), c in zip(points.tolist(), labels, strict=True))
    answer = _upload(client, "blocks", "b.csv", text.encode())
    assert answer.status_code == 201, answer.text
    info = answer.json()
    assert info["class_names"] == ["9", "10"] and info["train_size"] + info["test_size"] == 203
    arrays = store.read_arrays(data_dir, "blocks")
    x = np.concatenate([arrays["x_train"], arrays["x_test"]])
    y = np.concatenate([arrays["y_train"], arrays["y_test"]])
    expected = {tuple(p): int(c == "10") for p, c in zip(points.tolist(), labels, strict=True)}
    assert {tuple(p): int(c) for p, c in zip(x.tolist(), y.tolist(), strict=True)} == expected
    assert info["mean"] == pytest.approx(arrays["x_train"].astype(np.float64).mean(axis=0).tolist(), abs=1e-5)
    assert info["std"] == pytest.approx(arrays["x_train"].astype(np.float64).std(axis=0).tolist(), abs=1e-5)
    assert [p.name for p in store.datasets_root(data_dir).iterdir()] == ["blocks"]  # no scratch left


def test_a_large_csv_refused_early_does_not_grow_the_server(live_server, tmp_path):
    """100 MB refused at line 2: read streaming, so the server's memory stays where it was."""
    path = tmp_path / "big.csv"
    with open(path, "w") as handle:
        handle.write("a,b,label\nnot-a-number,1,x\n")
        row = "0.123456,0.654321,y\n" * 50_000
        while handle.tell() < 100 * 1024 * 1024:
            handle.write(row)
    server = psutil.Process(live_server.process.pid)
    with live_server.api() as api:
        assert api.get("/api/datasets").status_code == 200
        before = server.memory_info().rss
        with open(path, "rb") as handle:
            answer = api.post("/api/datasets", data={"name": "big"}, files={"file": ("big.csv", handle)}, timeout=120)
        after = server.memory_info().rss
    assert answer.status_code == 422, answer.text
    assert "CSV line 2" in answer.json()["detail"]
    assert after - before < 60 * 1024 * 1024, f"the server grew by {(after - before) >> 20} MiB"


def test_the_page_shows_the_same_message_next_to_the_file_field(client):
    data = ("a,label\n1,x\n" + "3" * 140_000 + ",y\n").encode()
    api_detail = _upload(client, "long", "long.csv", data).json()["detail"]
    page = _upload(client, "long", "long.csv", data, path="/datasets")
    assert page.status_code == 422
    errors = page.text.split('id="file-errors"', 1)[1].split("</div>", 1)[0]
    assert api_detail in errors.replace("&#39;", "'").replace("&quot;", '"'), errors


# --- image zips -------------------------------------------------------------------------------------

def test_a_pixel_bomb_zip_is_refused_from_the_image_headers(client, data_dir):
    big = _png(0, (4096, 4096), "L")  # ~16 KB on disk, 16.7 M pixels decoded
    entries = {f"{cls}/{i}.png": big for cls in ("a", "b") for i in range(10)}
    data = _zip(entries)
    assert len(data) < 2_000_000
    detail = _refused(client, data_dir, "pixels.zip", data)
    assert "more than 100,000,000 pixels" in detail and "TRAINBOARD_MAX_UPLOAD_PIXELS" in detail, detail


def test_images_within_the_pixel_cap_import(client, data_dir, monkeypatch):
    monkeypatch.setenv("TRAINBOARD_MAX_UPLOAD_PIXELS", str(8 * 640 * 480))
    get_settings.cache_clear()
    entries = {f"{cls}/{i}.png": _png(color, (640, 480)) for cls, color in (("red", "red"), ("blue", "blue"))
               for i in range(4)}
    answer = _upload(client, "photos", "p.zip", _zip(entries))
    assert answer.status_code == 201, answer.text
    assert answer.json()["input_shape"] == [3, 48, 64]
    arrays = store.read_arrays(data_dir, "photos")
    red = arrays["x_train"][arrays["y_train"] == answer.json()["class_names"].index("red")]
    assert red.shape[1:] == (3, 48, 64) and (red[:, 0] == 255).all() and (red[:, 2] == 0).all()
    entries["blue/4.png"] = _png("blue", (640, 480))  # one image more than the cap allows
    assert "pixels" in _refused(client, data_dir, "p.zip", _zip(entries))


def _symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        link = zipfile.ZipInfo("a/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("b/x.png", _png("red"))
    return buf.getvalue()


def _lying_zip() -> bytes:
    """A member whose directory entry claims 100 bytes but whose data inflates to 5 MB."""
    data = bytearray(_zip({"a/x.png": _png("red"), "b/y.png": b"\0" * (5 << 20)}, zipfile.ZIP_DEFLATED))
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):  # central and local headers
        at = data.rfind(signature)
        data[at + offset:at + offset + 4] = (100).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _zip({"a/bomb.png": b"\0" * (50 << 20), "b/x.png": _png("red")}, zipfile.ZIP_DEFLATED), "zip bomb"),
    (_lying_zip, "b/y.png"),
    (lambda: _zip({"../../escape/a.png": _png("red"), "b/x.png": _png("red")}), "unsafe path"),
    (lambda: _zip({"/abs/a.png": _png("red"), "b/x.png": _png("red")}), "unsafe path"),
    (_symlink_zip, "symbolic link"),
    (lambda: _zip({"a/x.png": _png("red"), "b/y.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 50}), "b/y.png is not a readable"),
])
def test_hostile_zips_are_refused_and_write_nothing(client, data_dir, make, message):
    assert message in _refused(client, data_dir, "hostile.zip", make())


def test_a_zip_with_too_many_entries_is_refused_before_its_directory_is_read(client, data_dir):
    entries = {"a/x.png": _png("red"), "b/y.png": _png("blue")}
    entries.update({f"junk/{i}": b"" for i in range(50_001)})
    detail = _refused(client, data_dir, "many.zip", _zip(entries))
    assert "50003 entries, more than the limit of 50000" in detail, detail


def test_a_zip_of_one_giant_image_is_refused_before_decoding(client, data_dir):
    # 20,000 x 20,000: PIL would refuse to open it with DecompressionBombError (not an OSError).
    from tests.runs.test_predict import _big_png

    data = _zip({"a/x.png": _big_png(20_000, 20_000), "b/y.png": _png("red")})
    detail = _refused(client, data_dir, "giant.zip", data)
    assert "a/x.png" in detail and "too large" in detail, detail
