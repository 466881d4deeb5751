""""Reproduce the tutorial": its four models queued in one call, and its "CNN vs RNN" table filled
from the measured runs, the tutorial's own figures beside ours.

The runs are grouped as a sweep of kind "tutorial" (one trial per model, objective test accuracy), so
the sweep page follows them live, cancel stops them all, and the comparison opens when they finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.architectures import presets
from app.core.config import get_settings
from app.datasets import registry as datasets_registry
from app.runs import service as runs_service
from app.runs.models import Sweep
from app.runs.schemas import RunCreate, TrainConfigIn
from app.sweeps.schemas import TutorialRequest


@dataclass(frozen=True)
class TutorialModel:
    preset: str
    title: str
    epochs: int
    # What the tutorial reports for it (test accuracy after `epochs`), as its text gives it.
    reported_accuracy: float


MODELS = (
    TutorialModel("mnist-mlp", "MLP (Flatten → Dense 128 ReLU → Dense 10)", 5, 0.974),
    TutorialModel("mnist-mlp-dropout", "MLP with Dropout 0.2", 5, 0.977),
    TutorialModel("cifar10-cnn", "CNN (3 × Conv2D + pooling)", 10, 0.70),
    TutorialModel("mnist-lstm", "LSTM over the 28 rows of each digit", 5, 0.98),
)
REPORTED_SOURCE = ("the figures the Keras/TensorFlow tutorials print for these models (MLP ≈97.4% after 5 "
                   "epochs, with dropout ≈97.7%, the CIFAR-10 CNN ≈70% after 10, the row-by-row LSTM ≈98%)")
# The tutorial's "CNN vs RNN" table: what it says, row by row (our measured figures go beside it).
CNN_VS_RNN = (
    ("Best for", "images and other grid-shaped data (spatial patterns)",
     "sequences: text, time series, anything read in order"),
    ("Training time", "fast: convolutions over the whole image run in parallel",
     "slower: each time step waits for the previous one"),
    ("Complexity", "fewer parameters through shared filters; deeper stacks for harder images",
     "gates and state per step; gradients flow back through time"),
    ("Memory use", "feature maps of every layer per image", "the hidden state of every time step, kept for backpropagation"),
)
SUBSTITUTES = ("fashion-mnist", "mnist")


def _available(name: str) -> bool:
    try:
        return datasets_registry.get_dataset_info(name, get_settings().data_dir).available
    except Exception:
        return False


def plan() -> tuple[list[tuple[TutorialModel, str]], str | None]:
    """(model, data set) for each tutorial model, and a note when CIFAR-10 is not here (the CNN then
    trains on the first substitute that is, fitted to it)."""
    note = None
    cnn_dataset = "cifar10"
    if not _available("cifar10"):
        cnn_dataset = next((name for name in SUBSTITUTES if _available(name)), SUBSTITUTES[-1])
        note = (f"CIFAR-10 is not on this server, so the CNN trains on {cnn_dataset} instead (its input and "
                "output layers fitted to it); download CIFAR-10 from the Data sets page to train it as the "
                "tutorial does.")
    chosen = []
    for model in MODELS:
        preset = presets.get_preset(model.preset)
        chosen.append((model, cnn_dataset if model.preset == "cifar10-cnn" else preset.dataset))
    return chosen, note


def reproduce(*, db_session: Session, body: TutorialRequest) -> Sweep:
    """Queue the tutorial's models (one run each) as a sweep of kind "tutorial"."""
    chosen, note = plan()
    sweep = Sweep(name="The tutorial, reproduced", kind="tutorial", dataset=chosen[0][1], sampler="fixed",
                  pruner=None, metric="test_accuracy", direction="maximize", trials_total=len(chosen),
                  parallelism=None, status="running", note=note,
                  request={"models": [{"preset": m.preset, "dataset": d} for m, d in chosen],
                           "epochs": body.epochs, "max_train_samples": body.max_train_samples, "space": {}})
    db_session.add(sweep)
    db_session.flush()
    for number, (model, dataset) in enumerate(chosen):
        config: dict[str, Any] = {"epochs": body.epochs or model.epochs}
        if body.max_train_samples:
            config["max_train_samples"] = body.max_train_samples
        run_in = RunCreate(name=f"tutorial: {model.title}" + (f" on {dataset}" if dataset != presets.get_preset(
            model.preset).dataset else ""), preset=model.preset, dataset=dataset,
            config=TrainConfigIn.model_validate(config))
        runs_service.queue(db_session=db_session, run_in=run_in, fields={
            "sweep_id": sweep.id, "sweep_trial": number, "sweep_params": {"model": model.preset, "dataset": dataset}})
    db_session.commit()
    return sweep


def table(comparison: Any) -> dict[str, Any] | None:
    """The tutorial's tables from a comparison of its runs: accuracy (measured vs reported) per model, and
    "CNN vs RNN" with the measured training time, parameters and memory of the CNN and the LSTM runs."""
    by_preset = {run.model: run for run in comparison.runs}
    if not any(model.preset in by_preset for model in MODELS):
        return None
    accuracy = []
    for model in MODELS:
        run = by_preset.get(model.preset)
        accuracy.append({"title": model.title, "preset": model.preset, "reported": model.reported_accuracy,
                         "tutorial_epochs": model.epochs, "run": run})
    cnn, rnn = by_preset.get("cifar10-cnn"), by_preset.get("mnist-lstm")
    return {"accuracy": accuracy, "cnn": cnn, "rnn": rnn, "rows": CNN_VS_RNN, "source": REPORTED_SOURCE}
