"""Training recipes for the tutorial's MNIST perceptrons: the tutorial's own (Adam 1e-3, batch 32, 5 epochs)
and a fast one (8x the batch, the learning rate scaled with it after a short linear warm-up, a cosine
decay per step, 3 epochs instead of 5), each with the wall time it took to reach the tutorial's 0.974 test accuracy here.

The figures are data, not prose: bench/time_to_accuracy.py trains both recipes (the same settings as
below, through the engine) and writes `recipe_figures.json` next to this module with the date, the
machine and the thread count; the launch form shows what that file says and nothing else. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIGURES_PATH = Path(__file__).with_name("recipe_figures.json")
TARGET_ACCURACY = 0.974  # the tutorial's MNIST test accuracy


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    summary: str
    # The run `config` it stands for (as POST /api/runs takes it); val_split 0 as the tutorial's
    # `model.fit(x_train, y_train, epochs=5)`, which trains on all 60,000 images.
    config: dict[str, Any]
    presets: tuple[str, ...] = ("mnist-mlp", "mnist-mlp-dropout")
    extra: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "tutorial": Recipe(
        name="tutorial", title="Tutorial recipe",
        summary="Adam, learning rate 0.001, batch 32, 5 epochs, constant rate; all 60,000 images, no "
                "validation split (as the tutorial)",
        config={"epochs": 5, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.001}, "schedule": None,
                "val_split": 0.0}),
    "fast": Recipe(
        name="fast", title="Fast recipe",
        summary="batch 256, Adam at 0.008 (the tutorial's rate × 256/32), a 100-step linear warm-up, then a "
                "cosine decay to 0, 3 epochs; no validation split",
        config={"epochs": 3, "batch_size": 256, "optimizer": {"name": "adam", "lr": 0.008},
                "schedule": {"name": "warmup_cosine", "warmup_steps": 100}, "val_split": 0.0}),
}

# The form fields a recipe sets: every one is written (a blank clears what another recipe set).
RECIPE_FIELDS = ("config.epochs", "config.batch_size", "config.optimizer.name", "config.optimizer.lr",
                 "config.schedule.name", "config.schedule.warmup_steps", "config.schedule.t_max",
                 "config.schedule.eta_min", "config.val_split")


def get(name: str) -> Recipe | None:
    return RECIPES.get(name)


def form_fields(recipe: Recipe) -> dict[str, str]:
    """The launch form's field values for the recipe (blank: the schema's 'not given')."""
    cfg = recipe.config
    schedule = cfg.get("schedule") or {}
    values = {"config.epochs": cfg["epochs"], "config.batch_size": cfg["batch_size"],
              "config.optimizer.name": cfg["optimizer"]["name"], "config.optimizer.lr": cfg["optimizer"]["lr"],
              "config.schedule.name": schedule.get("name", ""),
              "config.schedule.warmup_steps": schedule.get("warmup_steps", ""),
              "config.schedule.t_max": schedule.get("t_max", ""), "config.schedule.eta_min": schedule.get("eta_min", ""),
              "config.val_split": cfg["val_split"]}
    return {key: _text(value) for key, value in values.items()}


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def figures(path: Path | None = None) -> dict[str, Any] | None:
    """The stored measurement ({"measured", "machine", "threads", "load", "target", "recipes": {name:
    {"seconds_to_target", "reached", "seeds", "final_accuracy", "total_seconds"}}}), or None when there is
    none (or it cannot be read: the form then says the recipes are unmeasured)."""
    try:
        data = json.loads((path or FIGURES_PATH).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("recipes"), dict) else None


def view(path: Path | None = None) -> list[dict[str, Any]]:
    """What the launch form shows per recipe: its title, summary and the measured time to the target
    (None when unmeasured), with where and when it was measured."""
    stored = figures(path)
    rows = []
    for recipe in RECIPES.values():
        measured = (stored or {}).get("recipes", {}).get(recipe.name)
        rows.append({"name": recipe.name, "title": recipe.title, "summary": recipe.summary,
                     "presets": recipe.presets, "measured": measured,
                     "target": (stored or {}).get("target", TARGET_ACCURACY),
                     "date": (stored or {}).get("measured"), "machine": (stored or {}).get("machine_short"),
                     "threads": (stored or {}).get("threads")})
    return rows
