"""Ghost batch normalisation (Hoffer et al. 2017): BN statistics over virtual batches of size g.

In training mode each BN layer normalises every g-sized slice of the large batch by that slice's
own mean and variance, restoring the noisier SB normalisation. The ghost layers subclass the BN
layers they replace and keep the same parameters and buffers, so a checkpoint's state_dict keys
match and `remedies.engine.checkpoint` (which re-runs `setup`) reloads it. With `running` BN
the running statistics are updated once per forward, from the average of the slices'
statistics (once per slice in the rare uneven case, when B is not a multiple of g); in `batch` mode
there are none.
Evaluation is unchanged (full-batch or running statistics).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from remedies.catalog import register
from remedies.hooks import Remedy, RemedyConfig, TrainContext


class GhostBNConfig(RemedyConfig):
    ghost_batch: int = Field(32, ge=16, le=256)  # g: virtual batch size (search log₂ 16…256)


class _Ghost:
    """Mixin over a BatchNorm class; `ghost_batch` is set after construction."""

    ghost_batch: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn: _BatchNorm = self  # type: ignore[assignment]
        g = self.ghost_batch
        if not bn.training or x.shape[0] <= g:
            return super().forward(x)  # type: ignore[misc]
        if x.shape[0] % g:
            # uneven split: a plain loop; a last slice of one sample would have no variance
            sizes = [g] * (x.shape[0] // g)
            sizes[-1] += x.shape[0] % g
            return torch.cat([super(_Ghost, self).forward(c) for c in x.split(sizes)])  # type: ignore[misc]
        return ghost_norm(bn, x, g)


def ghost_norm(bn: _BatchNorm, x: torch.Tensor, g: int) -> torch.Tensor:
    """Normalise each g-slice of x by its own statistics — one reshape, no Python loop."""
    n, c = x.shape[0] // g, x.shape[1]
    # statistics in fp32 also under autocast (bf16 activations): a variance in bf16 loses
    # most of its digits, and the fp32 running buffers take fp32 updates
    xs = x.reshape(n, g, *x.shape[1:]).float()  # (n, g, C, *spatial)
    dims = (1, *range(3, xs.dim()))  # everything but the slice and channel axes
    mean = xs.mean(dims, keepdim=True)
    var = xs.var(dims, unbiased=False, keepdim=True)
    out = (xs - mean) * torch.rsqrt(var + bn.eps)
    if bn.affine:
        shape = (1, 1, c) + (1,) * (xs.dim() - 3)
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats:
        tracked, running_mean, running_var = bn.num_batches_tracked, bn.running_mean, bn.running_var
        assert tracked is not None and running_mean is not None and running_var is not None
        with torch.no_grad():
            tracked.add_(1)
            m = bn.momentum if bn.momentum is not None else 1.0 / float(tracked)
            count = xs[0, :, 0].numel()  # samples × spatial positions per slice and channel
            unbiased = var * count / max(count - 1, 1)
            running_mean.lerp_(mean.reshape(n, c).mean(0), m)
            running_var.lerp_(unbiased.reshape(n, c).mean(0), m)
    return out.reshape(x.shape).to(x.dtype)


class GhostBatchNorm1d(_Ghost, nn.BatchNorm1d):
    pass


class GhostBatchNorm2d(_Ghost, nn.BatchNorm2d):
    pass


GHOSTS: dict[type[nn.Module], type[GhostBatchNorm1d | GhostBatchNorm2d]] = {
    nn.BatchNorm1d: GhostBatchNorm1d,
    nn.BatchNorm2d: GhostBatchNorm2d,
}


def to_ghost(module: nn.Module, g: int) -> int:
    """Swap every BatchNorm1d/2d under `module` for its ghost twin in place; returns how many."""
    swapped = 0
    for name, child in module.named_children():
        kind = GHOSTS.get(type(child))
        if kind is None or not isinstance(child, _BatchNorm):  # (a BN class when kind is found)
            swapped += to_ghost(child, g)
            continue
        ghost = kind(
            child.num_features,
            eps=child.eps,
            momentum=child.momentum,
            affine=child.affine,
            track_running_stats=child.track_running_stats,
        )
        ghost.load_state_dict(child.state_dict())
        ghost.ghost_batch = g
        ghost.to(next(iter(child.state_dict().values()), torch.empty(0)).device)
        ghost.train(child.training)
        setattr(module, name, ghost)
        swapped += 1
    return swapped


@register
class GhostBN(Remedy[GhostBNConfig]):
    name = "ghost_bn"
    Config = GhostBNConfig

    def setup(self, ctx: TrainContext) -> None:
        to_ghost(ctx.model, self.cfg.ghost_batch)
