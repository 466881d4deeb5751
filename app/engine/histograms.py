"""What the layers do over training: weight, gradient and activation histograms per layer and epoch,
gradient norms, dead ReLUs, and warnings for exploding and vanishing gradients.

`Insight(model, spec, mode, sink)` is driven by the loop (app/engine/loop.py):

- `start_epoch(steps)`, then `after_backward()` after every step's backward pass (after the L2 term,
  before gradient clipping, so clipping never hides an explosion). One step in `steps // 16` (every step
  of a short epoch, and always the run's first 8) adds each layer's gradient L2 norm to sums kept on the
  device: no host sync in the hot loop.
- `check(epoch, step)` where the loop already syncs (each flushed step event): exploding gradients are
  reported as soon as they are seen, and `diverged(...)` right before a DivergedError stops the run, so
  the warning is stored before the failure.
- `epoch_end(epoch, step, data)`: the epoch's `histograms` event. Per layer with trainable parameters
  (spec layer i is "#i+1 Type", as the run page's architecture table numbers it): a histogram of its
  weights (kernels; biases left out unless the layer has nothing else, e.g. norm layers' scales and
  shifts are kept), of the gradients of the epoch's last training step (what the optimizer applied, after
  clipping), and of its outputs (after its activation) on a fixed batch of the first validation samples
  (training samples when there is no validation split): 1/64 of the training samples, from 32 to 256, so
  that forward pass costs about 1% of an epoch; the gradient norm averaged over the sampled
  steps and its maximum; for ReLU layers the dead fraction: units (features, or channels of a
  convolution) that are zero for every sample of that batch.

Histograms have BINS equal bins from that tensor's min to its max that epoch: {"lo", "hi", "counts"
(ints summing to the finite values), "nonfinite", "stride"}; a tensor of more than MAX_VALUES (2^20)
values is counted every `stride`-th value (its min and max are still exact). Warnings (flags on the layer in each event, and a
`log` event with level warning the first time each layer gets each flag):

- exploding: a sampled gradient norm that is not finite, above EXPLODING_NORM (1e3), or both above 1
  and more than EXPLODING_GROWTH (100x) the layer's norm at the run's first step;
- vanishing: the layer's mean gradient norm below VANISHING_RATIO (1e-4) of the last layer's (the
  output layer's) that epoch; with no gradient at all reaching a layer, the ratio is 0.

`mode` "auto" records for models of at most AUTO_MAX_PARAMS (5M) trainable parameters, "on" always,
"off" never. Recording is advice: an error in it logs a warning and turns it off, never fails a run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from app.engine.types import Sink

BINS = 32
AUTO_MAX_PARAMS = 5_000_000
MAX_LAYERS = 64  # layers recorded (the first ones with trainable parameters)
ACTIVATION_BATCH = 256  # at most; an epoch of N training samples gets N // 64 (at least 32): see _batch_size
MAX_VALUES = 2**20  # values per histogram; a larger tensor is counted every `stride`-th value
SAMPLES_PER_EPOCH = 16  # sampled steps per epoch for the gradient norms
FIRST_STEPS = 8  # the run's first steps are always sampled: the baseline for growth
EXPLODING_NORM = 1e3
EXPLODING_GROWTH = 100.0
VANISHING_RATIO = 1e-4
HISTOGRAM_MODES = ("auto", "on", "off")


def _sig(value: float | None, digits: int = 6) -> float | None:
    """`value` rounded to `digits` significant digits (None stays; inf and nan become None)."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(f"{value:.{digits}g}")


def histogram(values: torch.Tensor, bins: int = BINS, max_values: int = MAX_VALUES) -> dict[str, Any]:
    """`bins` equal bins from the finite values' min to max. The counts sum to the number of finite
    values; of a tensor over `max_values` values, of every `stride`-th one (min and max stay exact)."""
    flat = values.detach().reshape(-1).float()
    lo_t, hi_t = torch.aminmax(flat)
    lo, hi = float(lo_t), float(hi_t)
    nonfinite = 0
    if not (_finite(lo) and _finite(hi)):  # a NaN or an infinity somewhere: count the finite values only
        finite = torch.isfinite(flat)
        flat = flat[finite]
        nonfinite = int(finite.numel() - flat.numel())
        if flat.numel() == 0:
            return {"lo": None, "hi": None, "counts": [0] * bins, "nonfinite": nonfinite, "stride": 1}
        lo, hi = (float(v) for v in torch.aminmax(flat))
    stride = -(-flat.numel() // max_values)
    if stride > 1:
        flat = flat[::stride]
    if hi <= lo:
        counts = [0] * bins
        counts[0] = int(flat.numel())
    else:
        counts = [int(c) for c in torch.histc(flat, bins=bins, min=lo, max=hi).round().tolist()]
    return {"lo": _sig(lo), "hi": _sig(hi), "counts": counts, "nonfinite": nonfinite, "stride": stride}


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


@dataclass
class _Layer:
    index: int  # the spec layer's index (0-based)
    name: str  # "#3 Dense": numbered as the run page's architecture table
    kind: str  # the spec's type, or the module's class
    description: str
    module: nn.Module
    params: list[nn.Parameter]  # trainable: the gradient norm covers all of them
    weights: list[nn.Parameter]  # what the histograms show
    relu: bool
    channels_first: bool  # convolutions: a unit is a channel
    flagged: set[str] = field(default_factory=set)  # warnings already logged


def _layers(model: nn.Module, spec: dict[str, Any] | None) -> list[_Layer]:
    raw_layers = (spec or {}).get("layers") or []
    children = list(model.layers) if isinstance(getattr(model, "layers", None), nn.ModuleList) else \
        [module for _, module in model.named_children()]
    found: list[_Layer] = []
    for index, module in enumerate(children):
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            continue
        raw = raw_layers[index] if index < len(raw_layers) and len(raw_layers) == len(children) else {}
        kind = str(raw.get("type") or type(module).__name__)
        description = kind
        if raw:
            try:
                from app.layers import registry

                description = registry.read_layer(raw).describe()
            except Exception:  # a name is a nicety
                pass
        weights = [p for p in params if p.ndim >= 2] or params
        relu = any(isinstance(m, nn.ReLU) for m in module.modules())
        channels_first = any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())
        found.append(_Layer(index, f"#{index + 1} {kind}", kind, description, module, params, weights, relu,
                            channels_first))
    return found[:MAX_LAYERS]


def _batch_size(train_samples: int) -> int:
    """The activations' batch: a forward pass over 1/64 of an epoch's samples (about 1% of the epoch's
    time or less: a forward pass costs a third to a half of a training step), from 32 to ACTIVATION_BATCH."""
    return max(32, min(ACTIVATION_BATCH, train_samples // 64))


def enabled_for(mode: str, model: nn.Module) -> bool:
    if mode == "off":
        return False
    if mode == "on":
        return True
    return sum(p.numel() for p in model.parameters() if p.requires_grad) <= AUTO_MAX_PARAMS


class Insight:
    """Records one run's histograms and gradient warnings (see the module's docstring)."""

    def __init__(self, model: nn.Module, spec: dict[str, Any] | None, mode: str, sink: Sink, *,
                 amp: bool = False):
        self.sink = sink
        self.amp = amp  # a scaler skips steps whose gradients overflow: those are not explosions
        self.enabled = enabled_for(mode, model)
        self.layers: list[_Layer] = _layers(model, spec) if self.enabled else []
        self.enabled = self.enabled and bool(self.layers)
        self.model = model
        self._batch: torch.Tensor | None = None
        self._first: list[float] | None = None  # each layer's gradient norm at the run's first sampled step
        self._first_t: torch.Tensor | None = None
        self._steps = 0
        self._every = 1
        self._i = 0
        if self.enabled:
            device = self.layers[0].params[0].device
            self._params = [p for layer in self.layers for p in layer.params]
            self._owner = torch.tensor([i for i, layer in enumerate(self.layers) for _ in layer.params],
                                       dtype=torch.long, device=device)
            self._zeros = torch.zeros(len(self.layers), device=device)
            self._reset()

    def _reset(self) -> None:
        self._sum = self._zeros.clone()
        self._max = self._zeros.clone()
        self._count = self._zeros.clone()

    def _off(self, exc: Exception) -> None:
        self.enabled = False
        self.sink.emit("log", {"level": "warning", "message": f"histograms are off for the rest of this run: "
                               f"{type(exc).__name__}: {exc}"})

    # -- the hot loop --------------------------------------------------------------------------

    def start_epoch(self, steps: int) -> None:
        if not self.enabled:
            return
        self._every = max(1, steps // SAMPLES_PER_EPOCH)
        self._i = 0
        self._reset()

    def after_backward(self) -> None:
        """Each step, after backward: one step in `_every` adds the layers' gradient norms (on the device)."""
        if not self.enabled:
            return
        i = self._i
        self._i += 1
        self._steps += 1
        if i % self._every and self._steps > FIRST_STEPS:
            return
        try:
            grads = [p.grad for p in self._params]
            if any(g is None for g in grads):
                keep = [j for j, g in enumerate(grads) if g is not None]
                if not keep:
                    return
                owner = self._owner[torch.tensor(keep, device=self._owner.device)]
                grads = [grads[j] for j in keep]
            else:
                owner = self._owner
            norms = torch.stack(torch._foreach_norm(grads)).float()
            layer = torch.zeros_like(self._zeros).index_add_(0, owner, norms * norms).sqrt_()
            if self.amp:  # an overflowed step (skipped by the scaler) counts for nothing
                finite = torch.isfinite(layer)
                layer = torch.where(finite, layer, 0.0)
                self._count += finite
            else:
                self._count += 1
            self._sum += layer
            self._max = torch.maximum(self._max, layer)  # NaN propagates: a non-finite norm is flagged
            if self._first_t is None:
                self._first_t = layer.clone()
        except Exception as exc:
            self._off(exc)

    # -- warnings ------------------------------------------------------------------------------

    def _flag(self, layer: _Layer, kind: str, message: str, epoch: int, step: int) -> None:
        if kind not in layer.flagged:
            layer.flagged.add(kind)
            self.sink.emit("log", {"level": "warning", "epoch": epoch, "step": step,
                                   "message": f"{kind} gradients in layer {layer.name}: {message}"})

    def _exploding(self, epoch: int, step: int) -> dict[int, str]:
        """Layers whose sampled gradient norms exploded so far this epoch, with why (synchronizes)."""
        highs = self._max.tolist()
        if self._first is None and self._first_t is not None:
            self._first = self._first_t.tolist()
        found: dict[int, str] = {}
        for i, high in enumerate(highs):
            first = self._first[i] if self._first is not None else None
            if high != high or high == float("inf"):
                found[i] = "a gradient norm was not finite (NaN or infinity)"
            elif high > EXPLODING_NORM:
                found[i] = f"gradient norm {high:.3g} is above {EXPLODING_NORM:g}"
            elif first and high > 1.0 and high > EXPLODING_GROWTH * first:
                found[i] = f"gradient norm {high:.3g} grew more than {EXPLODING_GROWTH:g}x from {first:.3g} at the first step"
        for i, why in found.items():
            self._flag(self.layers[i], "exploding", why + " (try a lower learning rate or gradient clipping)", epoch, step)
        return found

    def check(self, epoch: int, step: int) -> None:
        """Where the loop syncs anyway: report exploding gradients as soon as they are seen."""
        if not self.enabled:
            return
        try:
            self._exploding(epoch, step)
        except Exception as exc:
            self._off(exc)

    def diverged(self, epoch: int, step: int, data: Any = None) -> None:
        """Right before a DivergedError: the warnings and what the layers looked like, stored first."""
        self.epoch_end(epoch, step, data, diverged=True)

    # -- the epoch's event ---------------------------------------------------------------------

    def _fixed_batch(self, data: Any) -> torch.Tensor | None:
        if self._batch is None and data is not None:
            split = "val" if data.size("val") else "train"
            if data.size(split):
                self._batch = next(data.eval_batches(split, _batch_size(data.size("train"))))[0]
        return self._batch

    def _activations(self, data: Any) -> dict[int, torch.Tensor]:
        batch = self._fixed_batch(data)
        if batch is None:
            return {}
        outputs: dict[int, torch.Tensor] = {}
        handles = []
        for i, layer in enumerate(self.layers):
            def keep(_module, _inputs, output, i=i):
                if isinstance(output, tuple):
                    output = output[0]
                if isinstance(output, torch.Tensor):
                    outputs[i] = output.detach()
            handles.append(layer.module.register_forward_hook(keep))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(batch)
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        return outputs

    @staticmethod
    def _dead_fraction(layer: _Layer, out: torch.Tensor) -> float | None:
        if not layer.relu or out.ndim < 2 or not out.is_floating_point():
            return None
        units = out.transpose(0, 1).reshape(out.shape[1], -1) if layer.channels_first else out.reshape(-1, out.shape[-1]).T
        alive = (units != 0).any(dim=1)
        return round(1.0 - float(alive.float().mean()), 4)

    def epoch_end(self, epoch: int, step: int, data: Any = None, *, diverged: bool = False) -> None:
        """Emit the epoch's `histograms` event (with the warnings) and start the next epoch's sums."""
        if not self.enabled:
            return
        started = time.perf_counter()
        try:
            exploding = self._exploding(epoch, step)
            count = self._count.clamp(min=1)
            means = (self._sum / count).tolist()
            highs = self._max.tolist()
            sampled = self._count.tolist()
            vanishing: dict[int, str] = {}
            last = means[-1] if sampled[-1] else None
            if last and last == last and last > 0 and len(self.layers) > 1:
                for i, mean in enumerate(means[:-1]):
                    if sampled[i] and mean == mean and mean < VANISHING_RATIO * last:
                        vanishing[i] = ((f"mean gradient norm {mean:.3g} is {mean / last:.2g} of the output layer's "
                                         f"{last:.3g} (under {VANISHING_RATIO:g})") if mean > 0 else
                                        f"no gradient reaches it (the output layer's is {last:.3g}; dead ReLUs?)")
                        vanishing[i] += "; try ReLU, normalization, a better initialization or a lower learning rate"
            for i, why in vanishing.items():
                self._flag(self.layers[i], "vanishing", why, epoch, step)
            outputs = {} if diverged else self._activations(data)
            rows = []
            for i, layer in enumerate(self.layers):
                grads = [p.grad for p in layer.weights if p.grad is not None]
                out = outputs.get(i)
                flags = (["exploding"] if i in exploding else []) + (["vanishing"] if i in vanishing else [])
                rows.append({
                    "index": layer.index, "name": layer.name, "type": layer.kind, "description": layer.description,
                    "params": sum(p.numel() for p in layer.weights),
                    "weights": histogram(torch.cat([p.detach().reshape(-1) for p in layer.weights])),
                    "gradients": histogram(torch.cat([g.reshape(-1) for g in grads])) if grads else None,
                    "activations": histogram(out) if out is not None else None,
                    "grad_norm": _sig(means[i], 4) if sampled[i] else None,
                    "grad_norm_max": _sig(highs[i], 4) if sampled[i] else None,
                    "dead_fraction": self._dead_fraction(layer, out) if out is not None else None,
                    "flags": flags,
                    "why": {**({"exploding": exploding[i]} if i in exploding else {}),
                            **({"vanishing": vanishing[i]} if i in vanishing else {})},
                })
            batch = self._batch
            self.sink.emit("histograms", {
                "epoch": epoch, "step": step, "bins": BINS, "diverged": diverged,
                "batch": int(batch.shape[0]) if batch is not None and outputs else 0,
                "sampled_steps": int(max(sampled)) if sampled else 0,
                "layers": rows,
                "warnings": [{"layer": r["name"], "kind": kind, "message": r["why"][kind]}
                             for r in rows for kind in r["flags"]],
                "seconds": round(time.perf_counter() - started, 4),
            })
        except Exception as exc:
            self._off(exc)
        finally:
            if self.enabled:
                self._reset()
