"""Export a trained model: weights (safetensors), TorchScript and ONNX.

Exports include the spec's output activation (softmax/sigmoid), so a deployed model answers
probabilities like the Keras model it was drawn as; the safetensors file holds the raw
state dict of the training module. An export that fails never fails the run: the loop turns
the exception into a log warning. safetensors and onnx are imported here, lazily, only when
exporting (they are the formats' own libraries, not engine dependencies).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS, TORCHSCRIPT, ONNX = "model.safetensors", "model.torchscript.pt", "model.onnx"


class WithActivation(nn.Module):
    """The training module (logits) followed by its output activation."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.activation = getattr(model, "output_activation", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.activation == "softmax":
            return torch.softmax(out, dim=1)
        if self.activation == "sigmoid":
            return torch.sigmoid(out)
        return out


def deployable(model: nn.Module) -> WithActivation:
    """A CPU, float32, contiguous-format, eval-mode copy with the output activation applied."""
    copied = copy.deepcopy(model).cpu().float().to(memory_format=torch.contiguous_format).eval()
    return WithActivation(copied).eval()


def export_weights(model: nn.Module, directory: Path) -> Path:
    """model.safetensors: the state dict (tied tensors are stored once)."""
    from safetensors.torch import save_model

    path = Path(directory) / WEIGHTS
    save_model(copy.deepcopy(model).cpu(), str(path))
    return path


def export_torchscript(model: nn.Module, example: torch.Tensor, directory: Path) -> Path:
    """model.torchscript.pt, traced on an example batch (loads with torch.jit.load, no Python code)."""
    path = Path(directory) / TORCHSCRIPT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream, still the portable format
        traced = torch.jit.trace(deployable(model), example.cpu().float() if example.is_floating_point()
                                 else example.cpu(), check_trace=False)
        traced.save(str(path))
    return path


def export_onnx(model: nn.Module, example: torch.Tensor, directory: Path) -> Path:
    """model.onnx with a dynamic batch axis, checked with onnx.checker."""
    import onnx

    path = Path(directory) / ONNX
    net = deployable(model)
    example = example.cpu().float() if example.is_floating_point() else example.cpu()
    names = {"input_names": ["input"], "output_names": ["output"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # The TorchScript-based exporter: ~0.1 s for small models, against ~3 s for the
            # torch.export one, and it works offline. Fall back if a future torch drops it.
            torch.onnx.export(net, (example,), str(path), dynamo=False,
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, **names)
        except Exception:
            torch.onnx.export(net, (example,), str(path), dynamo=True, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), **names)
    onnx.checker.check_model(onnx.load(str(path)))
    return path


EXPORTERS = {"weights": export_weights, "torchscript": export_torchscript, "onnx": export_onnx}
# What may wait until the run is reported complete: tracing and the onnx import cost a second or more on
# the seed MLP. The weights are written at once (milliseconds): predictions and explanations read them.
DEFERRABLE = ("torchscript", "onnx")


def export_all(model: nn.Module, example: torch.Tensor, directory: Path,
               names: tuple[str, ...] = tuple(EXPORTERS)) -> list[tuple[str, Path | Exception]]:
    """Run the exporters named (every one by default); each result is (name, path) or (name, the exception)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, Path | Exception]] = []
    for name in names:
        exporter = EXPORTERS[name]
        try:
            path = exporter(model, directory) if name == "weights" else exporter(model, example, directory)
            results.append((name, path))
        except Exception as exc:  # an export must never fail the run
            results.append((name, exc))
    return results


class Exports:
    """A trained model's exports, run now or later: `run(sink, names)` writes them and emits an `artifact`
    event per file (a warning `log` event per failure). The model is not copied: whoever runs the rest
    later (app/worker.py, after reporting the run complete) must not train it meanwhile."""

    def __init__(self, model: nn.Module, example: torch.Tensor, directory: Path):
        self.model, self.example, self.directory = model, example, Path(directory)

    @staticmethod
    def immediate(defer: bool) -> tuple[str, ...]:
        """The exports to run at the end of training: all, or those that cannot wait."""
        return tuple(n for n in EXPORTERS if not (defer and n in DEFERRABLE))

    def run(self, sink: Any, names: tuple[str, ...] = DEFERRABLE) -> list[tuple[str, Path | Exception]]:
        results = export_all(self.model, self.example, self.directory, names)
        for name, result in results:
            if isinstance(result, Exception):
                sink.emit("log", {"level": "warning", "message": f"{name} export failed: {type(result).__name__}: "
                                  f"{result}"})
            else:
                sink.emit("artifact", {"name": name, "path": str(result), "bytes": result.stat().st_size})
        return results
