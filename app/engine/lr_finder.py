"""The learning-rate range test (Leslie Smith, "Cyclical Learning Rates", 2015; fastai's lr_find).

A fresh model trains for at most `steps` batches while the learning rate grows exponentially from
`start_lr` to `end_lr`; each step records the rate and the loss, smoothed with an exponential
moving average (beta 0.98, bias-corrected). The test stops early once the smoothed loss passes
`DIVERGE_FACTOR` times the best seen so far (or is not finite): the rate has become too large.

The suggestion (`suggest`) is the rate at the steepest descent of the loss against log10(rate), on a
centred moving average of the raw losses (a window of ~1/15 of the points): the moving average the
test stops on lags behind the rate by ~50 steps, which would push the steepest point up to rates
several times too large. Only points before the lowest loss count (past it the curve only climbs).
Where the loss falls fastest, the model learns fastest while it still learns stably.
Plain PyTorch like the rest of the engine: the model, the data, the loss and the optimizer are
built exactly as `loop.train` builds them, so the test measures the run the form would start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from app.engine.data import DeviceData
from app.engine.losses import make_loss
from app.engine.optim import make_optimizer
from app.engine.runtime import resolve_device, seed_everything
from app.engine.types import DatasetArrays, EngineError, TrainConfig

START_LR, END_LR = 1e-7, 10.0
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 20, 300, 200
SMOOTHING = 0.98  # the moving average's beta
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss exceeds this many times the best
SKIP_START = 5  # first points left out of the slope (the first steps' losses are the model's random start)


def _check(start_lr: float, end_lr: float, steps: int) -> None:
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise EngineError(f"the learning rates must grow: start {start_lr:g} must be above 0 and below end {end_lr:g}")
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise EngineError(f"steps must be between {MIN_STEPS} and {MAX_STEPS}, got {steps}")


def range_test(spec: dict[str, Any], config: TrainConfig, data: DatasetArrays, *, start_lr: float = START_LR,
               end_lr: float = END_LR, steps: int = DEFAULT_STEPS,
               on_point: Callable[[dict[str, float]], None] | None = None,
               should_stop: Callable[[], bool] | None = None, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Run the range test; returns {"points": [{"lr", "loss" (the moving average), "raw", "smooth" (the
    centred average)}...], "suggestion", "stopped" ("end" | "diverged"), "steps", "seconds"}. `on_point` sees each point as it is recorded (the job streams them)."""
    _check(start_lr, end_lr, steps)
    started = time.monotonic()
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if model is None:
        from app.engine.build import build_model

        model = build_model(spec, data.input_shape)
    dd = DeviceData(data, device, max_train_samples=config.max_train_samples, seed=config.seed,
                    normalize=config.normalize)
    model.to(device).train()
    with torch.no_grad():
        model.eval()
        outputs = model(dd.sample_batch(2)).shape[1]
        model.train()
    loss_fn = make_loss(config.loss, getattr(model, "output_activation", None), len(dd.class_names), int(outputs))
    trainable = [p for p in model.parameters() if p.requires_grad]
    decayed = [p for p in trainable if p.ndim >= 2]
    optimizer = make_optimizer(trainable, {**config.optimizer, "lr": start_lr}, device)
    generator = torch.Generator().manual_seed(config.seed)
    ratio = (end_lr / start_lr) ** (1.0 / (steps - 1))

    points: list[dict[str, float]] = []
    average, best, stopped = 0.0, math.inf, "end"
    step = 0
    while step < steps:
        for xb, yb, _ in dd.train_batches(config.batch_size, generator):
            if step >= steps:
                break
            if should_stop is not None and should_stop():
                raise EngineError("the learning-rate search was stopped")
            lr = start_lr * ratio ** step
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.l2:
                torch._foreach_add_([p.grad for p in decayed], decayed, alpha=2.0 * config.l2)
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip, foreach=True)
            optimizer.step()
            raw = float(loss.item())  # one sync per step: a few hundred steps at most
            step += 1
            if not math.isfinite(raw):
                stopped = "diverged"
                break
            average = SMOOTHING * average + (1 - SMOOTHING) * raw
            smoothed = average / (1 - SMOOTHING ** step)
            point = {"lr": lr, "loss": smoothed, "raw": raw}
            points.append(point)
            if on_point is not None:
                on_point(point)
            best = min(best, smoothed)
            if step > SKIP_START and smoothed > DIVERGE_FACTOR * best:
                stopped = "diverged"
                break
        if stopped != "end":
            break
    for point, smooth in zip(points, centred_average([p["raw"] for p in points]), strict=True):
        point["smooth"] = smooth
    return {"points": points, "suggestion": suggest(points), "stopped": stopped, "steps": step,
            "seconds": round(time.monotonic() - started, 3)}


def centred_average(values: list[float]) -> list[float]:
    """A moving average centred on each point (no lag), its window ~1/15 of the points (odd, >= 3)."""
    raw = np.asarray(values, dtype=np.float64)
    if raw.size < 3:
        return raw.tolist()
    window = max(3, (raw.size // 15) | 1)
    padded = np.pad(raw, (window // 2, window // 2), mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid").tolist()


def suggest(points: list[dict[str, float]]) -> float | None:
    """The rate where the centred average of the loss falls fastest against log10(rate), before the
    loss is at its lowest; None when the test saw too few points or the loss never fell."""
    if len(points) < SKIP_START + 3:
        return None
    lrs = np.log10(np.array([p["lr"] for p in points], dtype=np.float64))
    losses = np.array(centred_average([p["raw"] for p in points]))
    end = int(np.argmin(losses)) + 1
    if end - SKIP_START < 3:
        return None
    slopes = np.gradient(losses[SKIP_START:end], lrs[SKIP_START:end])
    steepest = int(np.argmin(slopes))
    if slopes[steepest] >= 0:
        return None
    return float(f"{10 ** lrs[SKIP_START + steepest]:.2g}")  # two significant digits: a rate to type
