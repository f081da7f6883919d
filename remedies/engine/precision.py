"""`train.precision` → the autocast a run's forward passes run under (and fp16's GradScaler).

Weights, optimiser state and gradients stay fp32 under every setting: autocast only casts the
inputs of matmuls/convolutions, so everything a remedy reads from `p` or `p.grad` (SAM's ascent,
trust ratios, clipping norms, the proximal term) is fp32 master data. Measures run outside
autocast, on the fp32 weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from remedies.config import FP16_NEEDS_CUDA, TrainConfig
from remedies.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(t: TrainConfig, device: torch.device) -> str:
    """fp32, bf16 or fp16: what `t.precision` means on `device` (auto: bf16 on a CUDA GPU that
    supports it, else fp32). fp16 off CUDA is one ConfigError naming train.precision."""
    if t.precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp32"
    if t.precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision", FP16_NEEDS_CUDA)
    return t.precision


def autocast_for(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the context the forward passes run in (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = DTYPES[precision]
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def fp32_region(device: torch.device) -> AbstractContextManager:
    """Autocast switched off (measures: fp32 from the fp32 weights whatever encloses them)."""
    return torch.autocast(device.type, enabled=False)
