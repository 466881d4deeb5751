"""Uploads: CSV and image zips import and train; hostile or broken uploads fail cleanly, writing nothing."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.core.errors import InvalidInput
from app.datasets import registry
from app.engine.loop import train
from app.engine.types import ListSink, TrainConfig, TrainJob

torch.set_num_threads(1)  # tiny models; two xdist workers share two cores


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _png(color, size=(12, 10), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_STORED) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    buf.seek(0)
    return buf


def _train(data_dir: Path, name: str, spec: dict, tmp_path: Path, epochs: int = 3) -> float:
    data = registry.load_dataset(name, data_dir, val_split=0.2)
    job = TrainJob(spec=spec, config=TrainConfig(epochs=epochs, device="cpu", optimizer={"name": "adam", "lr": 0.02}),
                   checkpoint_dir=tmp_path / "ckpt", artifacts_dir=tmp_path / "export")
    return train(job, data, ListSink()).test_accuracy


def test_csv_imports_and_trains(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{x:.3f},{y:.3f},{'pos' if x + y > 0 else 'neg'}"
                            for x, y in rng.normal(size=(300, 2))]
    info = registry.import_csv("signs", io.BytesIO("\n".join(rows).encode()), tmp_path)
    assert info.kind == "tabular" and info.class_names == ["neg", "pos"] and info.input_shape == [2]
    assert info.train_size + info.test_size == 300 and info.source == "upload"
    assert "signs" in {i.name for i in registry.list_datasets(tmp_path)}
    spec = {"layers": [{"type": "Dense", "units": 8, "activation": "relu"},
                       {"type": "Dense", "units": 2, "activation": "softmax"}]}
    assert _train(tmp_path, "signs", spec, tmp_path) > 0.85
    with pytest.raises(InvalidInput, match="no picture"):
        registry.render_sample_png("signs", tmp_path, 0)


def test_csv_errors(tmp_path):
    before = _tree(tmp_path)
    with pytest.raises(InvalidInput, match="no 'label' column \\(columns: a, b, class\\)"):
        registry.import_csv("t", io.StringIO("a,b,class\n1,2,x\n"), tmp_path)
    with pytest.raises(InvalidInput, match="CSV line 3"):
        registry.import_csv("t", io.StringIO("a,label\n1,x\nfoo,y\n"), tmp_path)
    with pytest.raises(InvalidInput, match="built-in"):
        registry.import_csv("mnist", io.StringIO("a,label\n1,x\n"), tmp_path)
    with pytest.raises(InvalidInput, match="invalid data set name"):
        registry.import_csv("../evil", io.StringIO("a,label\n1,x\n"), tmp_path)
    assert _tree(tmp_path) == before


def test_image_zip_imports_and_trains(tmp_path):
    rng = np.random.default_rng(0)
    entries = {}
    for cls, base in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        for i in range(20):
            color = tuple(int(c + rng.integers(-20, 20)) for c in base)
            size = (12, 10) if i else (20, 16)  # one odd size: resized to the common one
            entries[f"shapes/{cls}/{i}.png"] = _png(color, size)
    entries["shapes/.DS_Store"] = b"junk"
    info = registry.import_image_zip("colors", _zip(entries), tmp_path)
    assert info.kind == "image" and info.input_shape == [3, 10, 12] and info.class_names == ["blue", "red"]
    spec = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "softmax"}]}
    assert _train(tmp_path, "colors", spec, tmp_path) > 0.9
    png = registry.render_sample_png("colors", tmp_path, 0)
    assert Image.open(io.BytesIO(png)).size == (120, 100)


def _symlink_zip() -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        link = zipfile.ZipInfo("cls/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("cls/a.png", _png("red"))
    buf.seek(0)
    return buf


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _zip({"../../escape/a.png": _png("red"), "b/x.png": _png("red")}), "unsafe path"),
    (lambda: _zip({"/abs/a.png": _png("red")}), "unsafe path"),
    (_symlink_zip, "symbolic link"),
    (lambda: _zip({"a/bomb.png": b"\0" * (5 << 20), "b/x.png": _png("red")}, zipfile.ZIP_DEFLATED), "zip bomb"),
    (lambda: _zip({"a/x.png": _png("red"), "b/broken.png": b"\x89PNG\r\n\x1a\nnot really"}),
     "b/broken.png is not a readable image"),
    (lambda: _zip({"a/x.png": _png("red")}), "only one class"),
    (lambda: _zip({"x.png": _png("red")}), "not inside a class folder"),
    (lambda: io.BytesIO(b"this is not a zip"), "not a readable zip"),
])
def test_bad_zips_are_refused_and_write_nothing(tmp_path, make, message):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    before = _tree(tmp_path)
    with pytest.raises(InvalidInput, match=message):
        registry.import_image_zip("upload", make(), data_dir)
    assert _tree(tmp_path) == before


def test_size_and_count_caps(tmp_path):
    archive = _zip({"a/x.png": _png("red"), "b/y.png": _png("blue")})
    with pytest.raises(InvalidInput, match="over the limit"):
        registry.import_image_zip("capped", archive, tmp_path, max_total_bytes=100)
    archive.seek(0)
    with pytest.raises(InvalidInput, match="more than the limit of 1"):
        registry.import_image_zip("capped", archive, tmp_path, max_files=1)
    assert not (tmp_path / "datasets").exists()
