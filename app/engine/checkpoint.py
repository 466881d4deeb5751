"""Per-epoch checkpoints that make a resumed run identical to an uninterrupted one.

A checkpoint holds the model, optimizer, scheduler, early-stopping state, every RNG the run
touches (torch CPU/CUDA, the batch-order generator, numpy, python `random`) and the metric
history. Only tensors and plain Python values are stored, so loading uses
`torch.load(weights_only=True)`: a checkpoint cannot run code when it is opened.
"""

from __future__ import annotations

import os
import queue
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.engine.types import EngineError


def checkpoint_path(directory: Path, epoch: int) -> Path:
    """epoch-0001.pt, epoch-0002.pt, ... in `directory`."""
    return Path(directory) / f"epoch-{epoch:04d}.pt"


def prune(directory: Path, *, keep_last: int, keep: set[int] | None = None) -> list[int]:
    """Delete epoch checkpoints except the last `keep_last` and the epochs in `keep`; returns those deleted."""
    epochs = sorted(int(p.stem.split("-")[1]) for p in Path(directory).glob("epoch-*.pt")
                    if p.stem.split("-")[1].isdigit())
    kept = set(epochs[-keep_last:]) | (keep or set())
    deleted = [epoch for epoch in epochs if epoch not in kept]
    for epoch in deleted:
        checkpoint_path(directory, epoch).unlink(missing_ok=True)
    return deleted


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG state a run depends on, as tensors and ints."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "batches": generator.get_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]),
                   "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["batches"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def cpu_state_dict(module_or_optimizer: Any) -> dict[str, Any]:
    """A state dict with every tensor copied to the CPU (checkpoints load on any device)."""
    def to_cpu(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().clone()
        if isinstance(value, dict):
            return {k: to_cpu(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(to_cpu(v) for v in value)
        return value

    return to_cpu(module_or_optimizer.state_dict())


def save(path: Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (a crash mid-write leaves the previous epoch intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


class Writer:
    """Saves checkpoints on one background thread, so an epoch's end does not wait on the disk.

    `submit` takes a payload whose tensors are already CPU copies (`cpu_state_dict`): training may change
    the live weights meanwhile. The thread saves each payload atomically, in order, prunes old epochs when
    asked, then calls `saved(path, pruned)` (the loop emits the `checkpoint` event there, so the event never
    names a file that is not on disk yet). At most `MAX_PENDING` payloads wait: a disk slower than the
    epochs slows training down instead of holding every epoch's copy in memory. `close` waits for every
    write, so the last checkpoint is on disk before the run reports its end, and raises the first error.
    """

    MAX_PENDING = 2

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=self.MAX_PENDING)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def submit(self, path: Path, payload: dict[str, Any], saved: Callable[[Path, list[int]], None], *,
               keep_last: int = 0, keep: set[int] | None = None) -> None:
        """Queue one checkpoint (a failed earlier write is raised here, on the training thread)."""
        self._raise()
        self._queue.put((Path(path), payload, saved, keep_last, set(keep or ())))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            path, payload, saved, keep_last, keep = item
            try:
                if self._error is None:
                    save(path, payload)
                    pruned = prune(path.parent, keep_last=keep_last, keep=keep) if keep_last else []
                    saved(path, pruned)
            except BaseException as exc:  # noqa: BLE001 (raised on the training thread)
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for every queued write and stop the thread; raise the first write error (unless told not to)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if raise_errors:
            self._raise()


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint with weights_only=True; unreadable files are EngineErrors."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise EngineError(f"checkpoint {path} does not exist") from exc
    except Exception as exc:  # pickle errors, truncated files, foreign objects
        raise EngineError(f"cannot read checkpoint {path}: {exc}") from exc


def load_weights(model: nn.Module, state: dict[str, Any], *, what: str = "checkpoint") -> None:
    """Load model weights, explaining a mismatch in words instead of a key dump."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise EngineError(f"the {what}'s weights do not fit this architecture ({' '.join(first)}): "
                          "fork only into a model with the same layers") from exc


def load_optimizer_for_fork(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> bool:
    """Carry optimizer moments into a fork but keep the fork's own hyperparameters; False if incompatible."""
    fresh = optimizer.state_dict()
    if len(saved.get("param_groups", [])) != len(fresh["param_groups"]):
        return False
    groups = [{**new, "params": old["params"]} for old, new in zip(saved["param_groups"], fresh["param_groups"],
                                                                     strict=True)]
    try:
        optimizer.load_state_dict({"state": saved["state"], "param_groups": groups})
    except (ValueError, KeyError, RuntimeError):
        optimizer.load_state_dict(fresh)
        return False
    return True
