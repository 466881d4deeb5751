"""Spec → readable, standalone PyTorch source. Torch-free: it only writes text.

The generated class mirrors `app.engine.build` (same shapes, same parameter count) but reads like
code a person would write: static padding where Keras's "same" needs it, plain `forward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.architectures import spec as s
from app.architectures.spec import ArchitectureSpec, pair, parse_spec
from app.architectures.summary import summarize

_PREFIX = {
    "Dense": "dense", "Conv2D": "conv", "MaxPooling2D": "pool", "AveragePooling2D": "pool",
    "Dropout": "dropout", "BatchNormalization": "norm", "SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru",
    "Embedding": "embedding", "Pretrained": "backbone",
}
_CLASSIFIER = {"resnet": "fc", "mobilenet": "classifier", "efficientnet": "classifier"}


def to_pytorch_source(spec: ArchitectureSpec | dict, input_shape: Sequence[int] | None = None,
                      class_name: str = "Model") -> str:
    """Readable PyTorch source defining `class <class_name>(nn.Module)`, runnable as a script."""
    parsed = parse_spec(spec)
    summary = summarize(parsed, input_shape)
    writer = _Writer(summary.output_activation)
    shape = tuple(summary.input_shape)
    for index, layer in enumerate(parsed.layers):
        writer.layer(layer, shape, is_last=index == len(parsed.layers) - 1)
        shape = tuple(summary.layers[index].output_shape)
    return writer.source(class_name, summary.input_shape, summary.input_dtype, summary.output_shape)


class _Writer:
    def __init__(self, output_activation: str | None):
        self.output_activation = output_activation
        self.init: list[str] = []
        self.forward: list[str] = []
        self.counts: dict[str, int] = {}
        self.frozen: list[str] = []
        self.uses_torchvision = False

    def name(self, layer_type: str) -> str:
        prefix = _PREFIX[layer_type]
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}{self.counts[prefix]}"

    def layer(self, layer: Any, shape: tuple[int, ...], is_last: bool) -> None:
        act = getattr(layer, "activation", "linear")
        if is_last and self.output_activation is not None:
            self.forward.append(f"# The final {act} is left to the loss: this returns logits")
            self.forward.append("# (nn.CrossEntropyLoss applies log-softmax itself).")
            act = "linear"
        getattr(self, f"_{layer.type.lower()}")(layer, shape, act)

    def _assign(self, expression: str, act: str, dim: int = -1) -> None:
        self.forward.append(f"x = {_activate(expression, act, dim)}")

    def _dense(self, layer: s.Dense, shape: tuple[int, ...], act: str) -> None:
        name = self.name("Dense")
        bias = "" if layer.use_bias else ", bias=False"
        self.init.append(f"self.{name} = nn.Linear({shape[-1]}, {layer.units}{bias})")
        self._assign(f"self.{name}(x)", act)

    def _conv2d(self, layer: s.Conv2D, shape: tuple[int, ...], act: str) -> None:
        name = self.name("Conv2D")
        kernel, strides = pair(layer.kernel_size), pair(layer.strides)
        options = f", stride={_tuple(strides)}" if strides != (1, 1) else ""
        pads = _same_pads(shape, kernel, strides) if layer.padding == "same" else (0, 0, 0, 0)
        symmetric = pads[0] == pads[1] and pads[2] == pads[3]
        if any(pads) and symmetric:
            options += f", padding={_tuple((pads[2], pads[0]))}"
        options += "" if layer.use_bias else ", bias=False"
        self.init.append(f"self.{name} = nn.Conv2d({shape[0]}, {layer.filters}, {_tuple(kernel)}{options})")
        if any(pads) and not symmetric:
            self.forward.append(f"# Keras 'same' padding puts the extra pixel at the bottom/right: {pads}")
            self._assign(f"self.{name}(nn.functional.pad(x, {pads}))", act, dim=1)
        else:
            self._assign(f"self.{name}(x)", act, dim=1)

    def _maxpooling2d(self, layer: s.MaxPooling2D, shape: tuple[int, ...], act: str) -> None:
        name, window, strides, pads = self._pool_args(layer, shape)
        self.init.append(f"self.{name} = nn.MaxPool2d({_tuple(window)}, stride={_tuple(strides)})")
        if any(pads):
            self.forward.append(f"x = self.{name}(nn.functional.pad(x, {pads}, value=float(\"-inf\")))")
        else:
            self.forward.append(f"x = self.{name}(x)")

    def _averagepooling2d(self, layer: s.AveragePooling2D, shape: tuple[int, ...], act: str) -> None:
        name, window, strides, pads = self._pool_args(layer, shape)
        self.init.append(f"self.{name} = nn.AvgPool2d({_tuple(window)}, stride={_tuple(strides)})")
        if any(pads):
            # Keras averages over the real pixels only: divide by the padded window's pixel count.
            self.forward.append("ones = torch.ones_like(x[:1, :1])")
            self.forward.append(f"summed = self.{name}(nn.functional.pad(x, {pads}))")
            self.forward.append(f"x = summed / self.{name}(nn.functional.pad(ones, {pads}))")
        else:
            self.forward.append(f"x = self.{name}(x)")

    def _pool_args(self, layer: Any, shape: tuple[int, ...]) -> tuple[str, Any, Any, tuple[int, ...]]:
        window = pair(layer.pool_size)
        strides = pair(layer.strides) if layer.strides is not None else window
        pads = _same_pads(shape, window, strides) if layer.padding == "same" else (0, 0, 0, 0)
        return self.name(layer.type), window, strides, pads

    def _globalaveragepooling2d(self, layer: Any, shape: tuple[int, ...], act: str) -> None:
        self.forward.append("x = x.mean(dim=(2, 3))")

    def _flatten(self, layer: Any, shape: tuple[int, ...], act: str) -> None:
        self.forward.append("x = torch.flatten(x, 1)")

    def _dropout(self, layer: s.Dropout, shape: tuple[int, ...], act: str) -> None:
        name = self.name("Dropout")
        self.init.append(f"self.{name} = nn.Dropout({layer.rate!r})")
        self.forward.append(f"x = self.{name}(x)")

    def _batchnormalization(self, layer: s.BatchNormalization, shape: tuple[int, ...], act: str) -> None:
        name = self.name("BatchNormalization")
        kind = "BatchNorm2d" if len(shape) == 3 else "BatchNorm1d"
        channels = shape[0] if len(shape) == 3 else shape[-1]
        momentum = round(1.0 - layer.momentum, 6)
        self.init.append(f"# Keras momentum {layer.momentum} is PyTorch momentum {momentum}.")
        self.init.append(f"self.{name} = nn.{kind}({channels}, eps={layer.epsilon!r}, momentum={momentum!r})")
        if len(shape) == 2:  # normalize each feature of (N, T, F): PyTorch wants (N, F, T)
            self.forward.append(f"x = self.{name}(x.transpose(1, 2)).transpose(1, 2)")
        else:
            self.forward.append(f"x = self.{name}(x)")

    def _activation(self, layer: s.Activation, shape: tuple[int, ...], act: str) -> None:
        if act != "linear":
            self._assign("x", act, dim=1 if len(shape) == 3 else -1)

    def _recurrent(self, layer: Any, shape: tuple[int, ...], act: str) -> None:
        name = self.name(layer.type)
        module = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}[layer.type]
        options = ", bidirectional=True" if layer.bidirectional else ""
        if layer.type == "SimpleRNN" and layer.activation != "tanh":
            options += f", nonlinearity={layer.activation!r}"
        self.init.append(f"self.{name} = nn.{module}({shape[-1]}, {layer.units}, batch_first=True{options})")
        if layer.return_sequences:
            self.forward.append(f"x, _ = self.{name}(x)")
            return
        state = "(h_n, _)" if layer.type == "LSTM" else "h_n"
        self.forward.append(f"_, {state} = self.{name}(x)")
        if layer.bidirectional:
            self.forward.append("# Final states of the forward and the backward direction, side by side.")
            self.forward.append("x = torch.cat([h_n[-2], h_n[-1]], dim=1)")
        else:
            self.forward.append("x = h_n[-1]  # the final state")

    _simplernn = _lstm = _gru = _recurrent

    def _embedding(self, layer: s.Embedding, shape: tuple[int, ...], act: str) -> None:
        name = self.name("Embedding")
        self.init.append(f"self.{name} = nn.Embedding({layer.input_dim}, {layer.output_dim})")
        self.forward.append(f"x = self.{name}(x)")

    def _reshape(self, layer: s.Reshape, shape: tuple[int, ...], act: str) -> None:
        self.forward.append(f"x = x.reshape(x.shape[0], {', '.join(str(v) for v in layer.target_shape)})")

    def _pretrained(self, layer: s.Pretrained, shape: tuple[int, ...], act: str) -> None:
        self.uses_torchvision = True
        name = self.name("Pretrained")
        weights = '"DEFAULT"' if layer.weights == "imagenet" else "None"
        if layer.weights.startswith("file:"):
            self.init.append(f"# Trainboard loads the weights from {layer.weights[5:]!r} (data directory);")
            self.init.append(f"# load yours with self.{name}.load_state_dict(torch.load(path)).")
        self.init.append(f"self.{name} = torchvision.models.{layer.backbone}(weights={weights})")
        head = next(attr for prefix, attr in _CLASSIFIER.items() if layer.backbone.startswith(prefix))
        self.init.append(f"self.{name}.{head} = nn.Identity()  # keep the pooled features, drop the classifier")
        if not layer.trainable:
            self.init.append(f"for parameter in self.{name}.parameters():")
            self.init.append("    parameter.requires_grad = False  # frozen: only the new layers learn")
            self.frozen.append(name)
        self.forward.append(f"x = self.{name}(x)")

    def source(self, class_name: str, input_shape: list[int], input_dtype: str, output_shape: list[int]) -> str:
        imports = ["import torch", *(["import torchvision"] if self.uses_torchvision else []), "from torch import nn"]
        lines = [
            f'"""{class_name}: generated by Trainboard from an architecture spec.',
            "",
            f"Input (channels first, without the batch axis): {tuple(input_shape)}; "
            f"output: {tuple(output_shape)}.",
            '"""',
            "",
            *imports,
            "",
            "",
            f"class {class_name}(nn.Module):",
            "    def __init__(self) -> None:",
            "        super().__init__()",
            *(f"        {line}" for line in self.init),
            "",
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
            *(f"        {line}" for line in self.forward),
            "        return x",
        ]
        if self.frozen:
            lines += [
                "",
                "    def train(self, mode: bool = True) -> nn.Module:",
                "        super().train(mode)",
                "        # A frozen backbone keeps its BatchNorm statistics: always in eval mode.",
                *(f"        self.{name}.eval()" for name in self.frozen),
                "        return self",
            ]
        dtype = ", dtype=torch.long" if input_dtype == "int64" else ""
        lines += [
            "",
            "",
            'if __name__ == "__main__":',
            f"    model = {class_name}().eval()  # eval: BatchNorm cannot train on a batch of one",
            f"    x = torch.zeros(1, {', '.join(str(v) for v in input_shape)}{dtype})",
            "    with torch.no_grad():",
            "        print(tuple(model(x).shape))",
            '    print(sum(p.numel() for p in model.parameters()), "parameters")',
        ]
        return "\n".join(lines) + "\n"


def _activate(expression: str, act: str, dim: int) -> str:
    simple = {"relu": "torch.relu", "sigmoid": "torch.sigmoid", "tanh": "torch.tanh",
              "gelu": "nn.functional.gelu", "elu": "nn.functional.elu"}
    if act == "linear":
        return expression
    if act == "softmax":
        return f"torch.softmax({expression}, dim={dim})"
    if act == "leaky_relu":
        return f"nn.functional.leaky_relu({expression}, 0.2)"  # Keras 3's default slope
    return f"{simple[act]}({expression})"


def _same_pads(shape: tuple[int, ...], window: tuple[int, int], strides: tuple[int, int]) -> tuple[int, ...]:
    """Keras 'same' padding as F.pad's (left, right, top, bottom): the extra pixel goes right/bottom."""
    pads: list[int] = []
    for size, k, stride in ((shape[2], window[1], strides[1]), (shape[1], window[0], strides[0])):
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def _tuple(values: Sequence[int]) -> str:
    return str(values[0]) if values[0] == values[1] else f"({values[0]}, {values[1]})"
