"""Conservative training (Keskar et al. 2017, App. E.2): proximal steps.

Each batch approximately solves  min_x f_B(x) + (λ/2)‖x − x_k‖²  by `inner_steps` iterations of the
run's own optimiser (paper: λ = 1e-3, 3 ADAM iterations), starting at x_k. The proximal term keeps
an LB step from travelling far on one batch's loss. Its gradient λ(x − x_k) is added to `p.grad`
directly — exact, and no extra autograd graph.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field

from remedies.catalog import register
from remedies.hooks import Remedy, RemedyConfig, TrainContext


class ConservativeConfig(RemedyConfig):
    lam: float = Field(1e-3, ge=1e-4, le=1e-1)  # proximal weight λ (paper: 1e-3; search log)
    inner_steps: int = Field(3, ge=1, le=5)  # optimiser iterations per batch (paper: 3)


@register
class Conservative(Remedy[ConservativeConfig]):
    name = "conservative"
    Config = ConservativeConfig
    replaces_step = True

    def step(self, closure: Callable[[], torch.Tensor], ctx: TrainContext) -> torch.Tensor:
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        anchor = [p.detach().clone() for p in params]  # x_k
        lam = self.cfg.lam
        first: torch.Tensor | None = None
        for _ in range(self.cfg.inner_steps):
            ctx.optimizer.zero_grad(set_to_none=True)
            loss = ctx.grads(closure)  # averaged over micro-batches and workers
            ctx.unscale_grads()  # fp16: the proximal term is added to the true gradient
            with torch.no_grad():
                for p, a in zip(params, anchor, strict=True):
                    if p.grad is not None:
                        p.grad.add_(p - a, alpha=lam)  # ∇ (λ/2)‖x − x_k‖²
            ctx.optimizer_step()
            if first is None:
                first = loss.detach()  # f_B(x_k): the batch loss the trainer logs
        return first  # type: ignore[return-value]
