"""Remedies as a library: an exported recipe applied inside a training loop you write.

Why: a search finds its recipe on a proxy (the paper's nets, a subset of the data); the recipe's
home is the user's own job — their model, their data pipeline, their loop. `Recipe` reads an
exported config (`best.yaml`, or a dict) and `Recipe.apply` binds its remedies to one model; the
returned `Applied` object answers what a loop needs to ask, one call per concern:

    import remedies
    recipe = remedies.Recipe.from_yaml("best.yaml")
    run = recipe.apply(model, n_train=len(train_set), input_shape=(1, 28, 28))
    model, opt = run.model, run.make_optimizer()   # setup may swap modules (ghost BN): use these
    for epoch in range(run.epochs):                # the budget, adapted (train_longer)
        b = run.batch_size(epoch)                  # this epoch's batch (warm start, batch ramp)
        steps = len(train_set) // b
        for i, (x, y) in enumerate(my_batches(b)):
            run.set_lr(epoch + i / steps)          # warmup / scaling, a function of the epoch
            x, y = run.transform(x, y)             # augmentation (training batches only)
            loss = run.step(x, y)                  # forward, loss terms, backward, the step —
                                                   # or SAM's / conservative's own step — then
                                                   # the after-step rules (trust ratio)
        metrics = run.end_epoch(epoch)             # remedies' per-epoch numbers

A loop that must own its forward or backward uses the parts: `run.closure(x, y)` (the batch loss
with the remedies' weights and terms), `run.optimizer_step()` (gradient edits, clipping, step,
after-step rules) — `run.step` is exactly those, or the step-owning remedy's step around them.

The built-in trainer (`remedies.trainer.train`) is a loop on this API, so a hand-written loop
that draws its batches the same way reproduces it bit for bit on CPU (tested per remedy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from remedies.catalog import build_remedies
from remedies.config import RunConfig, apply_overrides, parse_config, read_yaml
from remedies.hooks import LossFn, Remedy, TrainContext
from remedies.precision import autocast_for, grad_scaler, resolve_precision

__all__ = ["Applied", "Recipe", "make_optimizer"]


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


class Recipe:
    """An exported run config's remedies and training settings, validated once."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> Recipe:
        """From a run-config dict (`key.path=value` overrides as on the command line).

        Bad input raises `remedies.errors.ConfigError`, one line naming the field."""
        return cls(parse_config(apply_overrides(dict(raw), list(overrides))))

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
        """From an exported file such as `best.yaml` (what `remedies export` writes)."""
        return cls.from_dict(read_yaml(Path(path)), overrides)

    @property
    def remedies(self) -> list[str]:
        """The enabled remedies, in the order their hooks run."""
        return list(self.config.remedies)

    def apply(
        self,
        model: nn.Module,
        *,
        n_train: int,
        input_shape: Sequence[int],
        device: torch.device | str | None = None,
        loss_fn: LossFn = F.cross_entropy,
        precision: str | None = None,
    ) -> Applied:
        """Bind the remedies to `model` (trained on `n_train` samples of shape `input_shape`).

        Runs every remedy's setup, which may replace modules in place (ghost BN): build the
        optimiser afterwards, from `Applied.model`. `device` defaults to the model's.
        `precision` (fp32, bf16, fp16) overrides the recipe's train.precision."""
        if device is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return Applied(
            self.config,
            model,
            n_train=n_train,
            input_shape=tuple(input_shape),
            device=torch.device(device),
            loss_fn=loss_fn,
            precision=precision,
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
    ) -> None:
        t = config.train
        self.config = config
        self.n_train = n_train
        self.loss_fn = loss_fn
        self.remedies: list[Remedy[Any]] = build_remedies(config.remedies)
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
        )
        for r in self.remedies:
            r.setup(ctx)  # before the optimiser exists, so it may swap modules
        for r in self.remedies:
            ctx.epochs = r.epochs(ctx.epochs, ctx)
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
        # train.precision: the forward passes of `closure` (the remedies' extra ones too) run
        # under autocast; fp16 scales the loss (ctx.backward) and unscales before every step
        if precision is not None:
            t = t.model_copy(update={"precision": precision})
        self.precision = resolve_precision(t, ctx.device)
        self.autocast = autocast_for(self.precision, ctx.device)
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
        ctx = self.ctx
        ctx.epoch = epoch
        b = ctx.batch_size
        for r in self.remedies:
            b = r.batch_size(epoch, b, ctx)
        ctx.current_batch_size = max(1, min(int(b), self.n_train))
        return ctx.current_batch_size

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
        to the model; its first output is kept in `last_logits`."""
        model, ctx, terms, loss_fn = self.model, self.ctx, self._loss, self.loss_fn
        autocast = self.autocast
        fwd = forward or model
        weights = self.sample_weights(y)
        first: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            with autocast():
                logits = fwd(x)
                if not first:
                    first.append(logits)
                    self.last_logits = logits.detach()
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
            loss = closure()
            self.ctx.backward(loss)
            self.optimizer_step()
        self.ctx.step += 1
        return loss

    def optimizer_step(self) -> None:
        """Gradient edits (remedies' after_backward, then `train.grad_clip`), the optimiser's
        step, then the after-step rules (trust ratio). For a loop that backpropagates itself;
        with a step-owning remedy enabled use `step` instead, or that remedy is skipped."""
        self._opt()
        self.ctx.optimizer_step()

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """The remedies' per-epoch metrics (e.g. warm_start = 1 during the warm phase)."""
        out: dict[str, float] = {}
        for r in self.remedies:
            out.update(r.on_epoch_end(epoch, self.ctx))
        return out

    # ------------------------------------------------------------------ internals

    def _opt(self) -> torch.optim.Optimizer:
        if self.ctx.optimizer is None:
            raise RuntimeError("no optimiser bound: call make_optimizer() or use_optimizer(opt)")
        return self.ctx.optimizer

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
