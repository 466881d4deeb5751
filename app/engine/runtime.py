"""Device choice, seeding, mixed precision and memory readings: the hardware-facing helpers."""

from __future__ import annotations

import contextlib
import functools
import random
import sys
from collections.abc import Callable

import numpy as np
import torch

from app.engine.types import EngineError

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


def mixed_precision(device: torch.device, enabled: bool) -> tuple[Autocast, torch.amp.GradScaler | None, str]:
    """(autocast factory, grad scaler or None, precision name). Mixed precision is CUDA-only."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext, None, "float32"
    if torch.cuda.is_bf16_supported():
        # bf16 has float32's range: no loss scaling needed.
        return functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16), None, "bfloat16"
    return (functools.partial(torch.autocast, "cuda", dtype=torch.float16), torch.amp.GradScaler("cuda"),
            "float16")


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
