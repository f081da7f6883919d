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

The built-in trainer (`remedies.engine.trainer.train`) is a loop on this API, so a hand-written loop
that draws its batches the same way reproduces it bit for bit on CPU (tested per remedy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from remedies.config import RunConfig, apply_overrides, parse_config, read_yaml
from remedies.engine.applied import Applied, make_optimizer
from remedies.engine.distributed import world
from remedies.hooks import LossFn

__all__ = ["Applied", "Recipe", "make_optimizer"]


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
        rank: int | None = None,
        world_size: int | None = None,
    ) -> Applied:
        """Bind the remedies to `model` (trained on `n_train` samples of shape `input_shape`).

        Runs every remedy's setup, which may replace modules in place (ghost BN): build the
        optimiser afterwards, from `Applied.model`. `device` defaults to the model's.
        `precision` (fp32, bf16, fp16) overrides the recipe's train.precision.

        Data parallel (a `torchrun` job, Ray Train): `rank` and `world_size` default to the
        initialised torch.distributed group's (else 0 and 1). The recipe's batch is then the
        global one; feed each step this worker's share (`Applied.shard`) and leave the model
        unwrapped — gradients are averaged over the workers before any remedy reads them (a
        model already wrapped in DistributedDataParallel is detected and left to DDP)."""
        if device is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
        if rank is None and world_size is None:
            rank, world_size = world()
        rank, world_size = rank or 0, world_size or 1
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), but got {rank=}, {world_size=}")
        return Applied(
            self.config,
            model,
            n_train=n_train,
            input_shape=tuple(input_shape),
            device=torch.device(device),
            loss_fn=loss_fn,
            precision=precision,
            rank=rank,
            world_size=world_size,
        )
