"""`train.accumulate: auto`: the fewest micro-batches whose training step fits the device.

Why: a global batch a device cannot hold at once still trains, as N micro-batches whose
gradients are averaged (remedies.engine.api), and a user should not have to find N by trial and
error.
N is picked once, before the first step, among the counts that split every epoch's per-worker
batch evenly (warm start and batch ramps change the batch): the smallest N whose micro-batch of
the *largest* epoch's batch passes a probe — one forward and backward on random inputs of the
data's shape, in the training precision — while keeping HEADROOM of the device's memory free for
what the probe does not allocate (the optimiser's state, a remedy's extra pass such as SAM's
ascent). The probe leaves the model as it found it (weights, BN statistics, gradients, RNGs).

On CPU there is no device memory to probe (host memory is the machine's, and swapping is not an
out-of-memory error): auto is 1. Set N by hand there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from remedies.errors import ConfigError
from remedies.hooks import Remedy, TrainContext

HEADROOM = 0.2  # share of the device's memory the probe's peak must leave free


def micro_batch_counts(per_worker: list[int]) -> list[int]:
    """The micro-batch counts N that split each of the per-worker batches evenly, ascending."""
    top = max(per_worker)
    return [n for n in range(1, top + 1) if all(b % n == 0 for b in per_worker)]


def pick_accumulate(per_worker: list[int], fits: Callable[[int], bool]) -> int:
    """The smallest N (splitting every batch in `per_worker`) whose micro-batch of the largest
    one `fits`; one line naming the field when none does."""
    top = max(per_worker)
    for n in micro_batch_counts(per_worker):
        if fits(top // n):
            return n
    raise ConfigError(
        "train.accumulate",
        f"auto: no micro-batch of the per-worker batch {top} fits this device's memory (not "
        "even the smallest that splits every epoch's batch); allowed: a smaller "
        "train.batch_size, more train.workers, or a smaller model",
    )


def probe(
    model: nn.Module,
    input_shape: tuple[int, ...],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    autocast: Callable[[], object],
    device: torch.device,
) -> Callable[[int], bool]:
    """`fits(m)`: a training step's forward and backward at micro-batch `m` on `device` peaks
    below (1 − HEADROOM) of the memory this process may use. CUDA only (see the module's
    docstring)."""
    total: float = torch.cuda.get_device_properties(device).total_memory
    # a cap the process set on itself (torch.cuda.set_per_process_memory_fraction) counts too
    total *= torch.cuda.get_per_process_memory_fraction(device)

    def step(m: int) -> float:
        """The peak memory of one forward and backward at micro-batch `m` (its tensors are
        freed when it returns)."""
        torch.cuda.reset_peak_memory_stats(device)
        x = torch.randn(m, *input_shape, device=device)
        with autocast():  # type: ignore[attr-defined]
            out = model(x)
            loss = loss_fn(out.float(), torch.zeros(m, dtype=torch.long, device=device))
        loss.backward()
        return torch.cuda.max_memory_allocated(device)

    def fits(m: int) -> bool:
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
        rng = torch.cuda.get_rng_state(device)
        try:
            return step(m) <= (1 - HEADROOM) * total
        except torch.OutOfMemoryError:
            return False
        finally:
            model.zero_grad(set_to_none=True)
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
            torch.cuda.set_rng_state(rng, device)
            torch.cuda.empty_cache()

    return fits


def auto_accumulate(
    remedies: list[Remedy[Any]],
    ctx: TrainContext,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    autocast: Callable[[], object],
    world_size: int,
) -> int:
    """N for `train.accumulate: auto` once the recipe's model is set up: on CUDA the fewest
    micro-batches that split every epoch's per-worker batch and whose largest passes the probe;
    1 on CPU. Every worker probes its own device; all take the largest N any picks."""
    from remedies.engine.schedule import epoch_batch

    if ctx.device.type != "cuda":
        return 1
    batches = [epoch_batch(remedies, ctx, e) for e in range(ctx.epochs)]
    per_worker = [b // world_size for b in batches if b % world_size == 0] or [1]
    model = getattr(ctx.model, "module", ctx.model)  # DDP: probe without its all-reduce
    n = pick_accumulate(per_worker, probe(model, ctx.input_shape, loss_fn, autocast, ctx.device))
    if world_size > 1:
        import torch.distributed as dist

        got = torch.tensor([n], device=ctx.device)
        dist.all_reduce(got, op=dist.ReduceOp.MAX)
        n = int(got.item())
    return n
