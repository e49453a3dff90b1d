"""Models by name.

Adding a model is one decorated function here plus an entry under `models:` in the
config. The function gets the number of classes and returns an `nn.Module` that maps a
float batch (N, 3, input_size, input_size) in [0, 1] to logits (N, num_classes). Its keyword
arguments are its options (e.g. `dropout`, `width`), registered with their defaults; the
config sets them per model entry (`models.<name>.options`), so several entries (variants,
`architecture: <registered name>`) share one builder, and `dropout` can be a grid axis.

A model that can start from ImageNet weights says so in its registration,
`pretrained=Pretrained(weights=<torchvision weights enum member>, backbone=<submodule>, ...)`
(see cvgrid.weights.Pretrained); the workflow downloads that file once and
`build_model(..., weights_path=...)` fills the backbone from it and puts the input
normalisation those weights expect in front of the model. Builders always build with random
weights: nothing here downloads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cvgrid.weights import Pretrained, WeightsError, load_backbone

if TYPE_CHECKING:
    from torch import nn

# torch is imported inside the builders, not here: the Snakefile reads this registry (model
# names, input sizes, weight URLs) and a dry run must not pay for importing torch.


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[int], nn.Module]
    input_size: int
    description: str
    pretrained: Pretrained | None = None  # where its ImageNet weights come from, if it has any
    options: dict = field(default_factory=dict)  # the builder's keyword arguments and their defaults


MODELS: dict[str, ModelSpec] = {}


def register(name: str, input_size: int, pretrained: Pretrained | None = None):
    """Add the decorated builder to the registry under `name`; its keyword-only arguments
    with their defaults are the model's options."""

    def add(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        defaults = build.__kwdefaults__ or {}
        MODELS[name] = ModelSpec(build, input_size, (build.__doc__ or "").strip(), pretrained, dict(defaults))
        return build

    return add


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def build_model(
    name: str, num_classes: int, weights_path: str | Path | None = None, normalize_input: bool | None = None,
    options: dict | None = None,
) -> nn.Module:
    """The model `name` for `num_classes` classes, mapping [0, 1] batches to logits.

    From scratch (random weights) by default. With the pretrained weights file `weights_path`
    (never downloaded here) the backbone is filled from it, and the batches are normalised
    inside the model as those weights expect (the registry's Pretrained.mean/std).
    `normalize_input` overrides whether the input is normalised (by default: with a weights
    file); predict passes True to rebuild a saved pretrained model for its state dict.
    `options`: the builder's options (ModelSpec.options) that differ from their defaults."""
    spec = get_spec(name)
    options = dict(options or {})
    unknown = [key for key in options if key not in spec.options]
    if unknown:
        raise ValueError(f"model {name!r} has no option {unknown[0]!r} (its options: {sorted(spec.options) or 'none'})")
    normalize_input = weights_path is not None if normalize_input is None else normalize_input
    if (weights_path is not None or normalize_input) and spec.pretrained is None:
        raise WeightsError(f"model {name!r} has no pretrained weights (its registry entry names none)")
    model = spec.build(num_classes, **options)
    if weights_path is not None:
        load_backbone(model, spec.pretrained, weights_path)
    if normalize_input:
        from cvgrid.layers import NormalizedInput  # torch: not when the workflow reads the registry

        model = NormalizedInput(model, spec.pretrained.mean, spec.pretrained.std)
    return model


def model_names() -> list[str]:
    return sorted(MODELS)


def count_trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def dense_head(in_features: int, num_classes: int, dropout: float = 0.3) -> nn.Sequential:
    """Dense(256, ReLU) | Dropout(0.3) | Dense(256, ReLU) | Dense(classes), as in the protocol."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(in_features, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(256, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, num_classes),
    )


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv2D(3x3, same, ELU) | MaxPool(3x3) | BatchNorm, the Keras model's layers.

    The ELU runs after the pooling: ELU is increasing, so max-pooling first gives the same
    values, and the ELU (PyTorch's CPU kernel is slow: 60% of model A's training step when it
    ran on the full-size maps) sees a ninth of the elements."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.MaxPool2d(3),
        nn.ELU(inplace=True),
        nn.BatchNorm2d(out_channels),
    )


@register("model_a", input_size=100)
def model_a(num_classes: int, *, dropout: float = 0.3, width: int = 32) -> nn.Module:
    """Reference model A: three conv blocks (32, 64, 128) and a dense head, 100 x 100 input.
    Options: dropout of the head; width, the first block's channels (then 2x and 4x)."""
    from torch import nn

    # 100 -> 33 -> 11 -> 3 after the three 3x3 max-pools.
    return nn.Sequential(
        conv_block(3, width),
        conv_block(width, 2 * width),
        conv_block(2 * width, 4 * width),
        nn.Flatten(),
        dense_head(4 * width * 3 * 3, num_classes, dropout),
    )


@register(
    "model_b",
    input_size=128,
    pretrained=Pretrained(
        "MobileNet_V2_Weights.IMAGENET1K_V1",
        url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        backbone="0",
        source_prefix="features.",
    ),
)
def model_b(num_classes: int, *, dropout: float = 0.3) -> nn.Module:
    """Reference model B: MobileNetV2 features | GlobalMaxPool | dense head, 128 x 128 input.
    Option: dropout of the head."""
    from torch import nn
    from torchvision.models import mobilenet_v2

    return nn.Sequential(
        mobilenet_v2(weights=None).features,
        nn.AdaptiveMaxPool2d(1),  # Keras' GlobalMaxPool2D
        nn.Flatten(),
        dense_head(1280, num_classes, dropout),
    )


@register(
    "resnet18",
    input_size=128,
    pretrained=Pretrained(
        "ResNet18_Weights.IMAGENET1K_V1",
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        skip=("fc.",),
    ),
)
def resnet18(num_classes: int) -> nn.Module:
    """ResNet-18 (torchvision) with a new fc layer for the classes, 128 x 128 input."""
    from torch import nn
    from torchvision.models import resnet18 as torchvision_resnet18

    model = torchvision_resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
