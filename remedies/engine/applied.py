"""A recipe bound to one model (`Recipe.apply`'s result): what a training loop asks per epoch and
per step — batch size, lr, augmentation, the step itself — answered by the recipe's remedies
through their hooks. Split from `remedies.engine.api` (which reads and validates recipes) so each
module has one job; users import both from `remedies`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from remedies.catalog import build_remedies
from remedies.config import RunConfig
from remedies.engine.accumulate import auto_accumulate
from remedies.engine.distributed import (
    all_reduce_grads,
    average_bn_buffers,
    broadcast_state,
    convert_sync_bn,
)
from remedies.engine.precision import autocast_for, grad_scaler, resolve_precision
from remedies.engine.schedule import check_schedule, epoch_batch
from remedies.hooks import LossFn, Remedy, TrainContext

__all__ = ["Applied", "make_optimizer"]


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    """The optimiser a run config names (Adam or SGD with its momentum/Nesterov/weight decay)."""
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(
        params,
        lr=t.lr,
        momentum=t.momentum,
        nesterov=t.nesterov and t.momentum > 0,
        weight_decay=t.weight_decay,
    )


class Applied:
    """A recipe bound to one model: the per-epoch and per-step answers a training loop asks for.

    Not thread-safe and not reusable across models; make one per training run.
    """

    def __init__(
        self,
        config: RunConfig,
        model: nn.Module,
        *,
        n_train: int,
        input_shape: tuple[int, ...],
        device: torch.device,
        loss_fn: LossFn,
        precision: str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        t = config.train
        self.config = config
        self.n_train = n_train
        self.loss_fn = loss_fn
        self.accumulate = t.micro_batches  # `auto` is picked below, once the model is set up
        self.remedies: list[Remedy[Any]] = build_remedies(config.remedies)
        ddp = isinstance(model, nn.parallel.DistributedDataParallel)
        if world_size > 1 and config.model.sync_bn:  # BN over the global batch
            model = convert_sync_bn(model)
        self.ctx = ctx = TrainContext(
            model=model,
            optimizer=None,  # type: ignore[arg-type]  # set once setup has swapped modules
            loss_fn=loss_fn,
            device=device,
            n_train=n_train,
            batch_size=t.resolve_batch_size(n_train),
            base_lr=t.lr,
            epochs=t.epochs,
            input_shape=input_shape,
            rank=rank,
            world_size=world_size,
            ddp=ddp,
            reduce_grads=all_reduce_grads,
        )
        for r in self.remedies:
            r.setup(ctx)  # before the optimiser exists, so it may swap modules
        for r in self.remedies:
            ctx.epochs = r.epochs(ctx.epochs, ctx)
        # train.precision: the forward passes of `closure` (the remedies' extra ones too) run
        # under autocast; fp16 scales the loss (ctx.backward) and unscales before every step
        if precision is not None:
            t = t.model_copy(update={"precision": precision})
        self.precision = resolve_precision(t, ctx.device)
        self.autocast = autocast_for(self.precision, ctx.device)
        if t.accumulate == "auto":
            self.accumulate = auto_accumulate(
                self.remedies, ctx, self.loss_fn, self.autocast, world_size
            )
        check_schedule(self.remedies, ctx, world_size, self.accumulate)
        if world_size > 1 and not ddp:
            broadcast_state(ctx.model)  # every worker starts from rank 0's weights
        self._stepper = next((r for r in self.remedies if r.replaces_step), None)
        # hooks that change nothing are skipped per step: the step loop's overhead stays that of
        # a bare loop (benchmarks/train_throughput.py)
        self._lr = [r for r in self.remedies if _overrides(r, "lr")]
        self._augment = [r for r in self.remedies if _overrides(r, "augment")]
        self._weights = [r for r in self.remedies if _overrides(r, "sample_weights")]
        self._loss = [r for r in self.remedies if _overrides(r, "loss")]
        self._after_backward = [r for r in self.remedies if _overrides(r, "after_backward")]
        self._after_step = [r for r in self.remedies if _overrides(r, "after_step")]
        ctx.before_step, ctx.after_step = self._before_step, self._after_step_hooks
        ctx.scaler = grad_scaler(self.precision, ctx.device)
        self.last_logits: torch.Tensor | None = None  # the last step's first forward, detached

    # ------------------------------------------------------------------ what the loop reads

    @property
    def model(self) -> nn.Module:
        """The model to train (the one passed in, possibly with modules replaced by setup)."""
        return self.ctx.model

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        return self.ctx.optimizer

    @property
    def epochs(self) -> int:
        """The epoch budget, after the remedies adapted it (train_longer)."""
        return self.ctx.epochs

    @property
    def steps_taken(self) -> int:
        """Optimiser steps (batches) taken so far; a resumed loop sets `ctx.step`."""
        return self.ctx.step

    def make_optimizer(self) -> torch.optim.Optimizer:
        """The recipe's optimiser over `self.model`'s parameters, bound to this run."""
        return self.use_optimizer(make_optimizer(self.config, self.model.parameters()))

    def use_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Bind an optimiser of your own (over `self.model`'s parameters); returns it."""
        self.ctx.optimizer = optimizer
        return optimizer

    def batch_size(self, epoch: int) -> int:
        """Samples per step in `epoch` (0-based). Call once at the start of every epoch: it also
        tells the remedies which epoch runs (lr scaling reads this batch size)."""
        self.ctx.epoch = epoch
        self.ctx.current_batch_size = self._batch(epoch)
        return self.ctx.current_batch_size

    @property
    def local_batch_size(self) -> int:
        """This worker's share of the current epoch's global batch (`batch_size(epoch)`)."""
        return self.ctx.current_batch_size // self.ctx.world_size

    @property
    def rank(self) -> int:
        return self.ctx.rank

    @property
    def world_size(self) -> int:
        return self.ctx.world_size

    def lr(self, t: float) -> float:
        """The learning rate at fractional epoch `t` (epoch + step / steps_per_epoch)."""
        lr = self.ctx.base_lr
        for r in self._lr:
            lr = r.lr(lr, t, self.ctx)
        return lr

    def set_lr(self, t: float) -> float:
        """Set every parameter group of the bound optimiser to `lr(t)`; returns it."""
        lr = self.lr(t)
        for g in self._opt().param_groups:
            g["lr"] = lr
        return lr

    # ------------------------------------------------------------------ what the loop calls

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This worker's equal share of a global batch (rows rank·b/K to (rank+1)·b/K); the
        batch itself on one worker. `transform` before `shard` augments the global batch the
        same way on every worker (same seed), so K workers reproduce one exactly."""
        return self.ctx.shard(x), self.ctx.shard(y)

    def transform(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch as the remedies would have it (augmentation); a no-op in eval mode."""
        for r in self._augment:
            x, y = r.augment(x, y, self.ctx)
        return x, y

    def sample_weights(self, y: torch.Tensor) -> torch.Tensor | None:
        """Per-sample weights (mean 1) of the batch loss (gradient noise); None: all ones.
        Drawn fresh on every call — call once per batch."""
        weights = None
        for r in self._weights:
            if (w := r.sample_weights(y, self.ctx)) is not None:
                weights = w if weights is None else weights * w
        return weights

    def closure(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> Callable[[], torch.Tensor]:
        """A function returning the batch's loss with the remedies' weights and extra terms
        (adversarial), graph attached; it neither zeroes nor backpropagates. Step-owning
        remedies call it more than once per step (SAM: at w and at w + e). `forward` defaults
        to the model; its first output is kept in `last_logits`.

        Under train.accumulate = N the closure also carries `micro`: N closures over equal
        micro-batches, which `ctx.grads` backpropagates one at a time (the memory of one
        micro-batch; BN statistics per micro-batch, i.e. ghost BN at its size)."""
        weights = self.sample_weights(y)
        n = self.accumulate
        if n == 1:
            return self._loss_closure(x, y, weights, forward, None)
        self._logit_parts = parts = [None] * n
        ws = weights.chunk(n) if weights is not None else [None] * n
        whole = self._loss_closure(x, y, weights, forward, None)
        whole.micro = [  # type: ignore[attr-defined]
            self._loss_closure(xi, yi, wi, forward, (parts, i))
            for i, (xi, yi, wi) in enumerate(zip(x.chunk(n), y.chunk(n), ws, strict=True))
        ]
        return whole

    def _loss_closure(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        weights: torch.Tensor | None,
        forward: Callable[[torch.Tensor], torch.Tensor] | None,
        slot: tuple[list, int] | None,
    ) -> Callable[[], torch.Tensor]:
        model, ctx, terms, loss_fn = self.model, self.ctx, self._loss, self.loss_fn
        autocast = self.autocast
        fwd = forward or model
        first: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            with autocast():
                logits = fwd(x)
                if not first:
                    first.append(logits)
                    if slot is None:
                        self.last_logits = logits.detach()
                    else:  # a micro-batch: the step's logits are its parts, in order
                        parts, i = slot
                        parts[i] = logits.detach()
                        if all(p is not None for p in parts):
                            self.last_logits = torch.cat(parts)
                if weights is None:
                    loss = loss_fn(logits, y)
                else:
                    loss = (F.cross_entropy(logits, y, reduction="none") * weights).mean()
                for r in terms:
                    loss = r.loss(model, x, y, loss, ctx)
            return loss

        return closure

    def step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One training step on the batch (x, y): returns the batch loss (graph attached).

        The step-owning remedy (SAM, conservative) takes it if one is enabled; otherwise zero
        grads, backward, then `optimizer_step()`."""
        return self.step_closure(self.closure(x, y, forward))

    def step_closure(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """`step` for a loss closure you built (it must add the remedies' terms itself, e.g.
        by wrapping `closure()`'s result)."""
        opt = self._opt()
        loss = self._stepper.step(closure, self.ctx) if self._stepper else None
        if loss is None:
            opt.zero_grad(set_to_none=True)
            loss = self.ctx.grads(closure)  # micro-batches, then the average over workers
            self.optimizer_step()
        self.ctx.step += 1
        return loss

    def optimizer_step(self) -> None:
        """Gradient edits (remedies' after_backward, then `train.grad_clip`), the optimiser's
        step, then the after-step rules (trust ratio). For a loop that backpropagates itself;
        with a step-owning remedy enabled use `step` instead, or that remedy is skipped."""
        self._opt()
        self.ctx.optimizer_step()

    def sync_buffers(self) -> None:
        """Average the BN running statistics over the data-parallel workers (a no-op on one):
        call before evaluating; `end_epoch` does it too."""
        if self.ctx.world_size > 1:
            average_bn_buffers(self.model, self.ctx.world_size)

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """The remedies' per-epoch metrics (e.g. warm_start = 1 during the warm phase); first
        the BN running statistics are averaged over the workers (`sync_buffers`)."""
        self.sync_buffers()
        out: dict[str, float] = {}
        for r in self.remedies:
            out.update(r.on_epoch_end(epoch, self.ctx))
        return out

    # ------------------------------------------------------------------ internals

    def _opt(self) -> torch.optim.Optimizer:
        if self.ctx.optimizer is None:
            raise RuntimeError("no optimiser bound: call make_optimizer() or use_optimizer(opt)")
        return self.ctx.optimizer

    def _batch(self, epoch: int) -> int:
        return epoch_batch(self.remedies, self.ctx, epoch)

    def _before_step(self) -> None:
        for r in self._after_backward:
            r.after_backward(self.ctx)
        clip = self.config.train.grad_clip
        if clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)

    def _after_step_hooks(self) -> None:
        for r in self._after_step:
            r.after_step(self.ctx)


def _overrides(r: Remedy, hook: str) -> bool:
    return getattr(type(r), hook) is not getattr(Remedy, hook)
