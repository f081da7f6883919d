"""Adversarial (robust) training with FGSM (Goodfellow et al. 2014; Keskar et al. 2017, App. E.3).

Loss: (1 − a)·L(x) + a·L(x + ε·sign ∇ₓL(x)). The input gradient comes from a probe forward whose
BN running statistics are frozen, so `running`-mode BN sees this step's clean batch once (in the
main forward) and the adversarial batch once. ε is in input units (pixels in [0, 1]; raw signal
values for 1-D data); adversarial images are clamped back to [0, 1].
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from remedies.catalog import register
from remedies.catalog._bn import frozen_bn_stats
from remedies.catalog.augment import is_image
from remedies.hooks import REGULARISER_SHARE, LossFn, Remedy, RemedyConfig, TrainContext


class AdversarialConfig(RemedyConfig):
    eps: float = Field(0.01, ge=0.005, le=0.1)  # FGSM step ε in input units (search log)
    weight: float = Field(0.5, ge=0.0, le=1.0)  # a: share of the adversarial loss


def fgsm(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, eps: float
) -> torch.Tensor:
    """x + ε·sign ∇ₓ L(model(x), y), detached. Parameters receive no gradient from the probe."""
    probe = x.detach().requires_grad_(True)
    with frozen_bn_stats(model):
        (g,) = torch.autograd.grad(loss_fn(model(probe), y), probe)
    return (x.detach() + eps * g.sign()).detach()


@register
class Adversarial(Remedy[AdversarialConfig]):
    name = "adversarial"
    Config = AdversarialConfig

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        loss: torch.Tensor,
        ctx: TrainContext,
    ) -> torch.Tensor:
        a = self.cfg.weight
        if a == 0:
            return loss
        x_adv = fgsm(model, ctx.loss_fn, x, y, self.cfg.eps)
        if is_image(ctx.input_shape):
            x_adv = x_adv.clamp_(0.0, 1.0)
        return (1 - a) * loss + a * ctx.loss_fn(model(x_adv), y)

    def comparable_from(self, ctx: TrainContext) -> int:
        """A regulariser changes the curve throughout: compared from half the budget on."""
        return math.ceil(REGULARISER_SHARE * ctx.epochs)
