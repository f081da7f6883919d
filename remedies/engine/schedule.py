"""The batch schedule of a run, read without a model or data: each epoch's global batch as the
remedies fold it (warm start, batch ramp) over the configured batch, and the epoch budget they
set (train_longer). One place for what the trainer, the library API, the search's fairness
rules (ASHA's compare-from epoch, degenerate batches) and the data-parallel split all read."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from remedies.catalog import build_remedies
from remedies.config import RunConfig, check_split
from remedies.hooks import Remedy, TrainContext


def schedule_context(cfg: RunConfig, n_train: int) -> tuple[list[Remedy[Any]], TrainContext]:
    """The remedies and a context holding what their schedule hooks read (sizes, epoch budget):
    no model, optimiser or data are built, so this costs nothing."""
    t = cfg.train
    ctx = TrainContext(
        model=nn.Identity(),
        optimizer=None,  # type: ignore[arg-type]  # schedule hooks need none
        loss_fn=F.cross_entropy,
        device=torch.device("cpu"),
        n_train=n_train,
        batch_size=t.resolve_batch_size(n_train),
        base_lr=t.lr,
        epochs=t.epochs,
        input_shape=(),
    )
    remedies = build_remedies(cfg.remedies)
    for r in remedies:
        ctx.epochs = r.epochs(ctx.epochs, ctx)
    return remedies, ctx


def epoch_batch(remedies: list[Remedy[Any]], ctx: TrainContext, epoch: int) -> int:
    """The global batch of `epoch`: the remedies' schedule over the configured batch."""
    b = ctx.batch_size
    for r in remedies:
        b = r.batch_size(epoch, b, ctx)
    return max(1, min(int(b), ctx.n_train))


def batch_schedule(cfg: RunConfig, n_train: int) -> list[int]:
    """The batch size of every epoch, as the trainer folds it through the remedies."""
    remedies, ctx = schedule_context(cfg, n_train)
    return [epoch_batch(remedies, ctx, e) for e in range(ctx.epochs)]


def check_schedule(
    remedies: list[Remedy[Any]], ctx: TrainContext, workers: int, accumulate: int
) -> None:
    """Every epoch's global batch (warm start, batch ramp) splits evenly over the workers and
    micro-batches: the configured batch alone is checked when it is resolved."""
    for epoch in range(ctx.epochs):
        b = epoch_batch(remedies, ctx, epoch)
        check_split(b, workers, accumulate, f"epoch {epoch + 1}'s batch (remedies' schedule)")


def check_batch_schedule(config: RunConfig, n_train: int) -> None:
    """`config`'s every epoch's batch splits over train.workers × train.accumulate: one line
    (ConfigError) before any worker starts."""
    remedies, ctx = schedule_context(config, n_train)
    check_schedule(remedies, ctx, config.train.workers, config.train.micro_batches)
