"""Predict with a trained run: the image is prepared here (PIL + numpy), the forward pass runs in
a long-lived predictor process (torch never enters the web process).

Hostile images: the size is read from the header (PIL's open is lazy) and anything over
MAX_SIDE x MAX_SIDE is refused before a pixel is decoded. The predictor process: every request has
a deadline (TRAINBOARD_PREDICT_TIMEOUT_S); one that passes it kills the process, a process that
died is started again on the next request, and either failure answers 503 with the reason, never
a 422 that would blame the image.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import Conflict, EngineUnavailable, InvalidInput, NotFound
from app.datasets import registry as datasets_registry
from app.engine.types import input_normalization
from app.runs import service as runs_service

ROOT = Path(__file__).resolve().parents[2]
MAX_SIDE = 4096  # an image to classify is shrunk to the model's input (28x28, 32x32...): 4096 is plenty


def _too_large(width: int | None, height: int | None) -> InvalidInput:
    size = f" is {width}x{height} pixels" if width is not None else " is too large to decode"
    message = f"the image{size}; the maximum is {MAX_SIDE}x{MAX_SIDE}: send a smaller one"
    return InvalidInput(message, [{"field": "file", "message": message}])


def prepare_image(image: bytes, input_shape: list[int], mean: list[float] | None,
                  std: list[float] | None) -> np.ndarray:
    """Decode, convert to the data set's channels, resize to its H×W, scale and normalize."""
    from PIL import Image

    channels, height, width = input_shape
    not_an_image = InvalidInput("the file is not an image PIL can read (use PNG or JPEG)",
                                [{"field": "file", "message": "not an image"}])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(image))  # lazy: reads the header only
            if picture.width > MAX_SIDE or picture.height > MAX_SIDE:
                raise _too_large(picture.width, picture.height)
            picture.draft("L" if channels == 1 else "RGB", (width, height))  # JPEG: decode at a smaller scale
            picture.load()
    except InvalidInput:
        raise
    except Image.DecompressionBombError as exc:  # bigger than PIL will even open: not an OSError
        raise _too_large(None, None) from exc
    except Exception as exc:  # noqa: BLE001 - hostile bytes make PIL fail in many ways: all are "not an image"
        raise not_an_image from exc
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


def _exit_reason(returncode: int | None, stderr: IO[bytes] | None) -> str:
    if returncode is None:
        reason = "it stopped answering"
    elif returncode < 0:
        try:
            reason = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            reason = f"killed by signal {-returncode}"
    else:
        reason = f"exit code {returncode}"
    if stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            stderr.seek(0, os.SEEK_END)
            stderr.seek(max(0, stderr.tell() - 2000))
            lines = [line for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]
            if lines:
                reason += f": {lines[-1].strip()[:300]}"
    return reason


class Predictor:
    """One predictor subprocess per web process, started on first use.

    Requests take turns (the process answers one at a time), but none waits forever: each has a
    deadline, after which the process is killed, so the requests behind it get a fresh one.
    """

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "app.engine.predict_server"]
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The predictor's pid while one is running (for tests and benchmarks)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def _ensure(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._close()
            self._stderr = tempfile.TemporaryFile()  # its last line is the reason when it dies
            self._process = subprocess.Popen(
                self.command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                start_new_session=True,
            )
        return self._process

    def _close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _kill(process)
            for pipe in (process.stdin, process.stdout):
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        """Stop the predictor process (it starts again on the next request)."""
        with self._lock:
            self._close()

    def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        timeout = timeout if timeout is not None else get_settings().predict_timeout_s
        payload = (json.dumps(message) + "\n").encode()
        # Requests queue here behind one that hangs only until its deadline kills the process.
        if not self._lock.acquire(timeout=2 * timeout + 5):
            raise EngineUnavailable("the predictor is busy with other requests: try again in a moment")
        try:
            try:
                return self._exchange(self._ensure(), payload, timeout)
            except _GoneBeforeRequest:
                # It died between requests (killed, crashed): this request starts a new one.
                self._close()
                return self._exchange(self._ensure(), payload, timeout)
        finally:
            self._lock.release()

    def _exchange(self, process: subprocess.Popen, payload: bytes, timeout: float) -> dict[str, Any]:
        """Send one request and read its answer, all within `timeout` seconds."""
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _kill(process)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            try:
                process.stdin.write(payload)
                process.stdin.flush()
            except (OSError, ValueError) as exc:
                if not expired.is_set():
                    raise _GoneBeforeRequest from exc
            try:
                line = process.stdout.readline()
            except (OSError, ValueError):
                line = b""
        finally:
            timer.cancel()
        if line.endswith(b"\n"):
            try:
                return json.loads(line)
            except ValueError:
                pass
        stderr = self._stderr
        if expired.is_set():
            self._close()
            raise EngineUnavailable(f"the predictor did not answer within {timeout:g} s "
                                    "(TRAINBOARD_PREDICT_TIMEOUT_S) and was stopped; it starts again on the "
                                    "next request")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        reason = _exit_reason(process.poll(), stderr)
        self._close()
        raise EngineUnavailable(f"the predictor process failed while predicting ({reason}); it starts again on "
                                "the next request")


class _GoneBeforeRequest(Exception):
    """The predictor process was already gone when a request was sent to it."""


def _kill(process: subprocess.Popen) -> None:
    """SIGKILL the predictor's process group (it runs in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


_predictor = Predictor()


def stop() -> None:
    """At server shutdown: the predictor process goes with the server (without waiting for a request in
    flight: it gets its error, as when a deadline kills the process)."""
    process = _predictor._process
    if process is not None:
        _kill(process)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)  # reaped: no zombie left holding its pipes


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
    spec = run.spec
    # End the transaction now: a request session holds SQLite's write lock until it ends, and
    # neither decoding nor the predictor (up to its timeout) should keep trainers from writing.
    db_session.commit()
    array = prepare_image(image, shape, mean, std)
    answer = _predictor.request({
        "spec": spec, "weights": str(weights), "shape": shape, "top_k": min(top_k, len(info.class_names)),
        "input": base64.b64encode(array.tobytes()).decode(),
    })
    if "error" in answer:  # the image was prepared here already: this is the model's or the server's failure
        raise EngineUnavailable(f"the predictor could not run this model: {answer['error']}")
    names = info.class_names
    return {"run_id": run_id, "predictions": [
        {"index": i, "class_name": names[i] if i < len(names) else str(i), "probability": p}
        for i, p in zip(answer["indices"], answer["probabilities"], strict=True)
    ]}
