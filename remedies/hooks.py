"""The narrow interface through which remedies change training — the trainer's only extension point.

A remedy is a small class with a typed `Config` and any of the hooks below; every hook has a
do-nothing default so a remedy implements only what it changes. The trainer calls the hooks of all
enabled remedies in config order; no remedy edits the training loop itself.

Order inside one run (see `remedies.engine.trainer.train`):
    setup(ctx)                              once: wrap the model, read sizes
    epochs(n, ctx) -> n                     once: the epoch budget (regime adaptation)
    per epoch:   batch_size(epoch, b, ctx) -> b          batch-size schedule
      per step:  lr(lr, t, ctx) -> lr                    t = fractional epoch (warmup per step)
                 augment(x, y, ctx) -> (x, y)            training batches only
                 sample_weights(y, ctx) -> w | None      per-sample weights of the batch loss
                 loss(model, x, y, loss, ctx) -> loss    extra terms / mixed losses
                 step(closure, ctx) -> loss | None       replaces zero_grad/backward/step
                                                         (gradients via ctx.grads(closure),
                                                         steps via ctx.optimizer_step())
                 after_backward(ctx)                     edit gradients before every step
                 after_step(ctx)                         edit the update after every step
      on_epoch_end(epoch, ctx) -> dict                   extra per-epoch metrics
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> scalar loss


class RemedyConfig(BaseModel):
    """Base of every remedy's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


C = TypeVar("C", bound=RemedyConfig)  # a remedy's own config class


@dataclass
class TrainContext:
    """What the trainer shares with remedies. Read freely; write only where a hook says so."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    device: torch.device
    n_train: int
    batch_size: int  # the configured (large, global) batch size, in samples
    base_lr: float
    epochs: int  # the (possibly adapted) epoch budget
    input_shape: tuple[int, ...]
    epoch: int = 0  # 0-based current epoch
    step: int = 0  # optimiser steps taken so far
    current_batch_size: int = 0  # this epoch's global batch (all workers together)
    state: dict[str, Any] = field(default_factory=dict)  # scratch space per remedy name
    # the trainer's gradient edits (after_backward hooks, then train.grad_clip), run before every
    # optimiser step — also the steps a step-owning remedy takes through `optimizer_step`
    before_step: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None  # the remedies' after_step hooks
    # fp16 only (train.precision): the loss is scaled before backward and the gradients unscaled
    # before any hook reads them, so every hook and the step see true fp32 gradients
    scaler: torch.amp.GradScaler | None = None
    _unscaled: bool = False
    # data parallelism (train.workers, or a user's torchrun job): this worker's index, the
    # number of workers, and whether the gradients were already averaged over them (by DDP,
    # when the user's model is wrapped in it)
    rank: int = 0
    world_size: int = 1
    ddp: bool = False
    # averages `p.grad` over the workers (the engine's all-reduce, given by the engine so this
    # interface, which the catalogue builds on, imports nothing of it); needed when K > 1
    reduce_grads: Callable[[torch.nn.Module, int], None] | None = None
    _synced: bool = False

    def backward(self, loss: torch.Tensor) -> None:
        """`loss.backward()`, scaled under fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This worker's share of a tensor over the global batch (its rows rank·B/K … ):
        what a remedy that draws per-sample values for the global batch keeps."""
        return t if self.world_size == 1 else t.chunk(self.world_size)[self.rank]

    def grads(self, closure: Callable[[], torch.Tensor], *, sync: bool = True) -> torch.Tensor:
        """The step's gradient, added to `p.grad` (zero it first): the closure's loss
        backpropagated — one micro-batch at a time under train.accumulate, each scaled by 1/N so
        the sum is the full batch's gradient — then averaged over the data-parallel workers,
        unless `sync` is False (this worker's own gradient: SAM's m-sharpness). Step-owning
        remedies call this instead of `closure()` + `backward`. Returns the batch loss (graph
        attached when it ran in one pass)."""
        micro = getattr(closure, "micro", None)
        no_sync = not sync and self.ddp and self.world_size > 1
        with self.model.no_sync() if no_sync else nullcontext():  # type: ignore[operator]
            if micro is None:
                loss = closure()
                self.backward(loss)
            else:
                parts = []
                for part in micro:
                    piece = part()
                    self.backward(piece / len(micro))
                    parts.append(piece.detach())
                loss = torch.stack(parts).mean()
        self._synced = False
        if sync:
            self.sync_grads()
        return loss

    def sync_grads(self) -> None:
        """Average `p.grad` over the workers (once per step; a no-op on one worker or when DDP
        did it in backward). Before fp16 unscaling, so every worker sees the same overflow."""
        if self.world_size > 1 and not self.ddp and not self._synced:
            assert self.reduce_grads is not None, "K > 1 workers need the engine's all-reduce"
            self.reduce_grads(self.model, self.world_size)
        self._synced = True

    def unscale_grads(self) -> None:
        """Make `p.grad` the true gradient now (fp16: divide out the loss scale; once per step;
        else a no-op). `optimizer_step` does it itself; call it only to edit grads before."""
        if self.scaler is not None and not self._unscaled:
            self.scaler.unscale_(self.optimizer)
            self._unscaled = True

    def optimizer_step(self) -> None:
        """Edit the gradients as the run is configured, then step: step-owning remedies (sam,
        conservative) call this instead of `optimizer.step()`, so clipping and gradient hooks apply
        to their steps exactly as to the default one. Under fp16 a step whose gradients overflowed
        is skipped (GradScaler), and the scale adapts. Gradients not yet averaged over the
        data-parallel workers (a loop's own backward) are averaged first."""
        self.sync_grads()
        self._synced = False
        self.unscale_grads()
        if self.before_step is not None:
            self.before_step()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._unscaled = False
        else:
            self.optimizer.step()
        if self.after_step is not None:
            self.after_step()


REGULARISER_SHARE = 0.5  # regularisers (augment, adversarial) are compared from half-way


class Remedy(Generic[C]):
    """A training remedy. Subclasses set `name`, `Config`, and override the hooks they need.

    Parametrised by its config class (`class Sam(Remedy[SAMConfig])`), so `self.cfg` has that
    type; `Config` names the same class at run time (validation, defaults).
    """

    name: ClassVar[str]
    Config: ClassVar[type[RemedyConfig]] = RemedyConfig
    replaces_step: ClassVar[bool] = False  # at most one enabled remedy may own the optimiser step

    def __init__(self, cfg: C) -> None:
        self.cfg = cfg

    def setup(self, ctx: TrainContext) -> None:
        """Called once before training (e.g. swap BN layers for ghost BN)."""

    def epochs(self, epochs: int, ctx: TrainContext) -> int:
        return epochs

    def batch_size(self, epoch: int, batch_size: int, ctx: TrainContext) -> int:
        return batch_size

    def lr(self, lr: float, t: float, ctx: TrainContext) -> float:
        return lr

    def augment(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext):
        return x, y

    def sample_weights(self, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor | None:
        """Weights (mean 1) of the per-sample losses in the batch loss; None leaves them at 1.
        Weights from several remedies multiply."""
        return None

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        loss: torch.Tensor,
        ctx: TrainContext,
    ) -> torch.Tensor:
        return loss

    def step(self, closure: Callable[[], torch.Tensor], ctx: TrainContext) -> torch.Tensor | None:
        """Replace the optimiser step. `closure()` returns the batch's total loss (hooks applied)
        with the graph attached and does NOT zero or backprop. Return the loss, or None to let
        the trainer take its default step. Take gradients with `ctx.grads(closure)`: it
        runs the micro-batches (train.accumulate) and averages over the workers."""
        return None

    def after_backward(self, ctx: TrainContext) -> None:
        """Edit `p.grad` in place before each optimiser step (a step-owning remedy's too)."""

    def after_step(self, ctx: TrainContext) -> None:
        """Edit the parameters right after each optimiser step (e.g. rescale the update)."""

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> dict[str, float]:
        return {}

    def comparable_from(self, ctx: TrainContext) -> int:
        """The epoch after which this remedy's curve-changing phase is over, so a search may
        compare the run with others from the next one (ASHA's rungs). 0: from the start.

        Why a hook: a warm start, an lr warm-up, a batch ramp or a regulariser puts a run behind
        a plain one early on purpose, and ASHA cut such trials before they paid off (measured:
        an augment-only trial cut at epoch 4, 73–87 % of trials pruned)."""
        return 0
