"""POST /api/runs/{id}/predict under hostile input: huge images are refused from their header, and a
predictor process that dies or hangs answers 503 with the reason, then comes back on the next request."""

from __future__ import annotations

import io
import os
import signal
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from app.core.config import get_settings
from app.runs import predict as predict_service
from tests.runs.helpers import DIGITS_MLP, run_body


def _png(size=(8, 8), color=128) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _big_png(width: int, height: int) -> bytes:
    """A valid grayscale PNG of one colour, built row by row: tiny on disk, huge once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def predictor():
    """The web process's predictor, stopped after the test (its command restored)."""
    command = predict_service._predictor.command
    yield predict_service._predictor
    predict_service._predictor.command = command
    predict_service._predictor.close()


def _trained_run(client, spec=None) -> int:
    """A run with a weights artifact (untrained weights of `spec`: predict only needs the file)."""
    import torch
    from safetensors.torch import save_file

    from app.core.db import session_scope
    from app.engine.build import build_model
    from app.runs.models import Artifact

    created = client.post("/api/runs", json=run_body(DIGITS_MLP, dataset="digits"))
    assert created.status_code == 201, created.text
    run = created.json()
    torch.manual_seed(0)
    model = build_model({"input_shape": [1, 8, 8], **(spec or run["spec"])}, load_pretrained=False)
    root = get_settings().artifacts_dir
    path = root / f"run-{run['id']}" / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(path))
    with session_scope() as session:
        session.add(Artifact(run_id=run["id"], name="weights", path=str(path.relative_to(root)),
                             bytes=path.stat().st_size))
    return run["id"]


def _predict(client, run_id: int, png: bytes):
    return client.post(f"/api/runs/{run_id}/predict", files={"file": ("x.png", png, "image/png")},
                       params={"top_k": 3})


def _wait_exited(pid: int, timeout: float = 10.0) -> None:
    """Until the kernel reports our child `pid` exited (all its threads gone), without reaping it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still runs after {timeout}s")


def test_huge_images_are_refused_from_their_header(client, predictor):
    run_id = _trained_run(client)
    ok = _predict(client, run_id, _png())
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["predictions"]) == 3
    for side in (12_000, 20_000):  # 12,000² decoded whole before; 20,000² answered 500
        png = _big_png(side, side)
        assert len(png) < 1_000_000
        answer = _predict(client, run_id, png)
        assert answer.status_code == 422, (side, answer.text)
        assert "maximum is 4096x4096" in answer.json()["detail"], answer.json()
    assert "12000x12000" in _predict(client, run_id, _big_png(12_000, 12_000)).json()["detail"]
    # 4096 on a side still predicts, and garbage is still "not an image".
    assert _predict(client, run_id, _png((4096, 16))).status_code == 200
    bad = _predict(client, run_id, b"\x89PNG\r\n\x1a\nnot really")
    assert bad.status_code == 422 and "not an image" in bad.json()["detail"]


def test_a_killed_predictor_is_started_again_by_the_next_request(client, predictor):
    run_id = _trained_run(client)
    first = _predict(client, run_id, _png())
    assert first.status_code == 200, first.text
    pid = predictor.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait_exited(pid)
    again = _predict(client, run_id, _png())
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert predictor.pid not in (None, pid)


def test_a_predictor_that_crashes_during_a_request_answers_503_with_the_reason(client, predictor):
    run_id = _trained_run(client)
    predictor.close()
    predictor.command = [sys.executable, "-c", "import sys; sys.stdin.readline(); "
                         "sys.stderr.write('predictor ran out of memory\\n'); sys.exit(3)"]
    answer = _predict(client, run_id, _png())
    assert answer.status_code == 503, answer.text
    detail = answer.json()["detail"]
    assert "exit code 3" in detail and "predictor ran out of memory" in detail, detail
    predictor.command = [sys.executable, "-m", "app.engine.predict_server"]
    assert _predict(client, run_id, _png()).status_code == 200


def test_a_model_the_predictor_cannot_run_is_a_server_failure_not_a_bad_image(client, predictor):
    wider = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 64, "activation": "relu"},
                        {"type": "Dense", "units": 10, "activation": "softmax"}]}
    run_id = _trained_run(client, spec=wider)  # weights that do not fit the run's spec
    answer = _predict(client, run_id, _png())
    assert answer.status_code == 503, answer.text
    assert "could not run this model" in answer.json()["detail"]


def test_a_hung_predictor_times_out_with_503_and_the_next_request_works(client, predictor, monkeypatch):
    run_id = _trained_run(client)
    predictor.close()
    predictor.command = [sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(3600)"]
    monkeypatch.setenv("TRAINBOARD_PREDICT_TIMEOUT_S", "1")
    get_settings.cache_clear()
    # Two requests at once behind a hung predictor: both answer (neither waits forever).
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(_predict(client, run_id, _png()))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request to a hung predictor never answered"
    assert [a.status_code for a in answers] == [503, 503], [a.text for a in answers]
    assert all("did not answer within 1 s" in a.json()["detail"] for a in answers)
    assert predictor.pid is None  # the hung process was killed
    predictor.command = [sys.executable, "-m", "app.engine.predict_server"]
    monkeypatch.delenv("TRAINBOARD_PREDICT_TIMEOUT_S")
    get_settings.cache_clear()
    answer = _predict(client, run_id, _png())
    assert answer.status_code == 200, answer.text


def test_big_png_helper_makes_a_real_image(tmp_path: Path):
    image = Image.open(io.BytesIO(_big_png(300, 200)))
    image.load()
    assert image.size == (300, 200) and image.getextrema() == (0, 0)


def test_the_server_stopping_stops_its_predictor_process(data_dir, monkeypatch):
    """The predictor process (torch, the loaded weights) goes with the server that started it."""
    import subprocess

    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.runs import predict
    from tests.conftest import LOCAL

    # Stands in for the predictor process (what matters is that shutdown stops whatever is there).
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    monkeypatch.setattr(predict._predictor, "_process", stand_in)
    try:
        with TestClient(create_app(start_executor=False), base_url=LOCAL) as client:
            assert client.get("/healthz").status_code == 200
            assert stand_in.poll() is None
        assert stand_in.wait(timeout=5) == -signal.SIGKILL
    finally:
        if stand_in.poll() is None:
            stand_in.kill()
