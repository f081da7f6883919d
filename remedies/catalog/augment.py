"""Data augmentation (Keskar et al. 2017, App. E.1), applied to whole batches on the device.

Images (B, C, H, W): per-sample random horizontal flip, rotation ≤ `rotation`°, translation ≤
`translation` × size — kornia draws per-sample parameters and applies one affine warp per batch.
1-D signals (B, L): per-sample random integer shift ≤ `shift` × L (edge values repeated), amplitude
scaling by U(1 − `scale`, 1 + `scale`) and additive Gaussian noise of std `noise` (input units).
Only training batches are augmented: evaluation never calls the hook, and it is a no-op in eval
mode.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from remedies.catalog import register
from remedies.hooks import REGULARISER_SHARE, Remedy, RemedyConfig, TrainContext


class AugmentConfig(RemedyConfig):
    rotation: float = Field(10.0, ge=0.0, le=15.0)  # max rotation in degrees (paper: 10)
    translation: float = Field(0.2, ge=0.0, le=0.2)  # max shift as a fraction of H and W (paper)
    # probability of a horizontal flip (images only); pydantic validates float literals, which the
    # typing spec (and so mypy) does not allow in Literal
    flip: Literal[0.0, 0.5] = 0.5  # type: ignore[valid-type]
    shift: float = Field(0.1, ge=0.0, le=0.2)  # 1-D: max shift as a fraction of the length
    scale: float = Field(0.1, ge=0.0, le=0.5)  # 1-D: amplitude × U(1 − scale, 1 + scale)
    noise: float = Field(0.05, ge=0.0, le=0.5)  # 1-D: Gaussian noise std, in input units


def is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) >= 2  # (H, W) or (C, H, W); vectors and 1-D signals are (L,)


def shift_1d(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Shift each row of (B, L) by its own integer offset (right if > 0), repeating edge values.

    One gather for the whole batch instead of a Python loop of `torch.roll`s.
    """
    length = x.shape[-1]
    idx = torch.arange(length, device=x.device).unsqueeze(0) - offsets.unsqueeze(1)
    return x.gather(-1, idx.clamp_(0, length - 1))


@register
class Augment(Remedy[AugmentConfig]):
    name = "augment"
    Config = AugmentConfig

    def setup(self, ctx: TrainContext) -> None:
        c = self.cfg
        self.image = is_image(ctx.input_shape)
        if self.image:
            import kornia.augmentation as K  # imported lazily: only image runs pay for it

            t = c.translation
            # p=1: every sample gets its own random angle/offset (possibly ~0); one warp per batch
            self.affine: nn.Module | None = (
                K.RandomAffine(degrees=c.rotation, translate=(t, t), p=1.0)
                if c.rotation > 0 or t > 0
                else None
            )
            self.hflip: nn.Module | None = K.RandomHorizontalFlip(p=c.flip) if c.flip > 0 else None

    def augment(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext):
        if not ctx.model.training:
            return x, y
        return (self._image(x) if self.image else self._signal(x)), y

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x4 = x if x.dim() == 4 else x.unsqueeze(1)  # (B, H, W) grey → (B, 1, H, W)
        if self.hflip is not None:
            x4 = self.hflip(x4)
        if self.affine is not None:
            x4 = self.affine(x4)
        return x4.reshape(shape)

    def _signal(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        b, length = x.shape[0], x.shape[-1]
        flat = x.reshape(b, -1) if x.dim() > 2 else x
        if c.shift > 0:
            k = int(c.shift * length)
            offsets = torch.randint(-k, k + 1, (b,), device=x.device)
            flat = shift_1d(flat, offsets)
        if c.scale > 0:
            flat = flat * torch.empty(b, 1, device=x.device).uniform_(1 - c.scale, 1 + c.scale)
        if c.noise > 0:
            flat = flat + c.noise * torch.randn_like(flat)
        return flat.reshape(x.shape)

    def comparable_from(self, ctx: TrainContext) -> int:
        """A regulariser changes the curve throughout: compared from half the budget on."""
        return math.ceil(REGULARISER_SHARE * ctx.epochs)
