"""Pretrained torchvision backbones without their classifier: images → pooled feature vector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import field_validator

from app.layers.base import LayerSpec, Out, ShapeProblem, param
from app.layers.geometry import fmt

if TYPE_CHECKING:
    from torch import nn

    from app.layers.base import BuildContext, Shape, SourceWriter


@dataclass(frozen=True)
class Backbone:
    """A backbone without its classifier head, measured once from torchvision (weights=None);
    tests/architectures/test_backbones.py checks every number against torchvision."""

    features: int  # the pooled feature vector's length
    params: int
    flops_224: int  # FLOPs per 224x224 image; other sizes scale by area (an approximation)
    head: str  # torchvision's classifier attribute, replaced by identity
    keras: str = ""  # the keras.applications class, when Keras has this backbone
    # The smallest input side accepted: smaller images leave almost nothing of the backbone's 32x
    # downsampling to learn from (torchvision would run, but uselessly).
    min_size: int = 32


BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(512, 11_176_512, 3_627_122_688, "fc"),
    "resnet34": Backbone(512, 21_284_672, 7_326_498_816, "fc"),
    "resnet50": Backbone(2048, 23_508_032, 8_174_272_512, "fc", "ResNet50"),
    "mobilenet_v3_small": Backbone(576, 927_008, 109_793_152, "classifier", "MobileNetV3Small"),
    "mobilenet_v3_large": Backbone(960, 2_971_952, 428_161_920, "classifier", "MobileNetV3Large"),
    "efficientnet_b0": Backbone(1280, 4_007_548, 769_069_504, "classifier", "EfficientNetB0"),
}
BackboneName = Literal[tuple(BACKBONES)]  # type: ignore[valid-type]
# keras.applications class → backbone
APPLICATIONS = {info.keras: name for name, info in BACKBONES.items() if info.keras}


class Pretrained(LayerSpec):
    type: Literal["Pretrained"] = "Pretrained"
    backbone: BackboneName = param(example="resnet18")
    # "imagenet" | "none" (random init) | "file:<path relative to the data dir>"
    weights: str = param("imagenet", hint="imagenet, none or file:<path>")
    trainable: bool = False  # frozen by default: the usual first step of transfer learning

    family: ClassVar[str] = "pretrained"
    source_prefix: ClassVar[str] = "backbone"
    reads_2d_as_image: ClassVar[bool] = True

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, value: str) -> str:
        if value in ("imagenet", "none"):
            return value
        if value.startswith("file:"):
            path = value[len("file:") :]
            if not path or path.startswith(("/", "\\")) or ".." in path.replace("\\", "/").split("/"):
                raise ValueError("use 'file:<path inside the data directory>', e.g. 'file:weights/resnet18.pt'")
            return value
        raise ValueError("use 'imagenet', 'none' or 'file:<path inside the data directory>'")

    def infer(self, shape: Shape, index: int) -> Out:
        info = BACKBONES[self.backbone]
        name = f"Pretrained {self.backbone}"
        if len(shape) != 3:
            raise ShapeProblem(f"{name} expects 3-channel images (3, height, width); the input is {fmt(shape)}")
        c, h, w = shape
        if c != 3:
            raise ShapeProblem(f"{name} expects 3-channel images; the input has {c}: use a colour data set, or add "
                               "Conv2D(filters=3, kernel_size=1) before it to map the channels to 3")
        if min(h, w) < info.min_size:
            raise ShapeProblem(f"{name} needs images at least {info.min_size}x{info.min_size}; the input is "
                               f"{h}x{w}: use larger images or a smaller model")
        flops = round(info.flops_224 * (h * w) / (224 * 224))
        return Out((info.features,), info.params, info.params if self.trainable else 0, flops)

    def describe(self) -> str:
        return f"{self.backbone} ({self.weights.split(':')[0]}, {'trainable' if self.trainable else 'frozen'})"

    def build(self, shape: Shape, context: BuildContext) -> nn.Module:
        from app.layers.torch_modules import PretrainedBackbone

        return PretrainedBackbone(self.backbone, self.weights, self.trainable, context.weights_root)

    def emit(self, out: SourceWriter, shape: Shape, act: str) -> None:
        out.uses_torchvision = True
        name = out.name(self.source_prefix)
        weights = '"DEFAULT"' if self.weights == "imagenet" else "None"
        if self.weights.startswith("file:"):
            out.init.append(f"# Trainboard loads the weights from {self.weights[5:]!r} (data directory);")
            out.init.append(f"# load yours with self.{name}.load_state_dict(torch.load(path)).")
        out.init.append(f"self.{name} = torchvision.models.{self.backbone}(weights={weights})")
        head = BACKBONES[self.backbone].head
        out.init.append(f"self.{name}.{head} = nn.Identity()  # keep the pooled features, drop the classifier")
        if not self.trainable:
            out.init.append(f"for parameter in self.{name}.parameters():")
            out.init.append("    parameter.requires_grad = False  # frozen: only the new layers learn")
            out.frozen.append(name)
        out.forward.append(f"x = self.{name}(x)")
