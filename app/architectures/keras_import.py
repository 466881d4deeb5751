"""Keras `Sequential` source → spec dict, by reading the syntax tree. The code is never executed.

Accepts what tutorials and web pages show: `Sequential([...])` or `model.add(...)`, any prefix
(`tf.keras.layers.Dense`, `layers.Dense`, `Dense`), `input_shape=` on the first layer or an
`Input(shape=...)` first, `Bidirectional(LSTM(...))`, `keras.applications` backbones with
`include_top=False`, and text pasted from a browser (curly quotes, non-breaking spaces,
`>>> ` prompts, indented blocks). Keras shapes are channels-last; the spec's are channels-first.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Mapping
from typing import Any

from app.core.errors import InvalidInput
from app.layers import registry
from app.layers.base import KerasUnsupported, LayerSpec, form_kind_of

# Arguments every Keras layer takes that change no shape or parameter count: dropped with a note
# (each kind lists its own too: app.layers, `Keras.ignored`).
_IGNORED = {"name", "dtype", "trainable", "kernel_initializer", "bias_initializer", "kernel_regularizer",
            "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint", "batch_size"}
_BIDIRECTIONAL_FIXED = {"merge_mode": ("concat",)}
_SHAPE_KEYS = ("input_shape", "batch_input_shape", "input_length")
_MODEL_CALLS = {"summary": "Trainboard shows the summary next to the spec"}
# compile(...) and fit(...) become run settings (the `config` of POST /api/runs).
_OPTIMIZERS = {"adam": "adam", "sgd": "sgd", "rmsprop": "rmsprop", "adamw": "adamw"}
_OPTIMIZER_ARGS = {"learning_rate": "lr", "lr": "lr", "momentum": "momentum", "nesterov": "nesterov",
                   "weight_decay": "weight_decay", "epsilon": "eps", "rho": "alpha"}
_LOSSES = {"sparse_categorical_crossentropy": "cross_entropy", "categorical_crossentropy": "cross_entropy",
           "sparsecategoricalcrossentropy": "cross_entropy", "categoricalcrossentropy": "cross_entropy",
           "mse": "mse", "mean_squared_error": "mse", "meansquarederror": "mse",
           "binary_crossentropy": "binary_cross_entropy", "binarycrossentropy": "binary_cross_entropy"}
_FIT_ARGS = {"epochs": "epochs", "batch_size": "batch_size", "validation_split": "val_split"}
_FIT_POSITIONS = {2: "batch_size", 3: "epochs"}  # fit(x, y, batch_size, epochs, ...)
_TEXT_FIXES = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " ", "\u2009": " ",
               "\u202f": " ", "\u200b": "", "\ufeff": "", "\u2212": "-", "\t": "    "}
_PROMPT = re.compile(r"^\s*(>>>|\.\.\.)(?: |$)")
# A model and its compile/fit calls fit in far less; longer text is refused before it is parsed.
MAX_SOURCE_CHARS = 200_000


class KerasImportError(InvalidInput):
    """Source we cannot turn into a spec; details: [{"line": n, "message": "line n: ..."}]."""

    def __init__(self, details: list[dict[str, Any]]):
        super().__init__("; ".join(d["message"] for d in details), details)


class _Unsupported(Exception):
    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def import_keras(code: str) -> dict[str, Any]:
    """Keras source → spec dict with a channels-first input_shape (None when the code gives none)."""
    return import_keras_with_notes(code)[0]


def import_keras_with_notes(code: str) -> tuple[dict[str, Any], list[str]]:
    """Like `import_keras`, plus notes on what was ignored (regularizers, unreadable fit arguments...)."""
    spec, notes, _ = import_keras_source(code)
    return spec, notes


def import_keras_source(code: str) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """(spec, notes, training): training holds the run settings read from `compile(...)` and `fit(...)`
    (optimizer, loss, epochs, batch_size, val_split, early_stopping), in the shape of a run's `config`."""
    if len(code) > MAX_SOURCE_CHARS:
        raise KerasImportError([{"line": None, "message": (
            f"the code is {len(code)} characters long: paste at most {MAX_SOURCE_CHARS} (the model and its "
            "compile/fit calls)")}])
    tree = _parse(clean_source(code))
    reader = _Reader()
    reader.statements(tree.body)
    if reader.errors:
        raise KerasImportError([{"line": line, "message": message} for line, message in reader.errors])
    if reader.model_line is None:
        raise KerasImportError([{"line": None, "message": (
            "no Sequential model found: paste code that builds `Sequential([...])` or calls `model.add(...)`")}])
    if not reader.layers:
        raise KerasImportError([{"line": reader.model_line, "message": (
            f"line {reader.model_line}: the Sequential model has no layers")}])
    layers = [layer for layer, _ in reader.layers]
    spec = {"input_shape": _channels_first(reader.input_shape, layers), "layers": layers}
    return spec, reader.notes, reader.training


def clean_source(code: str) -> str:
    """Undo what copying from a web page does to code; keeps line numbers unchanged."""
    for bad, good in _TEXT_FIXES.items():
        code = code.replace(bad, good)
    lines = code.splitlines()
    if any(line.lstrip().startswith(">>>") for line in lines):
        # A REPL transcript: keep prompted lines, blank out printed output.
        lines = [_PROMPT.sub("", line) if _PROMPT.match(line) else "" for line in lines]
    return textwrap.dedent("\n".join(lines))


def _parse(code: str) -> ast.Module:
    try:
        try:
            return ast.parse(code)
        except IndentationError:
            # Mixed indentation from a web page: statements inside brackets may start anywhere.
            return ast.parse("\n".join(line.lstrip() for line in code.splitlines()))
    except SyntaxError as exc:
        raise _syntax_error(exc) from exc
    except (MemoryError, RecursionError) as exc:  # Python's parser gives up on very deep expressions
        raise KerasImportError([{"line": None, "message": (
            "the code nests too deeply to read (a very long expression or many brackets): paste the model as "
            "a Sequential([...]) of layer calls")}]) from exc


def _syntax_error(exc: SyntaxError) -> KerasImportError:
    return KerasImportError([{"line": exc.lineno, "message": f"line {exc.lineno}: not valid Python ({exc.msg})"}])


def _name(node: ast.AST) -> str | None:
    """'Dense' for Dense, layers.Dense and tf.keras.layers.Dense."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


class _Reader:
    def __init__(self) -> None:
        self.layers: list[tuple[dict[str, Any], int]] = []
        self.input_shape: list[Any] | None = None
        self.model_line: int | None = None
        self.constants: dict[str, Any] = {}  # num_classes = 10
        self.variables: dict[str, ast.Call] = {}  # base = ResNet50(...)
        self.frozen: dict[str, bool] = {}  # base.trainable = False
        self.notes: list[str] = []
        self.errors: list[tuple[int | None, str]] = []
        self.training: dict[str, Any] = {}  # run settings from compile(...) / fit(...)

    def statements(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            try:
                self.statement(stmt)
            except _Unsupported as exc:
                self.errors.append((exc.line, f"line {exc.line}: {exc.message}"))

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Pass)):
            return
        if isinstance(stmt, (ast.FunctionDef, ast.With, ast.If)):  # def build_model(): ... / with scope:
            self.statements(stmt.body)
            return
        if isinstance(stmt, ast.ClassDef):
            raise _Unsupported(stmt.lineno, "subclassed models are not supported: write the model as "
                                            "Sequential([...])")
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            self.assignment(stmt.targets[0], stmt.value, stmt.lineno)
            return
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            self.expression_call(stmt.value)
            return
        if isinstance(stmt, ast.Return):
            return
        self.notes.append(f"line {stmt.lineno}: ignored a statement that does not build the model")

    def assignment(self, target: ast.expr, value: ast.expr, line: int) -> None:
        if isinstance(target, ast.Attribute) and target.attr == "trainable" and isinstance(target.value, ast.Name):
            self.frozen[target.value.id] = not self.literal(value, "trainable")
            return
        if not isinstance(target, ast.Name):
            self.notes.append(f"line {line}: ignored an assignment that does not build the model")
            return
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr in ("compile", "fit"):
            self.training_call(value)  # history = model.fit(...)
            return
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Call):
            raise _Unsupported(line, "the functional API (layer(...)(x)) is not supported: write the model as "
                                     "Sequential([...])")
        if isinstance(value, ast.Call) and _name(value.func) == "Sequential":
            self.start_model(target.id, value)
        elif isinstance(value, ast.Call) and _name(value.func) in ("Model", "Functional"):
            raise _Unsupported(line, "the functional API (Model(inputs, outputs)) is not supported: write the "
                                     "model as Sequential([...])")
        elif isinstance(value, ast.Call):
            self.variables[target.id] = value
        else:
            try:
                self.constants[target.id] = _plain(ast.literal_eval(value))
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                self.notes.append(f"line {line}: ignored '{target.id} = ...' (not part of the model)")

    def start_model(self, name: str, call: ast.Call) -> None:
        if self.model_line is not None:
            raise _Unsupported(call.lineno, f"a second model (the first is on line {self.model_line}): paste "
                                            "one model at a time")
        self.model_line = call.lineno
        elements = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "layers"), None)
        if elements is None:
            return
        if not isinstance(elements, (ast.List, ast.Tuple)):
            raise _Unsupported(call.lineno, "Sequential(...) needs a literal list of layers")
        for element in elements.elts:
            try:
                self.add(element)
            except _Unsupported as exc:
                self.errors.append((exc.line, f"line {exc.line}: {exc.message}"))

    def expression_call(self, call: ast.Call) -> None:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "add" and call.args:
            if self.model_line is None:
                self.model_line = call.lineno
            self.add(call.args[0])
        elif isinstance(func, ast.Attribute) and func.attr in ("compile", "fit"):
            self.training_call(call)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            why = _MODEL_CALLS.get(func.attr, "not part of the architecture")
            self.notes.append(f"line {call.lineno}: ignored {func.value.id}.{func.attr}(...): {why}")
        else:
            self.notes.append(f"line {call.lineno}: ignored {_name(func) or 'a call'}(...)")

    # -- compile(...) and fit(...): run settings, never errors (what cannot be read is noted) ----------
    def training_call(self, call: ast.Call) -> None:
        method, line = call.func.attr, call.lineno
        keywords = {k.arg: k.value for k in call.keywords if k.arg}
        if method == "compile":
            positional = dict(zip(("optimizer", "loss"), call.args, strict=False))
            for key, node in {**positional, **keywords}.items():
                if key == "optimizer":
                    self.compile_optimizer(node, line)
                elif key == "loss":
                    self.compile_loss(node, line)
            return
        positional = {_FIT_POSITIONS[i]: node for i, node in enumerate(call.args) if i in _FIT_POSITIONS}
        for key, node in {**positional, **keywords}.items():
            if key in _FIT_ARGS:
                value = self.setting(node)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.training[_FIT_ARGS[key]] = value
                else:
                    self.notes.append(f"line {line}: could not read fit({key}=...): set it when you start a run")
            elif key == "callbacks" and isinstance(node, ast.List):
                for element in node.elts:
                    self.callback(self.variables.get(element.id) if isinstance(element, ast.Name) else element, line)

    def setting(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        try:
            return ast.literal_eval(node)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None

    def compile_optimizer(self, node: ast.expr, line: int) -> None:
        if isinstance(node, ast.Name) and node.id in self.variables:
            node = self.variables[node.id]  # opt = Adam(1e-3); model.compile(optimizer=opt)
        name = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else \
            _name(node.func) if isinstance(node, ast.Call) else None
        optimizer = _OPTIMIZERS.get(str(name).lower())
        if optimizer is None:
            self.notes.append(f"line {line}: optimizer {name or '?'} has no counterpart here: choose one when "
                              "you start a run")
            return
        settings: dict[str, Any] = {"name": optimizer, "lr": 0.01 if optimizer == "sgd" else 0.001}  # Keras defaults
        given = [("learning_rate", node.args[0])] if isinstance(node, ast.Call) and node.args else []
        given += [(k.arg, k.value) for k in node.keywords if k.arg] if isinstance(node, ast.Call) else []
        unreadable = []
        for arg, value_node in given:
            key = _OPTIMIZER_ARGS.get(arg) or ("betas" if arg in ("beta_1", "beta_2") else None)
            value = self.setting(value_node) if key else None
            if key and value is None:
                unreadable.append(key)
            elif key == "betas":
                settings.setdefault("betas", [0.9, 0.999])[arg == "beta_2"] = value
            elif key:
                settings[key] = value
        if unreadable:
            self.notes.append(f"line {line}: could not read the optimizer's {', '.join(unreadable)}: "
                              "the defaults are used")
        self.training["optimizer"] = settings

    def compile_loss(self, node: ast.expr, line: int) -> None:
        name = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else \
            _name(node.func) if isinstance(node, ast.Call) else _name(node)
        loss = _LOSSES.get(str(name).lower())
        if loss is None:
            self.notes.append(f"line {line}: loss {name or '?'} has no counterpart here: choose one when you "
                              "start a run")
        else:
            self.training["loss"] = loss

    def callback(self, node: ast.expr | None, line: int) -> None:
        if not isinstance(node, ast.Call) or _name(node.func) != "EarlyStopping":
            self.notes.append(f"line {line}: ignored a fit callback (only EarlyStopping has a counterpart)")
            return
        args = {k.arg: self.setting(k.value) for k in node.keywords if k.arg}
        monitor = args.get("monitor", "val_loss")
        if monitor not in ("val_loss", "val_accuracy"):
            self.notes.append(f"line {line}: EarlyStopping(monitor={monitor!r}) is not supported: use val_loss "
                              "or val_accuracy")
            return
        self.training["early_stopping"] = {
            "monitor": monitor, "patience": int(args.get("patience") or 0),
            "min_delta": float(args.get("min_delta") or 0.0), "restore_best": bool(args.get("restore_best_weights"))}

    def add(self, node: ast.expr) -> None:
        """One element of the model: a layer call, an Input, or a backbone variable."""
        line = getattr(node, "lineno", None)
        if isinstance(node, ast.Name) and node.id in self.variables:
            node, frozen = self.variables[node.id], self.frozen.get(node.id)
            self.layer(node, frozen)
            return
        if not isinstance(node, ast.Call):
            raise _Unsupported(line, "expected a layer call such as layers.Dense(10)")
        if isinstance(node.func, ast.Call):
            raise _Unsupported(line, "expected a layer call such as layers.Dense(10), not a layer applied to a "
                                     "tensor (the functional API is not supported)")
        self.layer(node, None)

    def layer(self, call: ast.Call, frozen: bool | None) -> None:
        keras_name = _name(call.func) or "?"
        known = registry.KERAS.get(keras_name)
        if known is not None and known[1] is None and known[0].keras is not None:
            keras_name = known[0].keras.name  # an alias: MaxPool2D is MaxPooling2D
        args = self.arguments(call, keras_name)
        if keras_name in ("Input", "InputLayer"):
            self.set_input_shape(args.get("shape", args.get("input_shape", args.get("_0"))), call.lineno)
            return
        if keras_name == "Bidirectional":
            inner = call.args[0] if call.args else None
            inner_kind = registry.KERAS.get(_name(inner.func) or "") if isinstance(inner, ast.Call) else None
            if inner_kind is None or "bidirectional" not in inner_kind[0].model_fields:
                wrappable = [kind.__name__ for kind in registry.KINDS if "bidirectional" in kind.model_fields]
                raise _Unsupported(call.lineno, f"Bidirectional(...) must wrap a {', '.join(wrappable[:-1])} or "
                                                f"{wrappable[-1]}")
            self.check_defaults(args, keras_name, call.lineno, _BIDIRECTIONAL_FIXED, skip={"_0"})
            self.take_shape(args, call.lineno)
            self.layer(inner, None)
            self.layers[-1][0]["bidirectional"] = True
            return
        if keras_name in registry.APPLICATIONS:
            self.application(call, keras_name, args, frozen)
            return
        kind, preset = registry.KERAS.get(keras_name, (None, None))
        if kind is None or kind.keras is None:
            supported = ", ".join([*registry.KERAS_CLASSES, "Bidirectional", "Input", *registry.KERAS_SHORTCUTS,
                                   *registry.APPLICATIONS])
            raise _Unsupported(call.lineno, f"layer '{keras_name}' is not supported; supported: {supported}")
        if preset is not None:  # ReLU() is Activation("relu")
            self.take_shape(args, call.lineno)
            self.append({"type": kind.__name__, **preset}, call.lineno)
            return
        spelling = kind.keras
        for position, name in enumerate(spelling.positional):
            if f"_{position}" in args:
                args[name] = args.pop(f"_{position}")
        for name in [key for key in args if key in spelling.ignored]:
            self.notes.append(f"line {call.lineno}: ignored {keras_name}({name}=...)")
            del args[name]
        self.take_shape(args, call.lineno, embedding=kind.token_input)
        try:
            args = kind.from_keras(args)
        except KerasUnsupported as exc:
            raise _Unsupported(call.lineno, str(exc)) from None
        self.check_defaults(args, keras_name, call.lineno, spelling.fixed)
        # Keras's parameter order reads best: Dense(units, activation), not the order typed.
        positional = spelling.positional
        ordered = [*(k for k in positional if k in args), *(k for k in args if k not in positional)]
        layer = {"type": kind.__name__, **{k: args[k] for k in ordered if k not in spelling.fixed}}
        self.append(layer, call.lineno, kind)

    def application(self, call: ast.Call, keras_name: str, args: dict[str, Any], frozen: bool | None) -> None:
        if args.get("include_top", True) is not False:
            raise _Unsupported(call.lineno, f"{keras_name} needs include_top=False: Trainboard adds its own head")
        weights = args.get("weights", "imagenet")
        self.take_shape(args, call.lineno)
        pooling = args.get("pooling")
        layer = {"type": "Pretrained", "backbone": registry.APPLICATIONS[keras_name],
                 "weights": "imagenet" if weights == "imagenet" else "none", "trainable": not frozen}
        if pooling not in (None, "avg"):
            raise _Unsupported(call.lineno, f"{keras_name}(pooling={pooling!r}) is not supported; use 'avg'")
        self.append(layer, call.lineno)

    def append(self, layer: dict[str, Any], line: int, kind: type[LayerSpec] | None = None) -> None:
        previous = self.layers[-1][0] if self.layers else None
        if previous and previous["type"] == "Pretrained" and layer["type"] in ("GlobalAveragePooling2D", "Flatten"):
            # Trainboard's backbones already end in average pooling.
            self.notes.append(f"line {line}: dropped {layer['type']}: the Pretrained backbone already pools")
            return
        if "activation" in layer and layer["activation"] not in registry.ACTIVATION_NAMES:
            raise _Unsupported(line, f"activation {layer['activation']!r} is not supported; supported: "
                                     f"{', '.join(registry.ACTIVATION_NAMES)}")
        for key, value in layer.items():
            sizes = kind is not None and key in kind.model_fields and \
                form_kind_of(kind.model_fields[key])[0] in ("pair", "int")
            if sizes and isinstance(value, list) and value and all(v == value[0] for v in value):
                layer[key] = value[0]  # (3, 3) reads better as 3; Conv1D's (3,) is 3
        self.layers.append((layer, line))

    def arguments(self, call: ast.Call, keras_name: str) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for position, node in enumerate(call.args):
            if keras_name != "Bidirectional":
                args[f"_{position}"] = self.value(node, keras_name, f"argument {position + 1}")
        for keyword in call.keywords:
            if keyword.arg is None:
                raise _Unsupported(call.lineno, f"{keras_name}(**...) cannot be read without running the code")
            if keyword.arg in _IGNORED:
                self.notes.append(f"line {call.lineno}: ignored {keras_name}({keyword.arg}=...)")
                continue
            args[keyword.arg] = self.value(keyword.value, keras_name, keyword.arg)
        return args

    def value(self, node: ast.expr, keras_name: str, what: str) -> Any:
        line = getattr(node, "lineno", None)
        if isinstance(node, ast.Name) and node.id in self.constants:
            return _plain(self.constants[node.id])
        if what == "activation" and isinstance(node, (ast.Attribute, ast.Name)):
            return _name(node)  # activation=tf.nn.relu
        try:
            value = ast.literal_eval(node)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise _Unsupported(line, f"cannot read {keras_name} {what} without running the code: write the "
                                     "value itself (a number, a string or a tuple)") from None
        if what == "activation" and value is None:
            return "linear"
        return _plain(value)

    def literal(self, node: ast.expr, what: str) -> Any:
        try:
            return ast.literal_eval(node)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise _Unsupported(getattr(node, "lineno", None), f"cannot read {what} without running the code") from None

    def check_defaults(self, args: dict[str, Any], keras_name: str, line: int, fixed: Mapping[str, tuple[Any, ...]],
                       skip: set[str] = frozenset()) -> None:
        for key, value in list(args.items()):
            if key in skip:
                continue
            if key.startswith("_"):
                raise _Unsupported(line, f"{keras_name} takes fewer positional arguments; use keywords")
            allowed = fixed.get(key)
            if allowed is not None and value not in allowed and not (isinstance(value, list) and tuple(value) in allowed):
                raise _Unsupported(line, f"{keras_name}({key}={value!r}) is not supported; remove it")

    def take_shape(self, args: dict[str, Any], line: int, embedding: bool = False) -> None:
        """input_shape=, input_dim= (Dense), input_length= (Embedding): the model's input shape."""
        # For an Embedding, input_dim is the vocabulary size, not a shape.
        keys = _SHAPE_KEYS if embedding else (*_SHAPE_KEYS, "input_dim")
        found = {key: args.pop(key) for key in keys if key in args}
        if "input_length" in found:
            found["input_shape"] = [found.pop("input_length")]
        if not found:
            return
        if self.layers or self.input_shape is not None:
            self.notes.append(f"line {line}: ignored an input shape given after the first layer")
            return
        if "batch_input_shape" in found:
            found["input_shape"] = list(found["batch_input_shape"])[1:]
        if "input_dim" in found:
            found["input_shape"] = [found["input_dim"]]
        self.set_input_shape(found["input_shape"], line)

    def set_input_shape(self, shape: Any, line: int) -> None:
        shape = [shape] if isinstance(shape, int) else _plain(shape)
        if not isinstance(shape, list) or not shape:
            raise _Unsupported(line, f"cannot read the input shape {shape!r}: write it as a tuple, e.g. (28, 28)")
        if any(v is None for v in shape):
            raise _Unsupported(line, f"the input shape {tuple(shape)} has a variable size (None): write the size")
        self.input_shape = shape


def _plain(value: Any) -> Any:
    """Tuples (as Keras code writes shapes and sizes) → lists, as the spec holds them, at any depth."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _channels_first(shape: list[Any] | None, layers: list[dict[str, Any]]) -> list[int] | None:
    """Keras (H, W, C) → (C, H, W); a 2-D input is an image for Flatten/pooling, else (T, F)."""
    if shape is None:
        return None
    if len(shape) == 2 and registry.LAYER_TYPES[layers[0]["type"]].reads_2d_as_image:
        return [1, shape[0], shape[1]]
    return [shape[2], shape[0], shape[1]] if len(shape) == 3 else list(shape)
