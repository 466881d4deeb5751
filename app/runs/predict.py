"""Predict with a trained run: the image is prepared here (PIL + numpy), the forward pass runs in
a long-lived predictor process (torch never enters the web process)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import Conflict, EngineUnavailable, InvalidInput, NotFound
from app.datasets import registry as datasets_registry
from app.engine.types import input_normalization
from app.runs import service as runs_service

ROOT = Path(__file__).resolve().parents[2]


def prepare_image(image: bytes, input_shape: list[int], mean: list[float] | None,
                  std: list[float] | None) -> np.ndarray:
    """Decode, convert to the data set's channels, resize to its H×W, scale and normalize."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = input_shape
    try:
        picture = Image.open(io.BytesIO(image))
        picture.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidInput("the file is not an image PIL can read (use PNG or JPEG)",
                           [{"field": "file", "message": "not an image"}]) from exc
    if picture.mode in ("RGBA", "LA"):  # transparent canvas drawings: composite onto black
        background = Image.new("RGBA", picture.size, (0, 0, 0, 255))
        picture = Image.alpha_composite(background, picture.convert("RGBA"))
    picture = picture.convert("L" if channels == 1 else "RGB")
    # Shrinking averages each pixel's area (exact for an enlarged sample, e.g. a 112-px PNG of an
    # 8x8 digit); bilinear's wider filter would blur neighbours together. Enlarging interpolates.
    shrinking = picture.width >= width and picture.height >= height
    picture = picture.resize((width, height), Image.BOX if shrinking else Image.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    array = array[None, :, :] if channels == 1 else array.transpose(2, 0, 1)
    if mean is not None and std is not None:
        array = (array - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return np.ascontiguousarray(array, dtype=np.float32)


class Predictor:
    """One predictor subprocess per web process, started on first use; requests are serialized."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def _ensure(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "app.engine.predict_server"], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self._process

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            process = self._ensure()
            try:
                process.stdin.write((json.dumps(message) + "\n").encode())
                process.stdin.flush()
                line = process.stdout.readline()
            except OSError:
                line = b""
            if not line:
                self._process = None
                raise EngineUnavailable("the predictor process stopped; try again")
            return json.loads(line)


_predictor = Predictor()


def predict(*, db_session: Session, run_id: int, image: bytes, top_k: int = 5) -> dict[str, Any]:
    """Top-k classes with probabilities for one uploaded image."""
    run = runs_service.get(db_session=db_session, run_id=run_id)
    try:
        weights = runs_service.artifact_file(db_session=db_session, run_id=run_id, name="weights")
    except NotFound as exc:
        raise Conflict(f"run {run_id} has no trained weights yet ({run.status}): predict after it completes") from exc
    info = datasets_registry.get_dataset_info(run.dataset, get_settings().data_dir)
    shape = list(run.spec.get("input_shape") or info.input_shape)
    if len(shape) != 3:
        raise InvalidInput(f"predicting from an image needs an image data set; '{run.dataset}' has samples of "
                           f"shape {tuple(shape)}", [{"field": "file", "message": "not an image model"}])
    mean, std = input_normalization(run.config.get("normalize", "auto"), shape, info.mean, info.std)
    array = prepare_image(image, shape, mean, std)
    answer = _predictor.request({
        "spec": run.spec, "weights": str(weights), "shape": shape, "top_k": min(top_k, len(info.class_names)),
        "input": base64.b64encode(array.tobytes()).decode(),
    })
    if "error" in answer:
        raise InvalidInput(f"prediction failed: {answer['error']}")
    names = info.class_names
    return {"run_id": run_id, "predictions": [
        {"index": i, "class_name": names[i] if i < len(names) else str(i), "probability": p}
        for i, p in zip(answer["indices"], answer["probabilities"], strict=True)
    ]}
