"""The engine's contract, torch-free so the web process and data sets can share it.

A trainer calls `app.engine.loop.train(job, data, sink, should_stop)`; the engine reports
everything it does as `sink.emit(kind, payload)` events (see `EventKind`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

EventKind = Literal[
    "step",  # {"epoch", "step", "loss", "accuracy" (over the steps since the last step event), "samples",
    #           "epochs", "epoch_progress" (0..1), "epoch_step", "epoch_steps" (steps done / in the epoch),
    #           "epoch_loss", "epoch_accuracy" (means over the epoch so far), "epoch_elapsed" (s),
    #           "samples_per_sec" (this epoch so far)}  (throttled, <= ~4/s)
    "epoch",  # {"epoch", "epochs", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    #            "lr", "epoch_time", "samples_per_sec"}
    "evaluation",  # {"split": "val"|"test", "epoch", "accuracy", "loss", "confusion_matrix",
    #                 "class_names", "per_class", "macro", "weighted", "top_k_accuracy", "top_k",
    #                 "misclassified" (test only: {"true,pred": [indices]})}
    "projection",  # the test set's penultimate activations in 2-D (app/engine/embedding.py): {"x", "y",
    #                 "true", "pred", "index", "class_names", "count", "total", "explained_variance", ...}
    "memory",  # {"peak_bytes", "kind": "rss"|"cuda", "training_bytes"}
    "checkpoint",  # {"epoch", "path"}
    "artifact",  # {"name": "weights"|"torchscript"|"onnx", "path", "bytes"}
    "log",  # {"level", "message"}
    "histograms",  # {"epoch", "step", "bins", "layers": [{"name", "weights", "gradients", "activations" (each
    #                {"lo", "hi", "counts", "nonfinite"}), "grad_norm", "dead_fraction", "flags"}], "warnings"}
    #                once per epoch (app/engine/histograms.py)
]


class Sink(Protocol):
    """Receives engine events. The worker writes them to the database; tests keep them in memory."""

    def emit(self, kind: str, payload: dict[str, Any]) -> None: ...


class ListSink:
    """An in-memory sink: the real fake used by tests and the in-process CLI."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [payload for k, payload in self.events if k == kind]


class EngineError(Exception):
    """A run that cannot go on; the message is shown to the user as the failure reason."""


class DivergedError(EngineError):
    """Loss became NaN or infinite: 'diverged at epoch E, step S'."""


class StoppedError(EngineError):
    """`should_stop()` answered True: the run was cancelled."""


NORMALIZE_MODES = ("auto", "scale", "standardize")


def input_normalization(mode: str, input_shape: list[int] | tuple[int, ...], mean: list[float] | None,
                        std: list[float] | None) -> tuple[list[float] | None, list[float] | None]:
    """The (mean, std) to apply after 8-bit pixels are scaled to [0, 1]; (None, None) means none.

    "scale": pixels to [0, 1] only, as the Keras tutorials do (`x_train / 255.0`);
    "standardize": (x - mean) / std per channel or feature, with the training split's statistics;
    "auto": images (C×H×W inputs) scale, everything else standardizes. On the tutorial's MNIST MLP
    scaling beats standardizing (mean test accuracy over 12 seeds 0.976 against 0.974): the
    standardized pixels are ~3x larger, a larger effective step for the first layer. Points and
    CSV columns have no common range, so they need their statistics.
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}, got {mode!r}")
    if mode == "scale" or (mode == "auto" and len(input_shape) == 3):
        return None, None
    return mean, std


# TrainConfig.precision's choices (app/engine/runtime.choose_precision resolves "auto").
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything that decides how a model trains. Defaults follow the Keras tutorial."""

    epochs: int = 5
    batch_size: int = 32
    # {"name": "sgd"|"adam"|"adamw"|"rmsprop", "lr": float, "momentum": float, "nesterov": bool,
    #  "betas": [b1, b2], "eps": float, "alpha": float (rmsprop), "weight_decay": float}
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "adam", "lr": 0.001})
    # "cross_entropy" | "mse" (on one-hot targets) | "binary_cross_entropy"
    loss: str = "cross_entropy"
    # L2 penalty added to the loss: l2 * sum(w^2) over weights (not biases/norm parameters).
    l2: float = 0.0
    # None | {"name": "step", "step_size", "gamma"} | {"name": "cosine", "t_max"?, "eta_min"?}
    #      | {"name": "plateau", "monitor", "factor", "patience", "min_lr"?} | {"name": "warmup"} (constant)
    #      | {"name": "warmup_cosine"} (cosine decay per step to 0 at the last step); any of them may add
    #      "warmup_steps": a linear warm-up over the first N optimizer steps.
    schedule: dict[str, Any] | None = None
    # None | {"monitor": "val_loss"|"val_accuracy", "patience": int, "min_delta": float,
    #         "restore_best": bool}
    early_stopping: dict[str, Any] | None = None
    # Clip the global gradient norm to this value (None: no clipping).
    grad_clip: float | None = None
    seed: int = 0
    # "auto" (CUDA, then MPS, then CPU) | "cpu" | "cuda" | "cuda:N" | "mps"
    device: str = "auto"
    # "auto" | "fp32" | "bf16" | "fp16" (CUDA only): how the forward pass computes; weights stay float32
    # (app/engine/runtime.choose_precision). A config without it (stored before it existed) reads
    # mixed_precision: False as "fp32" and True as "auto".
    precision: str = "auto"
    # Kept for old configs and API bodies: False means fp32 when `precision` is not given.
    mixed_precision: bool = True
    # False: never channels-last. True: channels-last on CUDA for image inputs, and on CPU for
    # convolutional models trained in bf16.
    channels_last: bool = True
    # Fraction of the training set held out (seeded) for validation.
    val_split: float = 0.1
    # How inputs are scaled: "auto" | "scale" | "standardize" (see `input_normalization`).
    normalize: str = "auto"
    top_k: int = 5
    # Epoch checkpoints kept on disk: 0 keeps every one (fork from any epoch); N keeps the last N
    # and the best epoch's (by validation loss, or early stopping's monitor).
    keep_checkpoints: int = 0
    # Read by the scheduler, not the engine: how often a run whose trainer was lost is queued again.
    retries: int = 0
    # Cap on the number of training samples used (None: all); handy for quick experiments.
    max_train_samples: int | None = None
    # Per-layer weight/gradient/activation histograms and gradient warnings each epoch (app/engine/histograms.py):
    # "auto" (models of at most 5M trainable parameters) | "on" | "off".
    histograms: str = "auto"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        """Build from a plain dict, rejecting unknown keys (they are almost always typos)."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        if "precision" not in data and data.get("mixed_precision") is False:
            data["precision"] = "fp32"  # a config from before `precision`: mixed precision was off
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DatasetArrays:
    """A data set as numpy arrays (uint8 images where possible), split and ready for the engine.

    Images are (N, C, H, W); tabular data (N, F) float32; sequences (N, T, F) float32 or (N, T)
    int64 token ids. Labels are int64 class indices. `mean`/`std` (per channel or feature)
    normalize inputs after scaling uint8 to [0, 1].
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    input_shape: list[int]
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass
class TrainJob:
    """One training run as the engine sees it."""

    spec: dict[str, Any]
    config: TrainConfig
    # Where per-epoch checkpoints go (epoch-0001.pt, ...).
    checkpoint_dir: Path
    # Where exported models go (model.safetensors, model.torchscript.pt, model.onnx).
    artifacts_dir: Path
    # A checkpoint to resume from (same run) or fork from (a new run with changed settings).
    resume_from: Path | None = None
    # Fork: load weights (and optimizer if compatible) but start a fresh epoch count.
    fork: bool = False
    # The data directory, for specs whose Pretrained weights are "file:<path inside it>".
    weights_root: Path | None = None
    # Leave TorchScript and ONNX to the caller (TrainResult.pending_exports), to run after the run is reported complete.
    defer_exports: bool = False


@dataclass
class TrainResult:
    epochs_completed: int
    stopped_early: bool
    test_accuracy: float | None
    test_loss: float | None
    best_epoch: int | None
    train_time_s: float
    peak_memory_bytes: int | None = None  # the process's peak RSS (CPU) or the CUDA allocator's peak
    training_memory_bytes: int | None = None  # the part training added (see runtime.MemoryMeter)
    extra: dict[str, Any] = field(default_factory=dict)
    # With TrainJob.defer_exports: the exports still to write (app.engine.export.Exports; run(sink) writes them).
    pending_exports: Any = None
