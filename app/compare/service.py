"""Compare runs side by side: headline numbers, curves by epoch and by training time, per-class F1
and recall, the settings that differ, and which runs are on the accuracy-versus-cost Pareto front
(parameters, training time, memory); the headline table also as CSV.

Accuracy and loss on one data set say nothing about another: runs are grouped by data set, and the
best of a column and the Pareto fronts are taken within each group, never across groups.

The tutorial's closing exercise ("compare CNNs and RNNs on training time and memory") is one
call: `compare(db_session=..., run_ids=[cnn_run, rnn_run])`.
"""

from __future__ import annotations

import csv
import io
import json
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
from app.runs import precision as run_precision
from app.runs.models import Evaluation, Run, RunEvent

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
    # What the trainer chose for `config.precision` ("fp32", "bf16", "fp16"; None before it started)
    precision: str | None = None
    # "epoch", "time_s" (training time at the end of each epoch, figures.training_time_so_far) + CURVES
    curves: dict[str, list[float | None]] = field(default_factory=dict)


@dataclass
class Comparison:
    runs: list[RunSummary]
    groups: list[dict[str, Any]]  # [{"dataset": "digits", "runs": [ids]}], in the order the data sets first appear
    differences: list[dict[str, Any]]  # [{"setting": "optimizer.lr", "values": [per run]}]
    same: list[dict[str, Any]]  # [{"setting": "batch_size", "value": 32}]
    best: dict[str, list[int]]  # column → ids of the runs with the best value within their data set
    pareto: dict[str, list[int]]  # cost → ids on their data set's front: group by group, each cheapest first
    # Per data set, the test set's per-class F1 and recall (= per-class accuracy) of its runs that have them:
    # [{"dataset", "classes": [names], "runs": [ids], "f1": [[per run] per class], "recall": [[...]],
    #   "best_f1": [[ids] per class], "best_recall": [[ids] per class]}]
    per_class: list[dict[str, Any]] = field(default_factory=list)

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
    evaluations = _test_evaluations(db_session, run_ids)
    precisions = _precisions(db_session, run_ids)
    summaries = [_summary(run, names, curves.get(run.id, []), _macro_f1(evaluations.get(run.id)),
                          precisions.get(run.id)) for run in ordered]
    differences, same = _settings(summaries)
    groups = by_dataset(summaries)
    best: dict[str, list[int]] = {}
    for key in BETTER:
        if ids := [run_id for runs in groups.values() for run_id in _best_of(runs, key)]:
            best[key] = ids
    pareto = {cost: [run_id for runs in groups.values() for run_id in pareto_front(runs, cost)] for cost in COSTS}
    return Comparison(runs=summaries, groups=[{"dataset": name, "runs": [r.id for r in runs]}
                                              for name, runs in groups.items()],
                      differences=differences, same=same, best=best, pareto=pareto,
                      per_class=[table for name, runs in groups.items()
                                 if (table := _per_class_table(name, runs, evaluations))])


PRECISION_USED = "precision used"

# The CSV's columns before the settings that differ: who the run is, then the headline numbers.
CSV_RUN_COLUMNS = ("id", "name", "dataset", "model", "kind", "status")
CSV_TAIL_COLUMNS = ("epochs", "epochs_total")
# A spreadsheet runs a text cell that starts with one of these as a formula: such text (a run name, a
# setting) is written with a leading apostrophe, which shows it as the text it is.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def table_csv(comparison: Comparison) -> str:
    """The headline table as CSV: a row per run with its id, name, data set, model, kind and status, the
    headline columns (BETTER, raw numbers: seconds, bytes, fractions), epochs done and asked for, then a
    column per setting that differs between the runs (data set and model are columns already)."""
    fixed = (*CSV_RUN_COLUMNS, *BETTER, *CSV_TAIL_COLUMNS)
    settings = [row for row in comparison.differences if row["setting"] not in ("dataset", "model")]
    # A setting named like a fixed column (the config's "epochs" asked for) gets a prefix to stay apart.
    header = [*fixed, *(f"setting.{row['setting']}" if row["setting"] in fixed else row["setting"]
                        for row in settings)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for index, run in enumerate(comparison.runs):
        writer.writerow([_csv_cell(getattr(run, key)) for key in fixed]
                        + [_csv_cell(row["values"][index]) for row in settings])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = json.dumps(value)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


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


def _test_evaluations(db_session: Session, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per run, the payload of its latest test evaluation (the one its run page shows)."""
    rows = db_session.execute(
        select(Evaluation.run_id, Evaluation.payload).where(Evaluation.run_id.in_(list(run_ids)),
                                                            Evaluation.split == "test")
        .order_by(Evaluation.id)
    )
    return {run_id: payload for run_id, payload in rows if isinstance(payload, dict)}


def _precisions(db_session: Session, run_ids: Sequence[int]) -> dict[int, str]:
    """Per run, the precision it trained in: its latest `precision` event (a resumed run chooses again)."""
    rows = db_session.execute(
        select(RunEvent.run_id, RunEvent.payload).where(RunEvent.run_id.in_(list(run_ids)),
                                                        RunEvent.kind == run_precision.KIND)
        .order_by(RunEvent.seq)
    )
    return {run_id: payload["precision"] for run_id, payload in rows
            if isinstance(payload, dict) and payload.get("precision") in run_precision.NAMES}


def _macro_f1(payload: dict[str, Any] | None) -> float | None:
    macro = (payload or {}).get("macro")
    return _number(macro.get("f1")) if isinstance(macro, dict) else None


def _class_metrics(payload: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Class name → its row of a test evaluation's per-class metrics (app/engine/metrics.summarize):
    precision, recall, f1, support. Rows without a name take it from class_names, as the run page does."""
    rows = (payload or {}).get("per_class")
    if not isinstance(rows, list):
        return {}
    names = (payload or {}).get("class_names") or []
    metrics = {}
    for index, row in enumerate(rows):
        if isinstance(row, dict):
            name = row.get("class", names[index] if index < len(names) else index)
            metrics[str(name)] = row
    return metrics


def _per_class_table(dataset: str, runs: Sequence[RunSummary],
                     evaluations: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """One data set's per-class F1 and recall, a row per class and a column per run that has them; None
    when none has. Classes in the order the runs' evaluations name them (runs of one data set agree)."""
    metrics = {run.id: rows for run in runs if (rows := _class_metrics(evaluations.get(run.id)))}
    if not metrics:
        return None
    ids = list(metrics)
    classes = list(dict.fromkeys(name for rows in metrics.values() for name in rows))
    table: dict[str, Any] = {"dataset": dataset, "classes": classes, "runs": ids}
    for key in ("f1", "recall"):
        values = [[_number(metrics[run_id].get(name, {}).get(key)) for run_id in ids] for name in classes]
        table[key] = values
        table[f"best_{key}"] = [_best_in_row(ids, row) for row in values]
    return table


def _best_in_row(ids: Sequence[int], values: Sequence[float | None]) -> list[int]:
    """The ids holding the row's highest value (ties share it); none unless two or more runs have one."""
    present = [value for value in values if value is not None]
    if len(present) < 2:
        return []
    return [run_id for run_id, value in zip(ids, values, strict=True) if value == max(present)]


def _summary(run: Run, names: dict[int, str], epochs: list[dict[str, Any]], macro_f1: float | None,
             precision: str | None = None) -> RunSummary:
    try:
        summary = architectures_service.validate(spec=run.spec)
        layers = " → ".join(layer.description for layer in summary.layers)
        flops = summary.flops
    except DomainError:  # a spec saved under older rules: show the run anyway
        layers, flops = " → ".join(str(layer.get("type")) for layer in run.spec.get("layers", [])), None
    ordered = run_figures.kept_epochs(epochs)
    figures = run_figures.from_epochs(epochs, run.train_time_s)
    curves: dict[str, list[float | None]] = {"epoch": [float(p["epoch"]) for p in ordered],
                                             "time_s": run_figures.training_time_so_far(epochs)}
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
        config=dict(run.config or {}), precision=precision, curves=curves,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        else None


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
    # Beside the `precision` asked for ("auto"), what each run trained in: the setting that mattered.
    flats = [{"dataset": r.dataset, "model": r.model, "layers": r.layers, **_flatten(r.config),
              **({PRECISION_USED: r.precision} if r.precision else {})} for r in runs]
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
