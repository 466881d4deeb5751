"""A sweep's search space: what a request may name, and how sampled values become a run.

Keys are paths into the run:
- `config.<setting>`: any run setting by its path in a run body (`config.optimizer.lr`,
  `config.batch_size`, `config.l2`, `config.early_stopping.patience`, …);
- `spec.layers[N].<field>`: one field of the base model's layer N (`spec.layers[1].units`);
- architecture variants, applied to every layer they concern (VARIANTS below): hidden Dense units,
  the number of hidden Dense blocks or of Conv blocks, filters, kernel size, RNN cell and units,
  hidden activation, dropout rate.

Values are a list of choices or a distribution (`uniform`, `log_uniform`, `int_uniform`,
`int_log_uniform` with `low`, `high` and, for the uniform kinds, an optional `step`).

Order of application: layer fields first (their indexes are the base model's), then the block counts
(a block is repeated or cut), then the per-layer variants (so repeated blocks get them too).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.runs.schemas import setting_fields

MAX_KEYS = 16
MAX_CHOICES = 64
# Every architecture the space can produce is checked before anything is queued; past this many the
# keys are checked one at a time (each against the base of the others).
MAX_CHECKED_COMBINATIONS = 256

Scalar = bool | int | float | str | None
RECURRENT = ("SimpleRNN", "LSTM", "GRU")
CONV = ("Conv2D",)
# Layers that belong to the block of the Dense or Conv2D layer before them.
_FOLLOWERS = {"Dropout", "BatchNormalization", "Activation", "MaxPooling2D", "AveragePooling2D", "SpatialDropout2D"}


class Distribution(BaseModel):
    """A range to sample from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: Literal["uniform", "log_uniform", "int_uniform", "int_log_uniform"]
    low: float
    high: float
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _a_real_range(self) -> Distribution:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.type.endswith("log_uniform"):
            if self.low <= 0:
                raise ValueError(f"a {self.type} range needs low > 0 (got {self.low:g})")
            if self.step is not None:
                raise ValueError(f"a {self.type} range takes no step")
        if self.type.startswith("int"):
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and value != int(value):
                    raise ValueError(f"an {self.type} range takes whole numbers: {name} = {value:g}")
        return self

    @property
    def is_int(self) -> bool:
        return self.type.startswith("int")

    def corners(self) -> list[Scalar]:
        """The values checked before a sweep is queued: both ends."""
        return [int(self.low), int(self.high)] if self.is_int else [self.low, self.high]

    def optuna(self) -> Any:
        from optuna.distributions import FloatDistribution, IntDistribution

        log = self.type.endswith("log_uniform")
        if self.is_int:
            return IntDistribution(int(self.low), int(self.high), log=log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=log, step=self.step)

    def describe(self) -> str:
        return f"{self.type} {self.low:g}…{self.high:g}"


Choices = list[Scalar]
Domain = Choices | Distribution


class SpaceError(ValueError):
    """A space key or value the request cannot use (the message says what to write instead)."""


# -- keys ----------------------------------------------------------------------------------------

_LAYER_PATH = re.compile(r"spec\.layers\[(\d{1,4})\]\.([a-z_]{1,40})")

VARIANTS: dict[str, str] = {
    "spec.dense_units": "units of every hidden Dense layer",
    "spec.dense_blocks": "number of hidden Dense blocks (the last one repeated, or the first ones kept)",
    "spec.conv_blocks": "number of Conv2D blocks (Conv2D with its pooling/normalisation/dropout)",
    "spec.conv_filters": "filters of the first Conv2D (the others keep their ratio to it)",
    "spec.kernel_size": "kernel size of every Conv2D",
    "spec.rnn_cell": "cell of every recurrent layer: LSTM, GRU or SimpleRNN",
    "spec.rnn_units": "units of every recurrent layer",
    "spec.activation": "activation of every hidden Dense and Conv2D layer",
    "spec.dropout": "rate of every Dropout layer",
}


def check_key(key: str, base_spec: dict[str, Any]) -> None:
    """SpaceError unless `key` is a config setting, a layer field of the base model or a variant."""
    if key.startswith("config."):
        if key not in setting_fields():
            raise SpaceError(f"'{key}' is not a run setting: use a path such as config.optimizer.lr, "
                             "config.batch_size, config.epochs or config.l2")
        return
    match = _LAYER_PATH.fullmatch(key)
    if match:
        index, layers = int(match[1]), base_spec.get("layers", [])
        if index >= len(layers):
            raise SpaceError(f"'{key}': the base model has layers 0 to {len(layers) - 1}")
        return
    if key not in VARIANTS:
        raise SpaceError(f"'{key}' is not a path into the run: use config.<setting> (config.optimizer.lr), "
                         f"spec.layers[N].<field> (spec.layers[1].units) or one of {', '.join(VARIANTS)}")


def is_spec_key(key: str) -> bool:
    return key.startswith("spec.")


# -- applying values --------------------------------------------------------------------------------

def build(base_spec: dict[str, Any], base_config: dict[str, Any], params: dict[str, Any]) -> tuple[dict, dict]:
    """The (spec, config) of a trial: the base with `params` applied (see the module's order). A per-layer
    variant whose layers a block count of 0 removed is no error (there is nothing left to set)."""
    spec, config = copy.deepcopy(base_spec), copy.deepcopy(base_config)
    base_layers = base_spec.get("layers", [])
    for key, value in params.items():
        if key.startswith("config."):
            *parents, leaf = key.split(".")[1:]
            node = config
            for part in parents:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[leaf] = value
    layers = spec.setdefault("layers", [])
    for key, value in params.items():
        if match := _LAYER_PATH.fullmatch(key):
            layers[int(match[1])][match[2]] = value
    if "spec.dense_blocks" in params:
        spec["layers"] = layers = _set_blocks(layers, _whole(params["spec.dense_blocks"], "spec.dense_blocks", 0),
                                              "Dense", hidden_only=True)
    if "spec.conv_blocks" in params:
        spec["layers"] = layers = _set_blocks(layers, _whole(params["spec.conv_blocks"], "spec.conv_blocks", 1),
                                              "Conv2D", hidden_only=False)
    hidden = _hidden_indexes(layers)

    def _each(indexes: list[int], field: str, value: Any, key: str, base_has: bool) -> None:
        if not indexes and not base_has:
            raise SpaceError(f"{key}: the base model has no layer it applies to ({VARIANTS[key]})")
        for i in indexes:
            layers[i][field] = value

    base_hidden_dense = any(layer.get("type") == "Dense" for layer in base_layers[:len(_hidden_indexes(base_layers))])
    base_types = {layer.get("type") for layer in base_layers}
    for key, value in params.items():
        if key == "spec.dense_units":
            _each([i for i in hidden if layers[i]["type"] == "Dense"], "units", _whole(value, key, 1), key,
                  base_hidden_dense)
        elif key == "spec.conv_filters":
            convs = [layer for layer in layers if layer.get("type") in CONV]
            if not base_types & set(CONV):
                raise SpaceError(f"{key}: the base model has no Conv2D layer")
            first, filters = (convs[0].get("filters") or 1) if convs else 1, _whole(value, key, 1)
            for layer in convs:
                layer["filters"] = max(1, round(filters * (layer.get("filters") or first) / first))
        elif key == "spec.kernel_size":
            _each([i for i, layer in enumerate(layers) if layer.get("type") in CONV], "kernel_size",
                  _whole(value, key, 1), key, bool(base_types & set(CONV)))
        elif key == "spec.rnn_cell":
            if value not in RECURRENT:
                raise SpaceError(f"{key} takes {', '.join(RECURRENT)}, not {value!r}")
            _each([i for i, layer in enumerate(layers) if layer.get("type") in RECURRENT], "type", value, key,
                  bool(base_types & set(RECURRENT)))
        elif key == "spec.rnn_units":
            _each([i for i, layer in enumerate(layers) if layer.get("type") in RECURRENT], "units",
                  _whole(value, key, 1), key, bool(base_types & set(RECURRENT)))
        elif key == "spec.activation":
            if not isinstance(value, str):
                raise SpaceError(f"{key} takes activation names such as relu, tanh or sigmoid, not {value!r}")
            _each([i for i in hidden if layers[i]["type"] in ("Dense", *CONV)], "activation", value, key,
                  base_hidden_dense or bool(base_types & set(CONV)))
        elif key == "spec.dropout":
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
                raise SpaceError(f"{key} takes rates from 0 up to (not including) 1, not {value!r}")
            _each([i for i, layer in enumerate(layers) if layer.get("type") == "Dropout"], "rate",
                  float(value), key, "Dropout" in base_types)
    return spec, config


def _whole(value: Any, key: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < least:
        raise SpaceError(f"{key} takes whole numbers from {least}, not {value!r}")
    return int(value)


def _hidden_indexes(layers: list[dict[str, Any]]) -> list[int]:
    """Layers before the model's last Dense (its output layer): the hidden ones."""
    dense = [i for i, layer in enumerate(layers) if layer.get("type") == "Dense"]
    end = dense[-1] if dense else len(layers)
    return list(range(end))


def _blocks(layers: list[dict[str, Any]], head: str, hidden_only: bool) -> list[tuple[int, int]]:
    """(start, end) of each block: a `head` layer and the followers after it."""
    limit = len(_hidden_indexes(layers)) if hidden_only else len(layers)
    spans = []
    for i in range(limit):
        if layers[i].get("type") == head:
            end = i + 1
            while end < limit and layers[end].get("type") in _FOLLOWERS:
                end += 1
            spans.append((i, end))
    return spans


def _set_blocks(layers: list[dict[str, Any]], count: int, head: str, hidden_only: bool) -> list[dict[str, Any]]:
    spans = _blocks(layers, head, hidden_only)
    if not spans:
        raise SpaceError(f"the base model has no {'hidden ' if hidden_only else ''}{head} block to repeat")
    if len(spans) > 1 and spans[-1][0] != spans[-2][1]:
        # blocks apart (e.g. Conv2D … Flatten … Conv2D): only consecutive blocks can be counted
        raise SpaceError(f"the base model's {head} blocks are not next to each other: set their fields one by one")
    start, end = spans[0][0], spans[-1][1]
    blocks = [layers[a:b] for a, b in spans]
    chosen = blocks[:count] + [blocks[-1]] * max(0, count - len(blocks))
    return layers[:start] + [copy.deepcopy(layer) for block in chosen for layer in block] + layers[end:]


# -- combinations ---------------------------------------------------------------------------------

def check_values(space: dict[str, Domain]) -> dict[str, list[Scalar]]:
    """The values of each key to check before queueing: every choice, or a range's two ends."""
    return {key: (domain.corners() if isinstance(domain, Distribution) else list(domain)) for key, domain in space.items()}


def combinations(values: dict[str, list[Scalar]], base: dict[str, Scalar] | None = None) -> Iterator[dict[str, Scalar]]:
    """Every combination of `values` while there are at most MAX_CHECKED_COMBINATIONS; else each key's
    values one at a time, the other keys at their first value."""
    keys = list(values)
    count = math.prod(len(v) for v in values.values())
    if count <= MAX_CHECKED_COMBINATIONS:
        for combo in itertools.product(*(values[k] for k in keys)):
            yield dict(zip(keys, combo, strict=True))
        return
    first = {k: v[0] for k, v in values.items()}
    for key in keys:
        for value in values[key]:
            yield {**first, key: value}


def grid(space: dict[str, Domain]) -> list[dict[str, Scalar]]:
    """Every combination of a grid's lists, in order (the first key changes slowest). Small grids only:
    use `grid_size` and `grid_point` for any size."""
    keys = list(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(space[k] for k in keys))]


def grid_size(space: dict[str, Domain]) -> int:
    return math.prod(len(domain) for domain in space.values() if isinstance(domain, list))


def grid_point(space: dict[str, Domain], index: int) -> dict[str, Scalar]:
    """Combination number `index` in `grid`'s order, without building the others."""
    point: dict[str, Scalar] = {}
    for key in reversed(list(space)):
        choices = space[key]
        index, digit = divmod(index, len(choices))
        point[key] = choices[digit]
    return {key: point[key] for key in space}


def grid_indexes(space: dict[str, Domain], trials: int, seed: int) -> list[int]:
    """The combinations a grid sweep of `trials` runs: every one in order, or (fewer trials than
    combinations) a seeded sample across the whole grid, in order."""
    size = grid_size(space)
    if trials >= size:
        return list(range(size))
    return sorted(random.Random(seed).sample(range(size), trials))


def integer_keys(space: dict[str, Domain], base_spec: dict[str, Any]) -> list[str]:
    """Keys that take whole numbers (units, blocks, filters, batch size…): a float range would sample
    values they refuse."""
    from app.runs.schemas import setting_kinds

    whole = {"spec.dense_units", "spec.dense_blocks", "spec.conv_blocks", "spec.conv_filters", "spec.kernel_size",
             "spec.rnn_units"}
    found = []
    fields = setting_fields()
    for key in space:
        if key in whole:
            found.append(key)
        elif key in fields:
            kinds = setting_kinds(fields[key])
            if int in kinds and float not in kinds:
                found.append(key)
        elif match := _LAYER_PATH.fullmatch(key):
            current = base_spec.get("layers", [])[int(match[1])].get(match[2])
            if isinstance(current, int) and not isinstance(current, bool):
                found.append(key)
    return found


def label(params: dict[str, Any]) -> str:
    """Parameters as a short text: 'lr=0.001, units=128'."""
    return ", ".join(f"{short(key)}={_fmt(value)}" for key, value in params.items())


def short(key: str) -> str:
    """A space key's last part ('config.optimizer.lr' → 'lr', 'spec.layers[1].units' → 'layers[1].units');
    a name goes by what it names ('config.optimizer.name' → 'optimizer')."""
    if key.startswith("spec.layers["):
        return key[len("spec."):]
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
