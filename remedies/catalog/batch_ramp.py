"""Batch-size ramp (Smith et al. 2018, "Don't decay the learning rate, increase the batch size").

Instead of decaying the lr at the milestones, the batch grows by `factor` at each one. The run's
configured batch is the final (largest) batch, so an LB run starts at B / factor^m for m
milestones and reaches B at the last one; the optimiser state carries over at every switch.
Milestones are fractions of the (possibly adapted) epoch budget.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from remedies.catalog import register
from remedies.hooks import Remedy, RemedyConfig, TrainContext

MIN_BATCH = 2  # BN needs two samples for a variance


class BatchRampConfig(RemedyConfig):
    factor: int = Field(2, ge=2, le=10)  # growth at each milestone (Smith et al.: 2, 5, 10)
    milestones: list[float] = Field([0.5, 0.75], min_length=1, max_length=4)  # budget fractions

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(not 0 < m < 1 for m in v) or sorted(set(v)) != v:
            raise ValueError(f"must be strictly increasing fractions in (0, 1), but got {v}")
        return v


@register
class BatchRamp(Remedy[BatchRampConfig]):
    name = "batch_ramp"
    Config = BatchRampConfig

    def comparable_from(self, ctx: TrainContext) -> int:
        return round(max(self.cfg.milestones) * ctx.epochs)  # the ramp's last step

    def batch_size(self, epoch: int, batch_size: int, ctx: TrainContext) -> int:
        passed = sum(epoch >= round(m * ctx.epochs) for m in self.cfg.milestones)
        remaining = len(self.cfg.milestones) - passed
        return max(MIN_BATCH, batch_size // self.cfg.factor**remaining)
