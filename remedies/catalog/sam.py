"""Sharpness-aware minimisation (Foret et al. 2021) and adaptive SAM (Kwon et al. 2021).

Each step: gradient g at w; ascend to w + e with e = ρ·g/‖g‖ (SAM) or, adaptively,
e = ρ·T²g/‖Tg‖ with T = |w| + η elementwise (ASAM); take the gradient there; return to w and let
the run's optimiser step with that gradient. A zero gradient gives e = 0 (no division by zero).
Data parallel: the ascent starts from the gradient averaged over the workers (one worker at the
global batch), or from each worker's own with `m_sharpness`. The second forward runs with BN
running statistics frozen, so `running`-mode BN is updated once
per step, from the clean batch at w.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from remedies.catalog import register
from remedies.catalog._bn import frozen_bn_stats
from remedies.hooks import Remedy, RemedyConfig, TrainContext

NORM_EPS = 1e-12  # guards ‖g‖ = 0


class SAMConfig(RemedyConfig):
    adaptive: bool = False  # ASAM: scale-invariant radius (Kwon et al. 2021)
    eta: float = Field(0.01, ge=0.0, le=0.1)  # ASAM: T = |w| + η (search {0, 0.01})
    # radius; default 0.05 (SAM) or 0.5 (ASAM); validated after `adaptive`, which sets its range
    rho: float | None = Field(None, validate_default=True)
    # data parallel (train.workers > 1): false = one ascent from the all-reduced gradient (as
    # one worker at the global batch); true = each worker ascends from its own share's gradient
    # (m-sharpness with m = batch / workers, Foret et al. §4.1), then the descent is averaged
    m_sharpness: bool = False

    @field_validator("rho")
    @classmethod
    def _rho_range(cls, rho: float | None, info: ValidationInfo) -> float:
        adaptive = info.data.get("adaptive", False)
        lo, hi, default = (0.1, 5.0, 0.5) if adaptive else (0.01, 0.5, 0.05)
        if rho is None:
            return default
        if not lo <= rho <= hi:
            kind = "ASAM" if adaptive else "SAM"
            raise ValueError(f"must be in [{lo}, {hi}] for {kind}, but got rho={rho}")
        return rho


def ascent(
    params: list[nn.Parameter], rho: float, adaptive: bool, eta: float
) -> list[torch.Tensor]:
    """The perturbation e for each parameter from its current `.grad` (zeros where None)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if adaptive:
        scales = [p.detach().abs() + eta for p in params]
        tg = [t * g for t, g in zip(scales, grads, strict=True)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v) for v in tg]))
        return [rho * t * v / (norm + NORM_EPS) for t, v in zip(scales, tg, strict=True)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    return [rho * g / (norm + NORM_EPS) for g in grads]


@register
class SAM(Remedy[SAMConfig]):
    name = "sam"
    Config = SAMConfig
    replaces_step = True

    def step(self, closure: Callable[[], torch.Tensor], ctx: TrainContext) -> torch.Tensor:
        c = self.cfg
        assert c.rho is not None  # SAMConfig's validator fills the default
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        ctx.optimizer.zero_grad(set_to_none=True)
        # fp16: scaled grads; e depends on their direction only
        loss = ctx.grads(closure, sync=not c.m_sharpness)
        with torch.no_grad():
            e = ascent(params, c.rho, c.adaptive, c.eta)  # fp32: the weights' grads are fp32
            if ctx.scaler is not None:  # an overflowed first pass must not poison the weights
                e = [torch.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0) for d in e]
            for p, d in zip(params, e, strict=True):
                p.add_(d)
        ctx.optimizer.zero_grad(set_to_none=True)
        with frozen_bn_stats(ctx.model):
            ctx.grads(closure)
        with torch.no_grad():
            for p, d in zip(params, e, strict=True):
                p.sub_(d)
        ctx.optimizer_step()
        return loss.detach()
