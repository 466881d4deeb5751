"""Compare runs side by side: headline numbers, per-epoch curves, the settings that differ, and
which runs are on the accuracy-versus-cost Pareto front (parameters, training time, memory).

Accuracy and loss on one data set say nothing about another: runs are grouped by data set, and the
best of a column and the Pareto fronts are taken within each group, never across groups.

The tutorial's closing exercise ("compare CNNs and RNNs on training time and memory") is one
call: `compare(db_session=..., run_ids=[cnn_run, rnn_run])`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.architectures import service as architectures_service
from app.architectures.models import Architecture
from app.core.deps import DB_INT_MAX
from app.core.errors import DomainError, InvalidInput, NotFound
from app.runs import figures as run_figures
from app.runs.models import Evaluation, Run

MAX_RUNS = 12
CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
# Cost axes of the Pareto fronts: (key in RunSummary, what it is called).
COSTS = {"total_params": "parameters", "train_loop_s": "training time", "training_memory_bytes": "training memory"}
# Headline columns and whether a larger value is better.
BETTER = {"test_accuracy": True, "macro_f1": True, "best_val_accuracy": True, "test_loss": False,
          "total_params": False, "flops": False, "train_loop_s": False, "train_time_s": False,
          "time_per_epoch_s": False, "samples_per_sec": True, "training_memory_bytes": False,
          "peak_memory_bytes": False}


@dataclass
class RunSummary:
    """One run's headline numbers (None where the run has not produced them)."""

    id: int
    name: str
    status: str
    dataset: str
    model: str  # preset name, saved architecture name, or "custom"
    kind: str  # "MLP" | "CNN" | "RNN" | "CNN + RNN" | "transfer": what the tutorial compares
    layers: str  # "Conv2D 32, relu → MaxPooling2D 2×2 → ..."
    epochs: int
    epochs_total: int
    total_params: int
    flops: int | None
    test_accuracy: float | None
    test_loss: float | None
    macro_f1: float | None
    best_val_accuracy: float | None
    # Speed figures as app/runs/figures.py defines them (the run page shows the same ones):
    train_loop_s: float | None  # training time: the sum of the kept epochs' epoch_time
    train_time_s: float | None  # the whole run (run.train_time_s): setup, epochs, test evaluation, exports
    time_per_epoch_s: float | None  # training time / epochs done
    samples_per_sec: float | None  # training samples / training time
    training_memory_bytes: int | None  # what training added (see engine.runtime.MemoryMeter)
    peak_memory_bytes: int | None  # the trainer process's peak (CPU: includes torch itself)
    config: dict[str, Any]
    curves: dict[str, list[float | None]] = field(default_factory=dict)  # "epoch" + CURVES


@dataclass
class Comparison:
    runs: list[RunSummary]
    groups: list[dict[str, Any]]  # [{"dataset": "digits", "runs": [ids]}], in the order the data sets first appear
    differences: list[dict[str, Any]]  # [{"setting": "optimizer.lr", "values": [per run]}]
    same: list[dict[str, Any]]  # [{"setting": "batch_size", "value": 32}]
    best: dict[str, list[int]]  # column → ids of the runs with the best value within their data set
    pareto: dict[str, list[int]]  # cost → ids on their data set's front: group by group, each cheapest first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_ids(values: Iterable[str]) -> list[int]:
    """'3,5' and repeated values alike → [3, 5], in order, without duplicates; InvalidInput otherwise."""
    ids: list[int] = []
    for value in values:
        for part in str(value).replace(" ", ",").split(","):
            if not part:
                continue
            if not part.lstrip("#").isdigit():
                raise InvalidInput(f"'{part}' is not a run id: give run numbers such as runs=3,5",
                                   [{"field": "runs", "message": "run ids are whole numbers"}])
            digits = part.lstrip("#").lstrip("0") or "0"
            if len(digits) > 19 or int(digits) > DB_INT_MAX:  # no run has an id the database cannot hold
                raise NotFound(f"there is no run {digits}", [{"field": "runs", "message": f"no run {digits}"}])
            run_id = int(digits)
            if run_id not in ids:
                ids.append(run_id)
            if len(ids) > MAX_RUNS:  # stop reading: a longer list is refused whatever it holds
                raise InvalidInput(f"more than {MAX_RUNS} runs chosen: compare at most {MAX_RUNS} at a time",
                                   [{"field": "runs", "message": f"at most {MAX_RUNS}"}])
    return ids


def compare(*, db_session: Session, run_ids: Sequence[int]) -> Comparison:
    """Everything the compare page and `GET /api/compare` show, for up to MAX_RUNS runs."""
    if not run_ids:
        raise InvalidInput("choose at least one run to compare", [{"field": "runs", "message": "no runs chosen"}])
    if len(run_ids) > MAX_RUNS:
        raise InvalidInput(f"{len(run_ids)} runs chosen: compare at most {MAX_RUNS} at a time",
                           [{"field": "runs", "message": f"at most {MAX_RUNS}"}])
    runs = {run.id: run for run in db_session.scalars(select(Run).where(Run.id.in_(list(run_ids))))}
    missing = [run_id for run_id in run_ids if run_id not in runs]
    if missing:
        listed = ", ".join(str(i) for i in missing)
        raise NotFound(f"run {listed} does not exist" if len(missing) == 1 else f"runs {listed} do not exist")
    ordered = [runs[run_id] for run_id in run_ids]
    names = _architecture_names(db_session, ordered)
    curves = _curves(db_session, run_ids)
    f1 = _macro_f1(db_session, run_ids)
    summaries = [_summary(run, names, curves.get(run.id, []), f1.get(run.id)) for run in ordered]
    differences, same = _settings(summaries)
    groups = by_dataset(summaries)
    best: dict[str, list[int]] = {}
    for key in BETTER:
        if ids := [run_id for runs in groups.values() for run_id in _best_of(runs, key)]:
            best[key] = ids
    pareto = {cost: [run_id for runs in groups.values() for run_id in pareto_front(runs, cost)] for cost in COSTS}
    return Comparison(runs=summaries, groups=[{"dataset": name, "runs": [r.id for r in runs]}
                                              for name, runs in groups.items()],
                      differences=differences, same=same, best=best, pareto=pareto)


def by_dataset(runs: Sequence[RunSummary]) -> dict[str, list[RunSummary]]:
    """The runs of each data set, data sets in the order they first appear."""
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:
        groups.setdefault(run.dataset, []).append(run)
    return groups


def pareto_front(runs: Sequence[RunSummary], cost: str) -> list[int]:
    """Ids of the runs no other run beats on both test accuracy and `cost`, cheapest first."""
    scored = sorted((getattr(r, cost), -r.test_accuracy, r.id) for r in runs
                    if r.test_accuracy is not None and getattr(r, cost) is not None)
    front, best = [], -math.inf
    for _, negative_accuracy, run_id in scored:
        if -negative_accuracy > best:
            front.append(run_id)
            best = -negative_accuracy
    return front


def model_kind(spec: dict[str, Any]) -> str:
    """What family a spec belongs to, from its layer types."""
    types = {str(layer.get("type")) for layer in spec.get("layers", []) if isinstance(layer, dict)}
    if "Pretrained" in types:
        return "transfer"
    conv = bool(types & {"Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D"})
    rnn = bool(types & {"SimpleRNN", "LSTM", "GRU"})
    return "CNN + RNN" if conv and rnn else "CNN" if conv else "RNN" if rnn else "MLP"


def _architecture_names(db_session: Session, runs: Sequence[Run]) -> dict[int, str]:
    ids = {run.architecture_id for run in runs if run.architecture_id}
    if not ids:
        return {}
    return dict(db_session.execute(select(Architecture.id, Architecture.name).where(Architecture.id.in_(ids))).all())


def _curves(db_session: Session, run_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Per run, its epoch rows in seq order (figures.kept_epochs keeps the last row of each epoch)."""
    return run_figures.epoch_payloads(db_session, run_ids)


def _macro_f1(db_session: Session, run_ids: Sequence[int]) -> dict[int, float]:
    rows = db_session.execute(
        select(Evaluation.run_id, Evaluation.payload).where(Evaluation.run_id.in_(list(run_ids)),
                                                            Evaluation.split == "test")
        .order_by(Evaluation.id)
    )
    return {run_id: float(payload["macro"]["f1"]) for run_id, payload in rows
            if isinstance(payload.get("macro"), dict) and payload["macro"].get("f1") is not None}


def _summary(run: Run, names: dict[int, str], epochs: list[dict[str, Any]], macro_f1: float | None) -> RunSummary:
    try:
        summary = architectures_service.validate(spec=run.spec)
        layers = " → ".join(layer.description for layer in summary.layers)
        flops = summary.flops
    except DomainError:  # a spec saved under older rules: show the run anyway
        layers, flops = " → ".join(str(layer.get("type")) for layer in run.spec.get("layers", [])), None
    ordered = run_figures.kept_epochs(epochs)
    figures = run_figures.from_epochs(epochs, run.train_time_s)
    curves: dict[str, list[float | None]] = {"epoch": [float(p["epoch"]) for p in ordered]}
    for key in CURVES:
        curves[key] = [_number(p.get(key)) for p in ordered]
    return RunSummary(
        id=run.id, name=run.name or f"run {run.id}", status=run.status, dataset=run.dataset,
        model=run.preset or names.get(run.architecture_id or 0) or "custom", kind=model_kind(run.spec), layers=layers,
        epochs=run.epoch or 0, epochs_total=run.epochs_total or 0, total_params=run.total_params or 0, flops=flops,
        test_accuracy=run.test_accuracy, test_loss=run.test_loss, macro_f1=macro_f1,
        best_val_accuracy=run.best_val_accuracy, train_loop_s=figures.training_time_s,
        train_time_s=figures.whole_run_s, time_per_epoch_s=figures.time_per_epoch_s,
        samples_per_sec=figures.samples_per_sec,
        training_memory_bytes=run.training_memory_bytes, peak_memory_bytes=run.peak_memory_bytes,
        config=dict(run.config or {}), curves=curves,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _settings(runs: Sequence[RunSummary]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The settings (data set, model, every config key) that differ between the runs, and those that do not."""
    flats = [{"dataset": r.dataset, "model": r.model, "layers": r.layers, **_flatten(r.config)} for r in runs]
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    differences, same = [], []
    for key in keys:
        values = [flat.get(key) for flat in flats]
        if all(value == values[0] for value in values):
            same.append({"setting": key, "value": values[0]})
        else:
            differences.append({"setting": key, "values": values})
    return differences, same


def _best_of(runs: Sequence[RunSummary], key: str) -> list[int]:
    """The runs holding the best value of headline column `key` (ties share it); none unless two or more
    runs have a value. Callers pass the runs of one data set."""
    values = [(getattr(r, key), r.id) for r in runs if getattr(r, key) is not None]
    if len(values) < 2:
        return []
    target = (max if BETTER[key] else min)(v for v, _ in values)
    return [run_id for value, run_id in values if value == target]
