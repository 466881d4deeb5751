"""Run bodies shared by the JSON API and the HTML launch form (one `RunCreate`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from app.core.config import get_settings
from app.core.models_base import DB_INT_MAX, UtcDatetime

OPTIMIZER_SETTINGS = {
    "sgd": {"momentum", "nesterov", "weight_decay"},
    "adam": {"betas", "eps", "weight_decay"},
    "adamw": {"betas", "eps", "weight_decay"},
    "rmsprop": {"momentum", "alpha", "eps", "weight_decay"},
}
# What each learning-rate schedule reads (the others' settings mean nothing to it).
SCHEDULE_SETTINGS = {
    "warmup": {"warmup_steps"},
    "warmup_cosine": {"warmup_steps"},
    "step": {"step_size", "gamma", "warmup_steps"},
    "cosine": {"t_max", "eta_min", "warmup_steps"},
    "plateau": {"monitor", "factor", "patience", "min_lr", "warmup_steps"},
}
# A warm-up longer than this many optimizer steps is almost surely a typo (epochs or samples meant).
WARMUP_STEPS_MAX = 100_000
# numpy seeds with 32-bit numbers: a larger seed would only fail in the trainer.
SEED_MAX = 2**32 - 1
DEVICES = "auto, cpu, cuda, cuda:N (N the GPU's number) or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,9})?")


def _number(kind: type, words: str) -> Any:
    """`kind`, saying "“abc” is not a number" for text that is not one (the form posts text, JSON may too)."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if exc.errors()[0]["type"] in ("int_parsing", "float_parsing", "int_from_float"):
                raise ValueError(f"“{value}” is not {words}") from None
            raise

    return Annotated[kind, WrapValidator(check)]


Whole = _number(int, "a whole number")
Number = _number(float, "a number")
# Adam's betas: each a decay rate in [0, 1).
Beta = Annotated[Number, Field(ge=0, lt=1)]


@lru_cache(maxsize=1)
def visible_gpus() -> tuple[str, ...]:
    """The GPUs the local executor hands runs to (read once: CUDA_VISIBLE_DEVICES or nvidia-smi,
    without importing torch). Tests that change CUDA_VISIBLE_DEVICES call `visible_gpus.cache_clear()`."""
    from app.executors.local import _gpu_ids

    return tuple(_gpu_ids())


class OptimizerConfig(BaseModel):
    # No NaN or infinity anywhere in run settings: they only fail (or silently ruin a run) in the trainer.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    lr: Number = Field(default=0.001, gt=0)
    momentum: Number | None = Field(default=None, ge=0, lt=1)
    nesterov: bool | None = None
    weight_decay: Number | None = Field(default=None, ge=0)
    betas: tuple[Beta, Beta] | None = None
    eps: Number | None = Field(default=None, gt=0)
    alpha: Number | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _settings_fit_the_optimizer(self) -> OptimizerConfig:
        given = {k for k in ("momentum", "nesterov", "weight_decay", "betas", "eps", "alpha")
                 if getattr(self, k) is not None}
        extra = sorted(given - OPTIMIZER_SETTINGS[self.name])
        if extra:
            takes = ", ".join(sorted(OPTIMIZER_SETTINGS[self.name]))
            raise ValueError(f"{self.name} has no setting {', '.join(extra)}: it takes lr, {takes}")
        if self.nesterov and not self.momentum:
            raise ValueError("nesterov needs momentum > 0")
        return self


class ScheduleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Literal["warmup", "warmup_cosine", "step", "cosine", "plateau"]
    # A linear warm-up over the run's first N optimizer steps (batches), with any schedule
    # (`warmup_cosine`: then a cosine decay, step by step, to 0 at the run's last step).
    warmup_steps: Whole | None = Field(default=None, ge=0, le=WARMUP_STEPS_MAX)
    step_size: Whole | None = Field(default=None, ge=1, validate_default=True)
    gamma: Number | None = Field(default=None, gt=0, le=1)
    t_max: Whole | None = Field(default=None, ge=1)
    eta_min: Number | None = Field(default=None, ge=0)
    monitor: Literal["val_loss", "val_accuracy"] | None = None
    factor: Number | None = Field(default=None, gt=0, lt=1)
    patience: Whole | None = Field(default=None, ge=0)
    min_lr: Number | None = Field(default=None, ge=0)

    @field_validator("step_size")
    @classmethod
    def _step_needs_a_size(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("name") == "step":
            raise ValueError("a step schedule needs a step size (epochs between decays)")
        return value

    @model_validator(mode="after")
    def _warmup_has_steps(self) -> ScheduleConfig:
        if self.name == "warmup" and not self.warmup_steps:
            raise ValueError("a warm-up schedule needs its number of warm-up steps (optimizer steps, ≥ 1)")
        return self


class EarlyStoppingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: Whole = Field(default=3, ge=0)
    min_delta: Number = Field(default=0.0, ge=0)
    restore_best: bool = True


class TrainConfigIn(BaseModel):
    """Mirrors app.engine.types.TrainConfig, with limits and messages for people."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: Whole = Field(default=5, ge=1)
    batch_size: Whole = Field(default=32, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: Literal["cross_entropy", "mse", "binary_cross_entropy"] = "cross_entropy"
    l2: Number = Field(default=0.0, ge=0)
    schedule: ScheduleConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    grad_clip: Number | None = Field(default=None, gt=0)
    seed: Whole = Field(default=0, ge=0, le=SEED_MAX)
    device: str = "auto"
    # How the forward pass computes (app/engine/runtime.choose_precision): "auto" picks bf16 (+ channels-last)
    # for convolutional models on CPUs with bf16 hardware, bf16 or AMP fp16 on CUDA, fp32 otherwise.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # Old bodies: mixed_precision false without a precision means "fp32" (see _legacy_precision).
    mixed_precision: bool = True
    channels_last: bool = True
    val_split: Number = Field(default=0.1, ge=0, lt=0.9)
    # "auto": images scaled to [0, 1] (the Keras tutorials' x / 255), points and CSV columns standardized.
    normalize: Literal["auto", "scale", "standardize"] = "auto"
    top_k: Whole = Field(default=5, ge=1, le=20)
    max_train_samples: Whole | None = Field(default=None, ge=1)
    # 0: every epoch's checkpoint stays (fork from any epoch); N: the last N and the best one.
    keep_checkpoints: Whole = Field(default=0, ge=0)
    # How many times a run whose trainer was lost (its process killed, its Ray worker or node gone)
    # is queued again, resuming from its last checkpoint. Errors in the run itself are not retried.
    retries: Whole = Field(default=0, ge=0, le=10)
    # Per-layer histograms and exploding/vanishing gradient warnings each epoch: "auto" records them for
    # models of at most 5M trainable parameters (app/engine/histograms.py).
    histograms: Literal["auto", "on", "off"] = "auto"

    @field_validator("epochs", "batch_size")
    @classmethod
    def _within_the_server_limits(cls, value: int, info: ValidationInfo) -> int:
        limit = getattr(get_settings(), f"max_{info.field_name}")
        if value > limit:
            raise ValueError(f"{info.field_name} = {value} is over the limit of {limit} "
                             f"(TRAINBOARD_MAX_{str(info.field_name).upper()})")
        return value

    @field_validator("device")
    @classmethod
    def _device_exists(cls, value: str) -> str:
        """One of DEVICES; with the local executor a CUDA device must be one this server has."""
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"unknown device {value!r}: use {DEVICES}")
        if not value.startswith("cuda") or get_settings().executor != "local":
            return value  # a Ray cluster's GPUs are not this server's to count
        gpus = visible_gpus()
        index = int(value.partition(":")[2] or 0)
        if index < len(gpus):
            return value
        if not gpus:
            raise ValueError(f"this server has no GPU, so there is no {value}: use auto or cpu")
        choices = ", ".join(["auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(len(gpus)))])
        raise ValueError(f"there is no {value}: this server has {len(gpus)} GPU{'s' * (len(gpus) > 1)} "
                         f"(cuda:0 to cuda:{len(gpus) - 1}); use one of {choices}")

    @model_validator(mode="before")
    @classmethod
    def _legacy_precision(cls, data: Any) -> Any:
        """A body from before `precision`: mixed_precision false (or "0", "false") asks for fp32."""
        if isinstance(data, Mapping) and "precision" not in data and str(data.get("mixed_precision")).lower() in (
                "false", "0", "off", "no"):
            return {**data, "precision": "fp32"}
        return data

    @field_validator("precision")
    @classmethod
    def _precision_fits_the_device(cls, value: str, info: ValidationInfo) -> str:
        """What the web process can know: fp16 and bf16 are not for MPS, fp16 is not for the CPU, nor for
        device auto when this server (local executor) has no GPU. The rest is checked when the run starts."""
        device = info.data.get("device")
        if device is None or value in ("auto", "fp32"):
            return value
        if device == "mps":
            raise ValueError(f"{value} is not available on MPS: choose auto or fp32")
        if value == "fp16" and device == "cpu":
            raise ValueError("fp16 needs a CUDA device (it is not available on the CPU): choose auto, bf16 or fp32, "
                             "or a cuda device")
        if value == "fp16" and device == "auto" and get_settings().executor == "local" and not visible_gpus():
            raise ValueError("fp16 needs a CUDA device and this server has no GPU, so device auto trains on the "
                             "CPU: choose auto, bf16 or fp32")
        return value

    def to_engine_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["optimizer"] = {k: v for k, v in data["optimizer"].items() if v is not None}
        for key in ("schedule",):
            if data[key] is not None:
                data[key] = {k: v for k, v in data[key].items() if v is not None}
        return data


def _section_model(annotation: Any) -> type[BaseModel] | None:
    for kind in (annotation, *get_args(annotation)):
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
    return None


def setting_fields(model: type[BaseModel] = TrainConfigIn, prefix: str = "config") -> dict[str, FieldInfo]:
    """Every run setting by its path in a run body (`config.optimizer.lr`), the sections' settings included."""
    fields: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        section = _section_model(info.annotation)
        fields.update(setting_fields(section, f"{prefix}.{name}") if section else {f"{prefix}.{name}": info})
    return fields


# Sections a run may leave out (None by default, e.g. schedule, early_stopping).
OPTIONAL_SECTIONS = tuple(name for name, info in TrainConfigIn.model_fields.items()
                          if info.default is None and _section_model(info.annotation))
_OFF = ("0", "false", "off", "no")


def nest(flat: Mapping[str, Any], prefix: str = "config") -> dict[str, Any]:
    """Settings by path (`config.optimizer.lr`: "0.01", as a form or command line gives them) → the
    nested `config` that TrainConfigIn validates. '' or None is "not given" (the schema's default
    applies); numbered keys (`betas.0`, `betas.1`) make a list; an optional section is left out when
    its `enabled` switch is off, or when it has no switch and nothing in it is given."""
    config: dict[str, Any] = {}
    for path, value in flat.items():
        if value is None or value == "" or not path.startswith(prefix + "."):
            continue
        *parents, leaf = path[len(prefix) + 1:].split(".")
        node = config
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    for name in OPTIONAL_SECTIONS:
        section = config.get(name)
        if isinstance(section, dict):
            switch = section.pop("enabled", None)
            if str(switch).lower() in _OFF or (switch is None and not section):
                del config[name]
    return _lists(config)


def setting_kinds(info: FieldInfo) -> set[Any]:
    """The plain types a setting takes ({int}, {float, None}, {bool}, {"sgd", "adam", ...} for a choice)."""

    def kinds(annotation: Any) -> set[Any]:
        args = get_args(annotation)
        return set().union(*map(kinds, args)) if args else {annotation}

    return kinds(info.annotation)


def setting_choices(info: FieldInfo) -> tuple[str, ...]:
    """The options of a choice setting (a Literal), in the schema's order; () for other settings."""
    for kind in (info.annotation, *get_args(info.annotation)):
        if get_origin(kind) is Literal:
            return get_args(kind)
    return ()


def error_message(error: Mapping[str, Any]) -> str:
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def describe(exc: ValidationError) -> str:
    """Every error as `field: message`, fields named by their path in a run body (as the API names them)."""
    prefix = ["config"] if exc.title == "TrainConfigIn" else []
    return "; ".join(f"{'.'.join(str(p) for p in [*prefix, *e['loc']])}: {error_message(e)}" for e in exc.errors())


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {key: _lists(value) for key, value in node.items()}
    if items and sorted(items) == [str(i) for i in range(len(items))]:
        return [items[str(i)] for i in range(len(items))]
    return items


class RunCreate(BaseModel):
    """What to train: one of architecture_id, spec or preset (none: the data set's default model, see
    `presets.default_spec`), on a data set (a preset's own when it names none)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    architecture_id: int | None = Field(default=None, ge=1, le=DB_INT_MAX)
    spec: dict[str, Any] | None = None
    preset: str | None = Field(default=None, max_length=64, description=(
        "a preset (GET /api/presets); on another data set its input and output layers are fitted to it"))
    dataset: str | None = Field(default=None, max_length=64, description=(
        "a data set's name; required unless a preset is given (then the preset's own)"))
    config: TrainConfigIn = Field(default_factory=TrainConfigIn, description=(
        "run settings; with architecture_id, the settings saved with it fill in those left out"))

    @model_validator(mode="after")
    def _one_model_at_most(self) -> RunCreate:
        given = [k for k in ("architecture_id", "spec", "preset") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of architecture_id, spec or preset, not {' and '.join(given)} "
                             "(or none of them for the data set's default model)")
        return self


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: Whole | None = Field(default=None, ge=1, le=DB_INT_MAX, description="checkpoint epoch (default: the last)")
    name: str | None = Field(default=None, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict, description="settings to change")


class TagPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    colour: str


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: str
    failure_reason: str | None
    dataset: str
    architecture_id: int | None
    preset: str | None
    spec: dict[str, Any]
    config: dict[str, Any]
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    heartbeat_at: UtcDatetime | None
    epochs_total: int
    epoch: int
    best_val_accuracy: float | None
    test_accuracy: float | None
    test_loss: float | None
    total_params: int
    train_time_s: float | None
    peak_memory_bytes: int | None
    training_memory_bytes: int | None = None
    parent_run_id: int | None
    fork_epoch: int | None
    cancel_requested: bool
    last_seq: int
    pid: int | None
    worker: str | None
    sweep_id: int | None = None
    sweep_trial: int | None = None
    sweep_params: dict[str, Any] | None = None
    pruned_epoch: int | None = None
    note: str | None = None
    archived: bool = False
    tags: list[TagPublic] = []


class PrecisionPublic(BaseModel):
    precision: str = Field(description="what the trainer chose: fp32, bf16 or fp16")
    reason: str = Field(description="why, in words (the run page shows it)")
    channels_last: bool


class RunDetail(RunPublic):
    """One run (GET /api/runs/{id}): the list's fields and what its trainer chose for precision."""

    precision: PrecisionPublic | None = Field(
        default=None, description="set once the trainer has started (None while queued, or for a script's run)")


class RunsPublic(BaseModel):
    items: list[RunPublic]
    total: int
    offset: int
    limit: int
    next_cursor: str | None = Field(default=None, description="pass as ?cursor= for the next page (None: the last)")


class RunEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    kind: str
    epoch: int | None
    step: int | None
    payload: dict[str, Any]
    ts: float


def usable_config(training: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Run settings read from elsewhere (a Keras fit call) minus what TrainConfigIn would refuse,
    each drop explained in `notes`: the result is always a valid `config` for POST /api/runs."""
    training = dict(training)
    optimizer = training.get("optimizer")
    if isinstance(optimizer, dict):
        allowed = OPTIMIZER_SETTINGS.get(optimizer.get("name"), set()) | {"name", "lr"}
        extra = sorted(set(optimizer) - allowed)
        if extra:
            notes.append(f"dropped the optimizer's {', '.join(extra)}: {optimizer.get('name')} takes no such setting here")
            training["optimizer"] = {k: v for k, v in optimizer.items() if k in allowed}
    for _ in range(len(training) + 1):
        try:
            TrainConfigIn.model_validate(training)
            return training
        except ValidationError as exc:
            error = exc.errors()[0]
            location = ".".join(str(part) for part in error["loc"]) or "config"
            notes.append(f"dropped the training setting {location}: {error['msg']}")
            if not error["loc"] or training.pop(str(error["loc"][0]), None) is None:
                return {}
    return {}


# ---------- run management (app/runs/manage.py checks the rest: tag characters, names) ----------
RunIds = Annotated[list[Annotated[int, Field(ge=1, le=DB_INT_MAX)]], Field(min_length=1, max_length=500)]
TagNames = Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=20)]


class TagsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: TagNames = Field(description="the run's tags, replacing those it has (at most 20, each ≤ 40 characters)")


class RunUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=20_000, description="markdown; empty removes the note")


class TagUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    colour: str = Field(pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb")


class TagInfo(BaseModel):
    name: str
    colour: str
    runs: int


class BulkTags(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: RunIds
    add: TagNames = []
    remove: TagNames = []


class BulkArchive(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: RunIds
    archived: bool = True


class BulkDelete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: RunIds
    dry_run: bool = Field(default=False, description="only say what would be deleted and how much disk it frees")


class DeleteResult(BaseModel):
    ids: list[int] = Field(description="the runs deleted (with dry_run: that would be)")
    bytes_freed: int = Field(description="bytes of checkpoints, exports and logs removed from disk (would be)")
    active: list[int] = Field(default=[], description="dry_run: runs still training, which a delete refuses")
    dry_run: bool = False
