"""The training loop: `train(job, data, sink, should_stop)`.

Flat on purpose (nanoGPT style). The hot loop does the math and O(1) bookkeeping: loss and
accuracy accumulate in device tensors, and the host reads them (a sync point on GPU) only
when a step event is flushed (~4 per second) and at the end of an epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from app.engine import checkpoint as ckpt
from app.engine.data import DeviceData
from app.engine.embedding import emit_projection
from app.engine.evaluate import eval_batch_size, evaluate
from app.engine.export import Exports
from app.engine.histograms import HISTOGRAM_MODES, Insight
from app.engine.losses import make_loss, predictions
from app.engine.optim import (
    EarlyStopping,
    make_optimizer,
    make_scheduler,
    make_step_schedule,
    optimizer_kwargs,
)
from app.engine.runtime import MemoryMeter, choose_precision, resolve_device, seed_everything, tune_for
from app.engine.types import (
    NORMALIZE_MODES,
    DatasetArrays,
    DivergedError,
    EngineError,
    Sink,
    StoppedError,
    TrainConfig,
    TrainJob,
    TrainResult,
)

FLUSH_INTERVAL_S = 0.25  # step events at most ~4 per second
TALLY_STEPS = 32  # steps whose loss and accuracy are added to the epoch's sums at once (_Tally)
TALLY_ELEMENTS = 1 << 20  # or fewer, when their outputs hold this many values (4 MB in float32)


def _check_config(job: TrainJob) -> None:
    cfg = job.config
    if cfg.epochs < 1:
        raise EngineError("epochs must be at least 1")
    if cfg.batch_size < 1:
        raise EngineError("batch size must be at least 1")
    if cfg.l2 < 0:
        raise EngineError("l2 must not be negative")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise EngineError("grad_clip must be above 0 (or unset)")
    if cfg.keep_checkpoints < 0:
        raise EngineError("keep_checkpoints must be 0 (keep all) or more")
    if cfg.normalize not in NORMALIZE_MODES:
        raise EngineError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}, got {cfg.normalize!r}")
    if cfg.histograms not in HISTOGRAM_MODES:
        raise EngineError(f"histograms must be one of {', '.join(HISTOGRAM_MODES)}, got {cfg.histograms!r}")


def _warm_up(cfg: TrainConfig, device: torch.device) -> None:
    """One step of a one-weight model: the lazy imports and pools the first optimizer step pulls in
    (torch._dynamo alone is ~100 MB) belong to the process, not to the model the meter measures."""
    weight = nn.Parameter(torch.zeros(1, device=device))
    optimizer = make_optimizer([weight], cfg.optimizer, device)
    (weight * 2).sum().backward()
    optimizer.step()


def _output_size(model: nn.Module, data: DeviceData) -> int:
    model.eval()
    with torch.no_grad():
        out = model(data.sample_batch(2))
    model.train()
    if out.ndim != 2:
        raise EngineError(f"the model's output has shape {tuple(out.shape[1:])} per sample; a classifier must "
                          "end in one value per class (add Flatten and a Dense layer)")
    return int(out.shape[1])


def _monitored(monitor: str, metrics: dict[str, Any]) -> float:
    # Without a validation split, watch the training metric of the same kind.
    value = metrics.get(monitor)
    return metrics[monitor.replace("val_", "train_")] if value is None else value


def train(job: TrainJob, data: DatasetArrays, sink: Sink, should_stop: Callable[[], bool] | None = None, *,
          model: nn.Module | None = None) -> TrainResult:
    """Train `job` on `data`, reporting through `sink`; `model` overrides building `job.spec`.

    Checkpoints are written by a background thread (ckpt.Writer); every one is on disk when this
    returns or raises (a stopped run can be resumed from its last epoch)."""
    writer = ckpt.Writer()
    try:
        result = _train(job, data, sink, should_stop, model=model, writer=writer)
    except BaseException:
        writer.close(raise_errors=False)
        raise
    writer.close()
    return result


def _train(job: TrainJob, data: DatasetArrays, sink: Sink, should_stop: Callable[[], bool] | None, *,
           model: nn.Module | None, writer: ckpt.Writer) -> TrainResult:
    cfg = job.config
    _check_config(job)
    started = time.monotonic()
    device = resolve_device(cfg.device)
    tune_for(device)
    _warm_up(cfg, device)
    seed_everything(cfg.seed)
    meter = MemoryMeter(device)
    if model is None:
        from app.engine.build import build_model

        model = build_model(job.spec, data.input_shape, weights_root=job.weights_root)
    chosen = choose_precision(cfg.precision, device, model, image_input=len(data.input_shape) == 3,
                              channels_last=cfg.channels_last)
    dd = DeviceData(data, device, max_train_samples=cfg.max_train_samples, seed=cfg.seed,
                    channels_last=chosen.channels_last, normalize=cfg.normalize)
    model.to(device)
    if chosen.channels_last:
        model.to(memory_format=torch.channels_last)  # NHWC: what tensor-core and oneDNN convolutions want
    activation = getattr(model, "output_activation", None)
    loss_fn = make_loss(cfg.loss, activation, len(dd.class_names), _output_size(model, dd))
    trainable = [p for p in model.parameters() if p.requires_grad]
    decayed = [p for p in trainable if p.ndim >= 2]  # weights, not biases or norm scales
    optimizer_name, _ = optimizer_kwargs(cfg.optimizer)
    optimizer = make_optimizer(trainable, cfg.optimizer, device)
    autocast, scaler, precision = chosen.autocast, chosen.scaler, chosen.name
    generator = torch.Generator().manual_seed(cfg.seed)  # batch order only: resumable on its own
    early = EarlyStopping(cfg.early_stopping)
    insight = Insight(model, job.spec, cfg.histograms, sink, amp=scaler is not None)  # app/engine/histograms.py
    history: list[dict[str, Any]] = []
    start_epoch, step, samples_total, best_state = 1, 0, 0, None

    saved = ckpt.load(job.resume_from) if job.resume_from else None
    if saved is not None:
        ckpt.load_weights(model, saved["model"])
        if job.fork and saved.get("optimizer_name") == optimizer_name:
            ckpt.load_optimizer_for_fork(optimizer, saved["optimizer"])
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.epochs)
    if saved is not None and not job.fork:
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler") is not None:
            scheduler.load_state_dict(saved["scheduler"])
        early.load_state_dict(saved["early_stopping"])
        history, best_state = list(saved["history"]), saved.get("best_model")
        start_epoch, step, samples_total = int(saved["epoch"]) + 1, int(saved["step"]), int(saved["samples"])
        ckpt.set_rng_state(saved["rng"], generator)
    origin = f", {'forked' if job.fork else 'resumed'} from {job.resume_from}" if saved is not None else ""
    sink.emit("precision", chosen.event())
    sink.emit("log", {"level": "info", "message": f"training on {device} ({chosen.reason}), "
                      f"{dd.size('train')} samples{origin}"})

    eval_kwargs = {"top_k": cfg.top_k, "batch_size": eval_batch_size(cfg.batch_size), "autocast": autocast}
    params_for_clip = trainable if cfg.grad_clip else []
    stopped_early, epoch = False, start_epoch - 1
    train_size = max(dd.size("train"), 1)
    epoch_steps = math.ceil(train_size / cfg.batch_size)
    # Warm-up and per-step decay (app/engine/optim.py): its only state is `step`, restored with the run.
    warmup = make_step_schedule(optimizer, cfg.schedule, epoch_steps * cfg.epochs)
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        epoch_start = time.monotonic()
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        tally = _Tally(loss_sum, correct)
        seen, flushed_loss, flushed_correct, flushed_seen = 0, 0.0, 0, 0
        epoch_first_step = step
        # The run's very first step is reported at once: people watch for it to come alive.
        next_flush = epoch_start if epoch == start_epoch else epoch_start + FLUSH_INTERVAL_S
        insight.start_epoch(epoch_steps)
        for xb, yb, n in dd.train_batches(cfg.batch_size, generator):
            if should_stop is not None and should_stop():
                raise StoppedError(f"stopped at epoch {epoch}, step {step}")
            with autocast():
                out = model(xb)
                loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # true gradients for L2 and clipping
            else:
                loss.backward()
            if cfg.l2:
                # d/dw of l2*sum(w^2), added in one multi-tensor op instead of a penalty graph.
                torch._foreach_add_([p.grad for p in decayed], decayed, alpha=2.0 * cfg.l2)
            insight.after_backward()  # samples the layers' gradient norms, before clipping
            if params_for_clip:
                torch.nn.utils.clip_grad_norm_(params_for_clip, cfg.grad_clip, foreach=True)
            if warmup is not None:
                warmup.scale(step)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if warmup is not None:
                warmup.restore()
            # Stay on the device: no .item() here (it would stall a GPU every step).
            tally.add(out, yb, loss, n)
            step += 1
            seen += n
            # time.monotonic() is a ~50 ns vDSO call: cheap enough to ask every step.
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + FLUSH_INTERVAL_S
                tally.drain()
                total_loss, total_correct = loss_sum.item(), correct.item()
                if not math.isfinite(total_loss):
                    insight.diverged(epoch, step)  # the warnings are stored before the run stops
                    raise DivergedError(f"diverged at epoch {epoch}, step {step}")
                insight.check(epoch, step)
                window, elapsed = seen - flushed_seen, now - epoch_start
                sink.emit("step", {"epoch": epoch, "step": step, "loss": (total_loss - flushed_loss) / window,
                                   "accuracy": (total_correct - flushed_correct) / window,
                                   "samples": samples_total + seen, "epochs": cfg.epochs,
                                   "epoch_progress": seen / train_size, "epoch_step": step - epoch_first_step,
                                   "epoch_steps": epoch_steps, "epoch_loss": total_loss / seen,
                                   "epoch_accuracy": total_correct / seen, "epoch_elapsed": elapsed,
                                   "samples_per_sec": seen / max(elapsed, 1e-9)})
                flushed_loss, flushed_correct, flushed_seen = total_loss, total_correct, seen
        tally.drain()
        epoch_time = time.monotonic() - epoch_start
        samples_total += seen
        train_loss, train_accuracy = loss_sum.item() / seen, correct.item() / seen
        if not math.isfinite(train_loss):
            insight.diverged(epoch, step)
            raise DivergedError(f"diverged at epoch {epoch}, step {step}")
        insight.epoch_end(epoch, step, dd)

        val = evaluate(model, dd, "val", loss_fn, epoch=epoch, **eval_kwargs)
        if val is not None:
            sink.emit("evaluation", val)
        metrics = {"train_loss": train_loss, "train_accuracy": train_accuracy,
                   "val_loss": val["loss"] if val else None, "val_accuracy": val["accuracy"] if val else None}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(_monitored(cfg.schedule.get("monitor", "val_loss"), metrics))
        elif scheduler is not None:
            scheduler.step()
        if early.enabled and early.update(epoch, _monitored(early.monitor, metrics)) and early.restore_best:
            best_state = ckpt.cpu_state_dict(model)
        history.append({"epoch": epoch, **metrics, "lr": lr})

        # Copied now (CPU copies, a snapshot of the history), written by the writer's thread while the next
        # epoch trains; the `checkpoint` event is emitted once the file is on disk.
        best = _best_epoch(early, history) if cfg.keep_checkpoints else None
        writer.submit(ckpt.checkpoint_path(job.checkpoint_dir, epoch), {
            "epoch": epoch, "step": step, "samples": samples_total, "model": ckpt.cpu_state_dict(model), "optimizer_name": optimizer_name,
            "optimizer": ckpt.cpu_state_dict(optimizer),
            "scheduler": ckpt.cpu_state_dict(scheduler) if scheduler is not None else None,
            "early_stopping": early.state_dict(), "history": [dict(h) for h in history], "best_model": best_state,
            "rng": ckpt.rng_state(generator), "config": cfg.to_dict()},
            lambda path, pruned, epoch=epoch: sink.emit("checkpoint", {"epoch": epoch, "path": str(path), "pruned": pruned}),
            keep_last=cfg.keep_checkpoints, keep={best} if best else set())
        sink.emit("epoch", {"epoch": epoch, "epochs": cfg.epochs, "step": step, **metrics, "lr": lr,
                            "epoch_time": epoch_time, "samples_per_sec": seen / max(epoch_time, 1e-9)})
        sink.emit("memory", meter.event())
        if early.should_stop:
            stopped_early = True
            sink.emit("log", {"level": "info", "message": f"early stopping at epoch {epoch}: {early.monitor} "
                              f"has not improved since epoch {early.best_epoch}"})
            break

    if early.restore_best and best_state is not None and early.best_epoch != epoch:
        model.load_state_dict(best_state)
        sink.emit("log", {"level": "info", "message": f"restored the weights of epoch {early.best_epoch}"})
    test = evaluate(model, dd, "test", loss_fn, epoch=epoch, with_misclassified=True, **eval_kwargs)
    if test is not None:
        sink.emit("evaluation", test)
    memory = meter.event()  # before the exports: tracing for ONNX is not what training needs
    sink.emit("memory", memory)
    if test is not None:
        emit_projection(model, dd, sink, epoch=epoch, batch_size=eval_kwargs["batch_size"], seed=cfg.seed,
                        autocast=autocast)
    # TorchScript and ONNX cost a second or more (tracing, the onnx import): with `defer_exports` the
    # caller runs them after reporting the run complete (result.pending_exports).
    exports = Exports(model, dd.sample_batch(2), job.artifacts_dir)
    exports.run(sink, exports.immediate(job.defer_exports))
    return TrainResult(pending_exports=exports if job.defer_exports else None,
        epochs_completed=epoch if history else 0, stopped_early=stopped_early,
        test_accuracy=test["accuracy"] if test else None, test_loss=test["loss"] if test else None,
        best_epoch=_best_epoch(early, history), train_time_s=time.monotonic() - started,
        peak_memory_bytes=memory["peak_bytes"], training_memory_bytes=memory["training_bytes"],
        extra={"device": str(device), "precision": precision, "precision_reason": chosen.reason,
               "history": history})


class _Tally:
    """The epoch's loss sum and correct count, on the device. A step's outputs are kept (detached: a few
    KB for a small classifier, never more than TALLY_ELEMENTS values, 4 MB) and added TALLY_STEPS at a time: one argmax/compare/sum per
    group instead of ~5 small ops per step, which on a small model was ~2% of the step
    (docs/benchmarks.md, "A run with no overhead")."""

    def __init__(self, loss_sum: torch.Tensor, correct: torch.Tensor):
        self.loss_sum, self.correct = loss_sum, correct
        self.outs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.losses: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.elements = 0

    def add(self, out: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor, n: int) -> None:
        self.outs.append(out.detach())
        self.targets.append(targets)
        self.losses.append(loss.detach())
        self.sizes.append(n)
        self.elements += out.numel()
        if len(self.outs) >= TALLY_STEPS or self.elements >= TALLY_ELEMENTS:
            self.drain()

    def drain(self) -> None:
        if not self.outs:
            return
        outs, targets = torch.cat(self.outs), torch.cat(self.targets)
        self.correct.add_((predictions(outs) == targets).sum())
        losses = torch.stack(self.losses).float()
        if len(set(self.sizes)) == 1:
            self.loss_sum.add_(losses.sum(), alpha=self.sizes[0])
        else:  # an epoch's last, smaller batch
            self.loss_sum.add_(losses.dot(torch.tensor(self.sizes, dtype=losses.dtype, device=losses.device)))
        self.outs, self.targets, self.losses, self.sizes, self.elements = [], [], [], [], 0


def _best_epoch(early: EarlyStopping, history: list[dict[str, Any]]) -> int | None:
    if early.enabled:
        return early.best_epoch
    scored = [h for h in history if h.get("val_loss") is not None]
    return min(scored, key=lambda h: h["val_loss"])["epoch"] if scored else None
