"""Learning-rate scaling with the batch size, with gradual warmup (Goyal et al. 2017; Hoffer et
al. 2017).

Target lr = lr₀ · multiplier · (B / B₀)^p with p = 0 / 0.5 / 1 for rule none / sqrt / linear, where
B is the batch size of the current epoch (so it composes with warm_start) and B₀ the batch size at
which lr₀ was tuned. Over the first `warmup_epochs` the lr rises linearly, per step, from lr₀ to
the target (Goyal et al.'s gradual warmup); `lr(t)` is a pure function of the fractional epoch t.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from remedies.catalog import register
from remedies.hooks import Remedy, RemedyConfig, TrainContext

POWER = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


class LrScalingConfig(RemedyConfig):
    rule: Literal["none", "sqrt", "linear"] = "sqrt"  # exponent p of B/B₀ (Hoffer: sqrt)
    base_batch: int = Field(64, ge=1)  # B₀: the batch size lr₀ was tuned for (our SB: 64)
    multiplier: float = Field(1.0, ge=0.25, le=4.0)  # extra factor on the target (search log)
    warmup_epochs: float = Field(2.0, ge=0.0, le=10.0)  # linear ramp lr₀ → target (Goyal: 5)


def scaled_lr(lr0: float, t: float, batch: int, cfg: LrScalingConfig) -> float:
    """The lr at fractional epoch t for batch size `batch`."""
    target = lr0 * cfg.multiplier * (batch / cfg.base_batch) ** POWER[cfg.rule]
    if cfg.warmup_epochs > 0 and t < cfg.warmup_epochs:
        return lr0 + (target - lr0) * t / cfg.warmup_epochs
    return target


@register
class LrScaling(Remedy[LrScalingConfig]):
    name = "lr_scaling"
    Config = LrScalingConfig

    def comparable_from(self, ctx: TrainContext) -> int:
        return math.ceil(self.cfg.warmup_epochs)  # the warm-up

    def lr(self, lr: float, t: float, ctx: TrainContext) -> float:
        return scaled_lr(lr, t, ctx.current_batch_size or ctx.batch_size, self.cfg)
