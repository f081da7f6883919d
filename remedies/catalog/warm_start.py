"""Small-batch warm start (Keskar et al. 2017, §4 and Fig. 5): SB iterates first, then LB.

The first k epochs — `epochs`, or `fraction` of the (possibly adapted) epoch budget — run at
`sb_batch`; the rest at the configured large batch. The optimiser and its state (ADAM moments)
carry over unchanged, so the switch is a change of batch only. Each epoch's batch size is in the
per-epoch metrics (`batch_size`, and `warm_start` = 1 during the warm phase).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from remedies.catalog import register
from remedies.hooks import Remedy, RemedyConfig, TrainContext

DEFAULT_FRACTION = 0.25  # a quarter of the budget at SB


class WarmStartConfig(RemedyConfig):
    sb_batch: int = Field(64, ge=32, le=512)  # the small batch of the warm phase (search log₂)
    fraction: float | None = Field(None, ge=0.0, le=0.5)  # warm share of the budget (default 0.25)
    epochs: int | None = Field(None, ge=0)  # ... or an exact number of warm epochs

    @model_validator(mode="after")
    def _one_of(self) -> WarmStartConfig:
        if self.epochs is not None and self.fraction is not None:
            raise ValueError("set either epochs or fraction, not both")
        if self.epochs is None and self.fraction is None:
            self.fraction = DEFAULT_FRACTION
        return self


@register
class WarmStart(Remedy[WarmStartConfig]):
    name = "warm_start"
    Config = WarmStartConfig

    def warm_epochs(self, ctx: TrainContext) -> int:
        if self.cfg.epochs is not None:
            return min(self.cfg.epochs, ctx.epochs)
        return round((self.cfg.fraction or 0.0) * ctx.epochs)

    def batch_size(self, epoch: int, batch_size: int, ctx: TrainContext) -> int:
        return min(self.cfg.sb_batch, batch_size) if epoch < self.warm_epochs(ctx) else batch_size

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> dict[str, float]:
        return {"warm_start": float(epoch < self.warm_epochs(ctx))}

    def comparable_from(self, ctx: TrainContext) -> int:
        return self.warm_epochs(ctx)  # the SB phase
