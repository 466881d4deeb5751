"""Request and answer bodies of sweeps (the API and the sweep form share them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.models_base import DB_INT_MAX, UtcDatetime
from app.sweeps.space import MAX_CHOICES, MAX_KEYS, Distribution, Domain

MAX_TRIALS = 500
METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")
# The per-epoch figure a pruner judges for each objective (test figures exist only at the end).
PRUNE_ON = {"val_accuracy": "val_accuracy", "val_loss": "val_loss", "test_accuracy": "val_accuracy",
            "test_loss": "val_loss"}


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: Literal["val_accuracy", "val_loss", "test_accuracy", "test_loss"] = "val_accuracy"
    direction: Literal["maximize", "minimize"] | None = Field(default=None, description=(
        "default: maximize an accuracy, minimize a loss"))

    @model_validator(mode="after")
    def _direction(self) -> Objective:
        if self.direction is None:
            self.direction = "minimize" if self.metric.endswith("loss") else "maximize"
        return self


class SweepCreate(BaseModel):
    """A search: the base run (model, data set, config, as POST /api/runs takes them), the space over
    it, how to sample it, how many trials, and what to optimise."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    architecture_id: int | None = Field(default=None, ge=1, le=DB_INT_MAX)
    spec: dict[str, Any] | None = None
    preset: str | None = Field(default=None, max_length=64)
    dataset: str | None = Field(default=None, max_length=64)
    config: dict[str, Any] = Field(default_factory=dict, description="the base run settings (as a run's config)")
    space: dict[str, Domain] = Field(description=(
        "paths into the run (config.optimizer.lr, spec.layers[1].units, spec.dense_units…) → a list of "
        "choices or a distribution {type: uniform|log_uniform|int_uniform|int_log_uniform, low, high}"))
    sampler: Literal["grid", "random", "tpe"] = "tpe"
    trials: int | None = Field(default=None, ge=1, le=MAX_TRIALS, description=(
        "the trial budget (grid: at most, and by default, every combination)"))
    parallelism: int | None = Field(default=None, ge=1, le=64, description=(
        "trials running at once (tpe); default and ceiling: the executor's slots"))
    pruner: Literal["none", "median", "asha"] = "none"
    objective: Objective = Field(default_factory=Objective)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @field_validator("space")
    @classmethod
    def _space_size(cls, space: dict[str, Domain]) -> dict[str, Domain]:
        if not space:
            raise ValueError("the space is empty: name at least one setting to vary (e.g. config.optimizer.lr)")
        if len(space) > MAX_KEYS:
            raise ValueError(f"{len(space)} keys: a space varies at most {MAX_KEYS} settings")
        for key, domain in space.items():
            if len(key) > 100:
                raise ValueError("a space key is at most 100 characters")
            if isinstance(domain, list):
                if not 1 <= len(domain) <= MAX_CHOICES:
                    raise ValueError(f"{key}: give 1 to {MAX_CHOICES} choices")
                if len({repr(v) for v in domain}) != len(domain):
                    raise ValueError(f"{key}: the choices repeat a value")
                for value in domain:
                    if isinstance(value, str) and len(value) > 64:
                        raise ValueError(f"{key}: a choice is at most 64 characters")
                    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
                        raise ValueError(f"{key}: choices must be finite numbers")
        return space

    @model_validator(mode="after")
    def _consistent(self) -> SweepCreate:
        given = [k for k in ("architecture_id", "spec", "preset") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of architecture_id, spec or preset, not {' and '.join(given)}")
        if self.sampler == "grid":
            ranges = [key for key, domain in self.space.items() if isinstance(domain, Distribution)]
            if ranges:
                raise ValueError(f"a grid sampler takes lists only: give {', '.join(ranges)} as a list of values")
        return self


class TrialPublic(BaseModel):
    number: int
    run_id: int
    name: str
    params: dict[str, Any]
    value: float | None
    status: str
    epoch: int
    pruned_epoch: int | None
    intermediate: dict[int, float]


class SweepPublic(BaseModel):
    id: int
    name: str
    kind: str
    status: str
    dataset: str
    sampler: str
    pruner: str | None
    objective: dict[str, str]
    space: dict[str, Any]
    trials_total: int
    parallelism: int | None
    note: str | None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    trials: list[TrialPublic]
    best: TrialPublic | None
    importances: dict[str, float] | None
    counts: dict[str, int]


class BestRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int | None = Field(default=None, ge=1, description="default: twice the best trial's epochs")
    name: str | None = Field(default=None, max_length=200)


class TutorialRequest(BaseModel):
    """Reproduce the tutorial's models; small figures for a quick look (tests use them)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int | None = Field(default=None, ge=1, description="default: each model's tutorial epochs")
    max_train_samples: int | None = Field(default=None, ge=1)
