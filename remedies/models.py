"""The paper's networks (Keskar et al. 2017, Table 1 / Appendix B) as registered factories.

Every factory takes the data's per-sample input shape and class count, so one architecture name
works on MNIST, MNIST-1D or a user's `.npz`. Widths are multiplied by `width` for cheap CPU runs.
BatchNorm comes in two modes: `batch` (per-batch statistics at evaluation too, as the paper's
Keras code did with `mode=2`) and `running` (PyTorch's usual running averages).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Protocol

import torch
from torch import nn

from remedies.errors import ConfigError
from remedies.registry import MODELS as _MODELS
from remedies.registry import Registry

BNMode = Literal["batch", "running"]
BN_EPS = 1e-3  # Keras' BatchNormalization epsilon, which the paper's code used


class ModelFactory(Protocol):
    def __call__(
        self, input_shape: Sequence[int], num_classes: int, *, bn: BNMode, width: float
    ) -> nn.Module: ...


MODELS: Registry[ModelFactory] = _MODELS  # the one config.py validates names against


def _w(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _bn1d(n: int, bn: BNMode) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=BN_EPS, track_running_stats=(bn == "running"))


def _bn2d(n: int, bn: BNMode) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(n, eps=BN_EPS, track_running_stats=(bn == "running"))


def glorot_init(model: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for Linear/Conv layers, as Keras did by default."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _mlp(input_shape: Sequence[int], num_classes: int, depth: int, bn: BNMode, width: float):
    hidden = _w(512, width)
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(fan_in, hidden), _bn1d(hidden, bn), nn.ReLU()]
        fan_in = hidden
    layers.append(nn.Linear(fan_in, num_classes))
    return glorot_init(nn.Sequential(*layers))


def _image_shape(name: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) == 2:
        h, w = input_shape
        return (1, h, w)  # (H, W) grey images
    if len(input_shape) == 3:
        c, h, w = input_shape
        return (c, h, w)
    raise ConfigError(
        "model.name",
        f"{name} needs image-shaped samples (C, H, W) or (H, W), but the data's samples have "
        f"shape {tuple(input_shape)}; use F1 or F2 for vector data",
    )


@MODELS.register("F1")
def f1(input_shape, num_classes, *, bn: BNMode = "running", width: float = 1.0) -> nn.Module:
    """F1 (MNIST): input → 5 × (Linear 512, BN, ReLU) → classes; any input shape is flattened."""
    return _mlp(input_shape, num_classes, 5, bn, width)


@MODELS.register("F2")
def f2(input_shape, num_classes, *, bn: BNMode = "running", width: float = 1.0) -> nn.Module:
    """F2 (TIMIT): input → 7 × (Linear 512, BN, ReLU) → classes."""
    return _mlp(input_shape, num_classes, 7, bn, width)


def _shallow_conv(name, input_shape, num_classes, bn: BNMode, width: float) -> nn.Module:
    c, h, w = _image_shape(name, input_shape)
    ch, d1, d2 = _w(64, width), _w(384, width), _w(192, width)
    layers: list[nn.Module] = []
    for _ in range(2):
        # 'same' 3×3/2 max-pooling: padding 1 gives ceil(H/2), as Keras' padding='same' does.
        layers += [nn.Conv2d(c, ch, 5, padding=2), _bn2d(ch, bn), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        c, h, w = ch, (h + 1) // 2, (w + 1) // 2
    layers += [
        nn.Flatten(),
        nn.Linear(c * h * w, d1),
        _bn1d(d1, bn),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(d1, d2),
        _bn1d(d2, bn),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(d2, num_classes),
    ]
    return glorot_init(nn.Sequential(*layers))


VGG_STACKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _vgg(name, input_shape, num_classes, bn: BNMode, width: float) -> nn.Module:
    c, h, w = _image_shape(name, input_shape)
    layers: list[nn.Module] = []
    for s, stack in enumerate(VGG_STACKS):
        for i, out in enumerate(stack):
            out = _w(out, width)
            layers += [nn.Conv2d(c, out, 3, padding=1), _bn2d(out, bn), nn.ReLU()]
            c = out
            # dropout as in the authors' code: 0.3 after the very first conv, 0.4 after every
            # non-final conv of stacks 2-5
            if s == 0 and i == 0:
                layers.append(nn.Dropout(0.3))
            elif s > 0 and i < len(stack) - 1:
                layers.append(nn.Dropout(0.4))
        # ceil_mode keeps odd sizes (e.g. 28×28 MNIST) alive through five poolings
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        h, w = -(-h // 2), -(-w // 2)
    d = _w(512, width)
    layers += [
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(c * h * w, d),
        _bn1d(d, bn),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(d, num_classes),
    ]
    return glorot_init(nn.Sequential(*layers))


@MODELS.register("C1")
def c1(input_shape, num_classes, *, bn: BNMode = "running", width: float = 1.0) -> nn.Module:
    """C1 (CIFAR-10): the shallow AlexNet-like convnet."""
    return _shallow_conv("C1", input_shape, num_classes, bn, width)


@MODELS.register("C3")
def c3(input_shape, num_classes, *, bn: BNMode = "running", width: float = 1.0) -> nn.Module:
    """C3 (CIFAR-100): the same network as C1."""
    return _shallow_conv("C3", input_shape, num_classes, bn, width)


@MODELS.register("C2")
def c2(input_shape, num_classes, *, bn: BNMode = "running", width: float = 1.0) -> nn.Module:
    """C2 (CIFAR-10): VGG-16-like with BN and the authors' dropout placement."""
    return _vgg("C2", input_shape, num_classes, bn, width)


@MODELS.register("C4")
def c4(input_shape, num_classes, *, bn: BNMode = "running", width: float = 1.0) -> nn.Module:
    """C4 (CIFAR-100): the same network as C2."""
    return _vgg("C4", input_shape, num_classes, bn, width)


def create_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    bn: BNMode = "running",
    width: float = 1.0,
) -> nn.Module:
    """The single way to build a network by name."""
    return MODELS.get(name, "model.name")(input_shape, num_classes, bn=bn, width=width)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def output_shape(model: nn.Module, input_shape: Sequence[int], batch: int = 2) -> tuple[int, ...]:
    model.eval()
    return tuple(model(torch.zeros(batch, *input_shape)).shape)
