"""What one training run returns: its trained model, per-epoch history and final metrics, and
a JSON-safe summary of them (what `remedies train --json` writes)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from remedies.config import RunConfig, config_to_dict


@dataclass
class TrainResult:
    config: RunConfig
    model: nn.Module
    history: list[dict[str, Any]]  # one row per epoch
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    train_loss: float
    val_loss: float
    test_loss: float
    epochs_run: int
    diverged: bool
    diverged_epoch: int | None
    wall_time_s: float
    batch_size: int
    n_train: int
    device: str
    sharpness: dict[str, float] = field(default_factory=dict)
    sharpness_details: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: str | None = None
    # training alone (the epochs' step loops; data loading, evaluation and measures excluded),
    # so a speed comparison is not swamped by the sharpness measure; `threads`: torch's CPU
    # threads while it was timed (a time means nothing without them)
    train_time_s: float = 0.0
    train_cpu_s: float = 0.0  # the process's CPU time over the same loops
    measure_time_s: float = 0.0
    steps: int = 0
    threads: int = 0
    precision: str = "fp32"  # what train.precision resolved to on this device (fp32/bf16/fp16)
    compiled: bool = False  # the training forward ran through torch.compile
    channels_last: bool = False  # a conv net on CUDA trains in channels-last memory format
    accumulate: int = 1  # the micro-batches per worker step (train.accumulate; `auto` picked)
    # train.stop's rule met before the budget ran out (None: no rule, all epochs were trained)
    converged: bool | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary (what `remedies train --json` writes)."""
        keys = (
            "train_accuracy",
            "val_accuracy",
            "test_accuracy",
            "train_loss",
            "val_loss",
            "test_loss",
            "epochs_run",
            "diverged",
            "diverged_epoch",
            "wall_time_s",
            "batch_size",
            "n_train",
            "device",
            "sharpness",
            "sharpness_details",
            "checkpoint",
            "train_time_s",
            "train_cpu_s",
            "measure_time_s",
            "steps",
            "threads",
            "precision",
            "compiled",
            "channels_last",
            "accumulate",
            "converged",
            "history",
        )
        out = {k: getattr(self, k) for k in keys}
        out["config"] = config_to_dict(self.config)
        return _json_safe(out)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN; a diverged loss is reported as null
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
