"""BatchNorm helpers shared by remedies that run extra forward passes (SAM, adversarial).

Why: in `running` BN mode every training-mode forward updates the running statistics. A remedy
that evaluates the same step's batch twice (SAM's perturbed pass, FGSM's input-gradient probe)
would otherwise move the running averages twice per step and skew what evaluation uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def bn_layers(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes inside use batch statistics but leave running statistics untouched.

    PyTorch's BN reads `track_running_stats` at every call: with it off in training mode the
    layer normalises by the batch and neither updates `running_*` nor `num_batches_tracked`.
    """
    changed = [m for m in bn_layers(model) if m.track_running_stats]
    for m in changed:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in changed:
            m.track_running_stats = True
