"""Train longer — regime adaptation (Hoffer et al. 2017).

An LB run with the SB epoch budget takes B/B₀ times fewer steps; Hoffer et al. attribute much of
the gap to that. The epoch budget is multiplied by `factor`, by default B/B₀ (the same number of
steps as SB at B₀), capped at `max_factor` so a huge batch cannot explode the run time.
"""

from __future__ import annotations

import math

from pydantic import Field

from remedies.catalog import register
from remedies.hooks import Remedy, RemedyConfig, TrainContext


class TrainLongerConfig(RemedyConfig):
    base_batch: int = Field(64, ge=1)  # B₀: the small batch whose step count LB should match
    factor: float | None = Field(None, ge=1.0, le=8.0)  # explicit multiplier (overrides B/B₀)
    max_factor: float = Field(8.0, ge=1.0, le=8.0)  # cap on the automatic B/B₀


def epoch_factor(batch: int, cfg: TrainLongerConfig) -> float:
    if cfg.factor is not None:
        return cfg.factor
    return min(max(batch / cfg.base_batch, 1.0), cfg.max_factor)


@register
class TrainLonger(Remedy[TrainLongerConfig]):
    name = "train_longer"
    Config = TrainLongerConfig

    def epochs(self, epochs: int, ctx: TrainContext) -> int:
        return max(1, math.ceil(epochs * epoch_factor(ctx.batch_size, self.cfg) - 1e-9))
