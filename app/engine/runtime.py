"""Device choice, seeding, precision (autocast) and memory readings: the hardware-facing helpers."""

from __future__ import annotations

import contextlib
import functools
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from app.engine.types import PRECISIONS, EngineError

Autocast = Callable[[], contextlib.AbstractContextManager]


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA, then MPS, then CPU; an explicit device that is missing is an EngineError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise EngineError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineError("this run asks for CUDA but the machine has no CUDA device: choose device auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise EngineError(f"there is no {name} (this machine has {torch.cuda.device_count()} CUDA devices)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EngineError("this run asks for MPS but it is not available here: choose device auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices): same seed, same run on CPU."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def tune_for(device: torch.device) -> None:
    """Per-device speed settings (CUDA only: TF32 matmuls and cuDNN autotuning)."""
    if device.type == "cuda":
        # TF32 tensor cores for float32 matmul/conv on Ampere+; cuDNN picks the fastest
        # convolution algorithm for the (fixed) batch shape. GPU runs are not bit-reproducible.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def _torch_probe(name: str) -> bool:
    probe = getattr(torch.cpu, name, None)  # torch's own cpuinfo (private, so looked up with care)
    try:
        return bool(probe()) if callable(probe) else False
    except Exception:
        return False


def cpu_bf16_hardware() -> str | None:
    """The CPU feature that does bf16 math in hardware ("AMX-bf16" or "AVX512-bf16"), or None.

    Detected, from torch's cpuinfo probes and the kernel's /proc/cpuinfo flags (either says yes).
    torch.ops.mkldnn._is_mkldnn_bf16_supported() is not used: it is also true on plain AVX-512,
    where oneDNN emulates bf16 and autocast is slower than float32."""
    flags = _cpu_flags()
    if "amx_bf16" in flags or _torch_probe("_is_amx_tile_supported"):
        return "AMX-bf16"
    if "avx512_bf16" in flags or _torch_probe("_is_avx512_bf16_supported"):
        return "AVX512-bf16"
    return None


def is_convolutional(model: nn.Module) -> bool:
    """Any convolution layer (Conv1D/2D/3D, transposed or not)."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


@dataclass(frozen=True)
class Precision:
    """How a run computes: `name` fp32 | bf16 | fp16, why, the autocast factory, the grad scaler (fp16
    only) and whether the model and inputs go channels-last. Weights stay float32 in every case."""

    name: str
    reason: str
    autocast: Autocast = contextlib.nullcontext
    scaler: torch.amp.GradScaler | None = None
    channels_last: bool = False

    def event(self) -> dict[str, object]:
        """The `precision` event the run page shows."""
        return {"precision": self.name, "reason": self.reason, "channels_last": self.channels_last}


def _autocast(device: torch.device, dtype: torch.dtype) -> Autocast:
    return functools.partial(torch.autocast, device.type, dtype=dtype)


def choose_precision(requested: str, device: torch.device, model: nn.Module, *, image_input: bool,
                     channels_last: bool = True) -> Precision:
    """Resolve the run's `precision` setting on the device it trains on (see TrainConfig.precision).

    auto: CUDA → bf16 where the GPU supports it, else AMP fp16 with a grad scaler; CPU → bf16 autocast
    and channels-last for convolutional models when the CPU has bf16 hardware (cpu_bf16_hardware),
    float32 otherwise (MLPs and RNNs measured slower in bf16); MPS → float32. `channels_last` False
    keeps the contiguous format everywhere. An explicit choice the device cannot do is an EngineError."""
    if requested not in PRECISIONS:
        raise EngineError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    conv = is_convolutional(model)
    # On CUDA channels-last is what tensor-core convolutions want at any precision (as before).
    cuda_nhwc = device.type == "cuda" and channels_last and image_input
    cpu_nhwc = device.type == "cpu" and channels_last and image_input and conv
    nhwc_note = " + channels-last" if cuda_nhwc else ""
    if requested == "fp32":
        return Precision("fp32", f"fp32{nhwc_note}: set for this run", channels_last=cuda_nhwc)
    if requested == "fp16":
        if device.type != "cuda":
            raise EngineError(f"precision fp16 needs a CUDA device and this run trains on {device.type}: "
                              "choose auto, bf16 or fp32")
        return Precision("fp16", f"AMP fp16 with a grad scaler{nhwc_note}: set for this run",
                         _autocast(device, torch.float16), torch.amp.GradScaler("cuda"), cuda_nhwc)
    if requested == "bf16":
        if device.type == "mps":
            raise EngineError("precision bf16 is not supported on MPS here: choose auto or fp32")
        if device.type == "cuda":
            if not torch.cuda.is_bf16_supported():
                raise EngineError(f"this GPU ({torch.cuda.get_device_name(device)}) does not support bf16: "
                                  "choose auto (AMP fp16 with a grad scaler), fp16 or fp32")
            return Precision("bf16", f"bf16 autocast{nhwc_note}: set for this run",
                             _autocast(device, torch.bfloat16), None, cuda_nhwc)
        hardware = cpu_bf16_hardware()
        note = f"on a CPU with {hardware}" if hardware else "on a CPU without bf16 hardware (emulated: expect it slower)"
        return Precision("bf16", f"bf16 autocast{' + channels-last' if cpu_nhwc else ''}: set for this run, {note}",
                         _autocast(device, torch.bfloat16), None, cpu_nhwc)
    # auto
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", f"bf16 autocast{nhwc_note}: the GPU supports bf16",
                             _autocast(device, torch.bfloat16), None, cuda_nhwc)
        return Precision("fp16", f"AMP fp16 with a grad scaler{nhwc_note}: the GPU has no bf16",
                         _autocast(device, torch.float16), torch.amp.GradScaler("cuda"), cuda_nhwc)
    if device.type != "cpu":
        return Precision("fp32", f"fp32: auto uses mixed precision on CUDA and on CPUs with bf16 hardware, "
                                 f"not on {device.type}")
    if not conv:
        return Precision("fp32", "fp32: not a convolutional model (MLPs and RNNs measured slower in bf16 on CPU)")
    hardware = cpu_bf16_hardware()
    if hardware is None:
        return Precision("fp32", "fp32: this CPU has no bf16 hardware (AMX-bf16 or AVX512-bf16)")
    return Precision("bf16", f"bf16 autocast{' + channels-last' if cpu_nhwc else ''}: convolutional model "
                             f"on a CPU with {hardware}", _autocast(device, torch.bfloat16), None, cpu_nhwc)


class MemoryMeter:
    """The memory training itself needs, started just before the model and data are built.

    On CUDA: the allocator's peak since the start. Elsewhere: the process's peak RSS above its RSS
    at the start (Linux resets the high-water mark through /proc/self/clear_refs), so the Python
    and torch libraries (~350 MB) and the data set already loaded do not drown the difference
    between two models. None where the high-water mark cannot be reset.
    """

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.baseline: int | None = int(torch.cuda.memory_allocated(device))
        else:
            self.baseline = _rss_bytes("VmRSS") if _reset_rss_peak() else None

    def training_bytes(self) -> int | None:
        if self.baseline is None:
            return None
        if self.device.type == "cuda":
            return max(int(torch.cuda.max_memory_allocated(self.device)) - self.baseline, 0)
        peak = _rss_bytes("VmHWM")
        return max(peak - self.baseline, 0) if peak is not None else None

    def event(self) -> dict[str, int | str | None]:
        """The `memory` event: process (or CUDA) peak and the training share of it."""
        peak, kind = peak_memory(self.device)
        return {"peak_bytes": peak, "kind": kind, "training_bytes": self.training_bytes()}


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # 5: reset the peak resident set size (VmHWM) to the current size
        return True
    except OSError:
        return False


def _rss_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def peak_memory(device: torch.device) -> tuple[int | None, str]:
    """(peak bytes, "cuda" | "rss"): the allocator's peak on CUDA, the process's peak RSS elsewhere."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda"
    try:
        import resource
    except ImportError:  # Windows
        return None, "rss"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024), "rss"  # macOS bytes, Linux KiB
