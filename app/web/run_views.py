"""What the run pages show, computed from service answers: progress and ETA, the confusion-matrix
heatmap's cells, the architecture summary. Plain data for the templates; no HTTP, no SQL, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from app.architectures import service as architectures_service
from app.core.errors import DomainError
from app.runs.figures import Figures
from app.runs.models import COMPLETED, RUNNING, Run
from app.web.svg import DiagramBox, architecture_diagram

HEAT_STEPS = 5  # ticks on the colour-scale legend


@dataclass(frozen=True)
class Progress:
    epoch: int  # epochs finished
    epochs: int
    percent: float
    eta_s: float | None
    step: int | None = None  # steps done of the epoch under way (epoch + 1), as its trainer last said
    steps: int | None = None

    @property
    def eta(self) -> str:
        return duration(self.eta_s)

    @property
    def label(self) -> str:
        """'epoch 2 of 5' (finished), or 'epoch 3 of 5 · step 120/1,617' while an epoch is under way."""
        if self.step is not None and self.steps:
            return f"epoch {self.epoch + 1} of {self.epochs} · step {self.step:,}/{self.steps:,}"
        return f"epoch {self.epoch} of {self.epochs}"


def duration(seconds: float | None) -> str:
    """12 → '12 s', 754 → '12 min 34 s', 7300 → '2 h 1 min'; None → '–'."""
    if seconds is None:
        return "–"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def seconds(value: float | None) -> str:
    """Times as the compare page prints them: under 10 s one decimal ('8.4 s'), else as duration()."""
    if value is None or value >= 10:
        return duration(value)
    return f"{value:.1f} s"


@dataclass(frozen=True)
class FigureRow:
    key: str  # the compare API's name for the same figure
    label: str
    text: str
    title: str


def figure_rows(figures: Figures) -> list[FigureRow]:
    """The run's speed figures (app/runs/figures.py), formatted as the compare page formats them."""
    per_epoch = "–" if figures.time_per_epoch_s is None else f"{figures.time_per_epoch_s:.2f} s"
    speed = "–" if figures.samples_per_sec is None else f"{figures.samples_per_sec:,.0f}"
    epochs = f"{figures.epochs} epoch{'s' if figures.epochs != 1 else ''}"
    return [
        FigureRow("train_loop_s", "Training time", seconds(figures.training_time_s),
                  f"the training loop of {epochs}; whole run (setup, validation, checkpoints, test, exports): "
                  f"{seconds(figures.whole_run_s)}"),
        FigureRow("time_per_epoch_s", "Time / epoch", per_epoch, f"training time / {epochs}"),
        FigureRow("samples_per_sec", "Samples / s", speed,
                  "training samples / training time"
                  + (f" ({figures.training_samples:,} samples)" if figures.training_samples is not None else "")),
    ]


def progress(run: Run, step: dict[str, Any] | None = None, now: datetime | None = None) -> Progress:
    """Epochs done of all, and an ETA. `step` is the run's latest step event (runs_service.latest_step):
    while it belongs to the epoch under way, the bar moves within the epoch and the ETA comes from that
    epoch's pace, so both move from the first seconds of a long first epoch. Otherwise the ETA is the
    mean time per finished epoch so far."""
    epochs = max(run.epochs_total or 0, 1)
    epoch = min(run.epoch or 0, epochs)
    percent = 100.0 if run.status == COMPLETED else 100.0 * epoch / epochs
    fraction = _epoch_fraction(step) if run.status == RUNNING and epoch < epochs and step else None
    if fraction is not None and step.get("epoch") == epoch + 1:
        elapsed = step.get("epoch_elapsed")
        eta = elapsed / fraction * (epochs - epoch - fraction) if elapsed and fraction > 0 else None
        return Progress(epoch=epoch, epochs=epochs, percent=100.0 * (epoch + fraction) / epochs, eta_s=eta,
                        step=step.get("epoch_step"), steps=step.get("epoch_steps"))
    eta = None
    if run.status == RUNNING and run.started_at is not None and epoch > 0:
        now = now or datetime.now(timezone.utc).replace(tzinfo=None)
        started = run.started_at.replace(tzinfo=None)
        elapsed = (now - started).total_seconds()
        eta = elapsed / epoch * (epochs - epoch)
    return Progress(epoch=epoch, epochs=epochs, percent=percent, eta_s=eta)


def _epoch_fraction(step: dict[str, Any]) -> float | None:
    """How far into its epoch a step event is (0..1), or None when it does not say."""
    done, total = step.get("epoch_step"), step.get("epoch_steps")
    fraction = step.get("epoch_progress", done / total if done is not None and total else None)
    return None if fraction is None else min(max(float(fraction), 0.0), 1.0)


@dataclass(frozen=True)
class Cell:
    true: int
    pred: int
    count: int
    share: float  # of the row (the true class's support)
    heat: float  # 0..1, what the colour shows (count / max count, or share)

    @property
    def wrong(self) -> bool:
        return self.true != self.pred


@dataclass(frozen=True)
class ConfusionView:
    class_names: list[str]
    rows: list[list[Cell]]
    normalized: bool
    max_count: int
    legend: list[str]


def confusion_view(confusion_matrix: list[list[int]], class_names: list[str], *, normalized: bool) -> ConfusionView:
    """Cells with counts and row shares; colour by share (normalized) or by count."""
    max_count = max((max(row) for row in confusion_matrix if row), default=0)
    rows = []
    for t, row in enumerate(confusion_matrix):
        support = sum(row)
        cells = []
        for p, count in enumerate(row):
            share = count / support if support else 0.0
            heat = share if normalized else (count / max_count if max_count else 0.0)
            cells.append(Cell(true=t, pred=p, count=count, share=share, heat=heat))
        rows.append(cells)
    names = list(class_names) or [str(i) for i in range(len(confusion_matrix))]
    top = 1.0 if normalized else max_count
    legend = [f"{top * i / (HEAT_STEPS - 1):.0%}" if normalized else f"{round(top * i / (HEAT_STEPS - 1)):,}"
              for i in range(HEAT_STEPS)]
    return ConfusionView(class_names=names, rows=rows, normalized=normalized, max_count=max_count, legend=legend)


GALLERY_PAGE = 20  # misclassified images per gallery page


@dataclass(frozen=True)
class GalleryView:
    """One page of a confusion-matrix cell's test images (the sample indices the trainer kept)."""

    true_class: int
    pred_class: int
    true_name: str
    pred_name: str
    count: int  # test samples in the cell
    kept: int  # of which the evaluation kept the indices (the engine keeps up to 200 per cell)
    page: int
    pages: int
    indices: list[int]  # this page's
    first: int  # 1-based position of this page's first image among the kept ones
    points: bool  # a 2-D points data set: each picture is the test split with the sample ringed

    @property
    def last(self) -> int:
        return self.first + len(self.indices) - 1


def gallery_view(evaluation: dict[str, Any], true: int, pred: int, page: int, *, kind: str = "image") -> GalleryView:
    """Page `page` (clamped to the pages there are) of the images of cell (true, pred)."""
    names = evaluation.get("class_names") or []
    matrix = evaluation.get("confusion_matrix") or []
    kept = list((evaluation.get("misclassified") or {}).get(f"{true},{pred}", []))
    count = matrix[true][pred] if true < len(matrix) and pred < len(matrix[true]) else 0
    pages = max(1, -(-len(kept) // GALLERY_PAGE))
    page = min(max(page, 1), pages)
    start = (page - 1) * GALLERY_PAGE
    return GalleryView(
        true_class=true, pred_class=pred, count=count, kept=len(kept), page=page, pages=pages,
        true_name=names[true] if true < len(names) else str(true),
        pred_name=names[pred] if pred < len(names) else str(pred),
        indices=kept[start:start + GALLERY_PAGE], first=start + 1, points=kind == "points")


def parse_cell(value: str, classes: int) -> tuple[int, int] | None:
    """'3,4' → (3, 4) when both are class indices below `classes`; anything else → None."""
    true, _, pred = value.partition(",")
    if not (true.isdigit() and pred.isdigit()) or len(true) > 6 or len(pred) > 6:
        return None
    cell = int(true), int(pred)
    return cell if max(cell) < classes else None


@dataclass(frozen=True)
class ArchitectureView:
    summary: Any | None
    diagram: Any | None
    error: str | None


def architecture_view(spec: dict[str, Any]) -> ArchitectureView:
    """The per-layer table and the diagram for a run's spec snapshot (validated again, never trained)."""
    try:
        summary = architectures_service.validate(spec=spec)
    except DomainError as exc:
        return ArchitectureView(summary=None, diagram=None, error=exc.message)
    boxes = [DiagramBox(label=layer.description, layer_type=layer.type, shape=layer.output_shape, params=layer.params)
             for layer in summary.layers]
    return ArchitectureView(summary=summary, diagram=architecture_diagram(summary.input_shape, boxes), error=None)
