"""Tiny models and contexts for remedy tests (CPU, a few dozen parameters)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from remedies.hooks import TrainContext


def tiny_mlp(d_in: int = 6, hidden: int = 5, classes: int = 3, bn: str = "batch") -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(d_in, hidden),
        nn.BatchNorm1d(hidden, track_running_stats=(bn == "running")),
        nn.ReLU(),
        nn.Linear(hidden, classes),
    )


def make_ctx(
    model: nn.Module,
    *,
    opt: torch.optim.Optimizer | None = None,
    batch_size: int = 32,
    epochs: int = 10,
    n_train: int = 320,
    input_shape: tuple[int, ...] = (6,),
    lr: float = 1e-3,
) -> TrainContext:
    return TrainContext(
        model=model,
        optimizer=opt or torch.optim.SGD(model.parameters(), lr=lr),
        loss_fn=F.cross_entropy,
        device=torch.device("cpu"),
        n_train=n_train,
        batch_size=batch_size,
        base_lr=lr,
        epochs=epochs,
        input_shape=input_shape,
        current_batch_size=batch_size,
    )


def batch(n: int = 16, d: int = 6, classes: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)
