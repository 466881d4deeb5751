"""Log a run from your own script: `import trainboard`.

    run = trainboard.init("http://127.0.0.1:8000", name="my mlp", config={"lr": 0.01})
    for epoch in range(1, 6):
        ...
        run.log({"loss": loss, "accuracy": acc, "val_loss": vl, "val_accuracy": va}, epoch=epoch)
    run.log_confusion_matrix(y_true, y_pred, class_names)
    run.finish()

The run is an *external* run (created `running`; nothing on the server trains it). `log` becomes
the same `step`/`epoch` events the engine emits, so the run page, its live stream and compare show
it. Events are batched and sent by a background thread with heartbeats (app/runs/store.py
`StoreSink` over app/runs/http_store.py `HttpRunStore`, which retries and keeps what is unsent);
a script that stops sending heartbeats for the server's heartbeat timeout fails its run.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

import httpx
import numpy as np

from app.engine.metrics import confusion_matrix, summarize
from app.runs.http_store import HttpRunStore
from app.runs.store import StoreSink


def _number(value: Any) -> float | None:
    """A metric as a finite float (numpy scalars and 0-d tensors included), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class Run:
    """One external run: log metrics, a confusion matrix, then finish (or use it as a context manager)."""

    def __init__(self, server_url: str, *, name: str = "", config: dict[str, Any] | None = None,
                 dataset: str | None = None, class_names: list[str] | None = None, epochs: int | None = None,
                 timeout_s: float = 30.0, token: str | None = None):
        self.server_url = server_url.rstrip("/")
        body = {"name": name, "config": dict(config or {}), "dataset": dataset,
                "class_names": list(class_names) if class_names is not None else None, "epochs": epochs}
        # A server with accounts takes a personal API token with the write scope (TRAINBOARD_TOKEN).
        token = token or os.environ.get("TRAINBOARD_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(f"{self.server_url}/api/ingest/runs", json=body, timeout=timeout_s, headers=headers)
        response.raise_for_status()
        created = response.json()
        self.id: int = created["id"]
        self.url: str = created["url"]
        self.class_names = list(class_names) if class_names is not None else None
        self.epochs = epochs
        self._store = HttpRunStore(self.server_url, self.id, created["token"])
        self._stopped = threading.Event()
        self._sink = StoreSink(self._store, on_cancel=self._stopped.set).start()
        self._step = 0
        self._epoch: int | None = None
        self._started = time.monotonic()
        self._finished = False

    @property
    def cancel_requested(self) -> bool:
        """True when the server asked this run to stop (or no longer takes its events)."""
        return self._stopped.is_set()

    def log(self, metrics: dict[str, Any], step: int | None = None, epoch: int | None = None) -> None:
        """Metrics of a step (`step=`, or neither) or of a whole epoch (`epoch=` alone).

        `loss` and `accuracy` are the training ones; `val_loss`/`val_accuracy` the validation ones.
        Other numeric keys ride along; values that are not finite numbers are left out."""
        values = {key: _number(value) for key, value in metrics.items()}
        values = {key: value for key, value in values.items() if value is not None}
        if epoch is not None and step is None:
            self._epoch = int(epoch)
            payload = {key: value for key, value in values.items() if key not in ("loss", "accuracy")}
            payload.update(epoch=int(epoch), epochs=self.epochs or int(epoch), step=self._step,
                           train_loss=values.get("loss"), train_accuracy=values.get("accuracy"),
                           val_loss=values.get("val_loss"), val_accuracy=values.get("val_accuracy"))
            self._sink.emit("epoch", payload)
            return
        self._step = int(step) if step is not None else self._step + 1
        if epoch is not None:
            self._epoch = int(epoch)
        payload = {**values, "step": self._step, "epoch": self._epoch if self._epoch is not None else 1}
        if self.epochs:
            payload["epochs"] = self.epochs
        self._sink.emit("step", payload)

    def log_confusion_matrix(self, y_true: Any, y_pred: Any, class_names: list[str] | None = None,
                             split: str = "test", epoch: int | None = None) -> dict[str, Any]:
        """The confusion matrix, per-class precision/recall/F1 and accuracy of predictions (numpy),
        shown as the run's confusion matrix (split "test") or a validation epoch's ("val")."""
        truth = np.asarray(y_true, dtype=np.int64).ravel()
        predicted = np.asarray(y_pred, dtype=np.int64).ravel()
        if truth.shape != predicted.shape:
            raise ValueError(f"y_true has {truth.size} labels but y_pred has {predicted.size}")
        names = list(class_names or self.class_names or [])
        count = max(len(names), int(truth.max(initial=-1)) + 1, int(predicted.max(initial=-1)) + 1)
        names = names + [str(i) for i in range(len(names), count)]
        body = summarize(confusion_matrix(truth, predicted, count), names)
        self._sink.emit("evaluation", {"split": split, "epoch": epoch or self._epoch or 0, "loss": None,
                                       "top_k": None, "top_k_accuracy": None, **body})
        return body

    def finish(self, status: str = "completed", reason: str | None = None) -> bool:
        """Send everything left and end the run (completed, failed or cancelled). Idempotent."""
        if self._finished:
            return False
        self._finished = True
        self._sink.close()
        accepted = self._store.report(status, reason, {"train_time_s": time.monotonic() - self._started})
        self._store.close()
        return accepted

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, _tb) -> None:
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("cancelled", "stopped by the user (KeyboardInterrupt)")
        else:
            self.finish("failed", f"{exc_type.__name__}: {exc}")


def init(server_url: str = "http://127.0.0.1:8000", *, name: str = "", config: dict[str, Any] | None = None,
         dataset: str | None = None, class_names: list[str] | None = None, epochs: int | None = None,
         token: str | None = None) -> Run:
    """Create an external run on the server at `server_url` and return it (see `Run`). On a server
    with accounts, pass a personal API token with the write scope (or set TRAINBOARD_TOKEN)."""
    return Run(server_url, name=name, config=config, dataset=dataset, class_names=class_names, epochs=epochs,
               token=token)


class KerasCallback:
    """A Keras callback (duck-typed: Keras need not be installed) that logs to a Run.

        model.fit(x, y, epochs=5, validation_split=0.1, callbacks=[trainboard.KerasCallback(run)])
    """

    def __init__(self, run: Run):
        self.run = run
        self.model = None
        self.params: dict[str, Any] = {}
        self._epoch = 1
        self._step = 0

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = dict(params or {})
        if self.run.epochs is None and isinstance(self.params.get("epochs"), int):
            self.run.epochs = self.params["epochs"]

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = int(epoch) + 1

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._step += 1
        self.run.log(dict(logs or {}), step=self._step, epoch=self._epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = int(epoch) + 1
        self.run.log(dict(logs or {}), epoch=self._epoch)
        if self.run.cancel_requested and self.model is not None:
            self.model.stop_training = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):  # every other hook Keras calls (on_train_begin, on_test_end…)
            return lambda *args, **kwargs: None
        raise AttributeError(name)
