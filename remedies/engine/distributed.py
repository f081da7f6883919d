"""Data parallelism at the level of torch.distributed: what every worker does, whoever started it.

Ray Train's `TorchTrainer` (`remedies.workers`) or a user's `torchrun` job initialises the
process group; this module only reads it. The recipe's meaning under K workers is "one worker at
the same global batch": each worker holds identical weights (broadcast from rank 0 once), trains
on its equal share of every global batch, and the gradients are averaged over the workers by one
flat all-reduce before anything reads them (remedies' gradient edits, clipping, SAM's ascent, the
optimiser). BN normalises each worker's share by its own statistics (= ghost BN at B/K) unless
`model.sync_bn`; the running statistics are averaged over the workers before evaluation, which is
exactly ghost BN's running update (both are linear in the per-slice statistics).

Imports neither Ray nor MLflow.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def world() -> tuple[int, int]:
    """(rank, world_size) of the initialised default process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast_state(model: nn.Module, src: int = 0) -> None:
    """Every worker starts from rank `src`'s parameters and buffers (a user's job may seed its
    ranks differently; ours are identical already, and this costs one message per tensor)."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src)


def all_reduce_mean(tensors: list[torch.Tensor], world_size: int) -> None:
    """Average `tensors` in place over the workers: one flat all-reduce per dtype and device
    (one message, not one per layer)."""
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for ts in groups.values():
        flat = torch.cat([t.reshape(-1) for t in ts])
        dist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for t in ts:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def all_reduce_grads(model: nn.Module, world_size: int) -> None:
    """Average every `.grad` of `model` over the workers (all workers hold grads for the same
    parameters: the same model and loss)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if grads:
        all_reduce_mean(grads, world_size)


def average_bn_buffers(model: nn.Module, world_size: int) -> None:
    """Average the BN running statistics over the workers. Each worker's running mean and
    variance are the same linear recurrence over its own slices' statistics, so their average is
    the running statistics ghost BN (at B/K) keeps on one worker; after it every worker holds
    the same model, and evaluation on any of them is the run's."""
    stats = [
        buf
        for m in model.modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
        for buf in (m.running_mean, m.running_var)
        if buf is not None
    ]
    if stats:
        with torch.no_grad():
            all_reduce_mean(stats, world_size)


def sum_over_workers(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor summed over the workers (one all-reduce for all; scalars of one dtype)."""
    flat = torch.stack([t.float() for t in tensors])
    dist.all_reduce(flat)
    return tuple(flat.unbind())


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """`torch.nn.SyncBatchNorm.convert_sync_batchnorm`, with its layers able to run on CPU
    (gloo) too: torch's SyncBatchNorm refuses CPU tensors in training."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for m in model.modules():
        if type(m) is nn.SyncBatchNorm:
            m.__class__ = CpuSyncBatchNorm  # same state; only forward on CPU differs
    return model


class CpuSyncBatchNorm(nn.SyncBatchNorm):
    """SyncBatchNorm whose CPU path computes the global batch statistics itself: per-channel
    sums and sums of squares (fp64) through torch.distributed.nn's all-reduce, which carries
    the gradient back to every worker's slice. CUDA inputs take torch's own kernel."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.device.type != "cpu" or not self.training or world()[1] == 1:
            if input.device.type == "cpu" and self.training:
                # one worker: plain BN (torch's SyncBatchNorm refuses CPU input once a group
                # exists, even of one)
                return _BatchNorm.forward(self, input)
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce  # here: only with sync BN

        self._check_input_dim(input)
        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        x = input.double()
        count = torch.tensor([input.numel() / c], dtype=torch.float64)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = stats[2 * c]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        shape = (1, c) + (1,) * (input.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self._momentum()
                unbiased = var * n / (n - 1).clamp_min(1.0)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        return out.to(input.dtype)

    def _momentum(self) -> float:
        if self.momentum is not None:
            return self.momentum
        tracked = self.num_batches_tracked
        return 1.0 / float(tracked) if tracked is not None and tracked > 0 else 0.0
