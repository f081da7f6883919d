"""Hessian trace by Hutchinson's estimator: tr H = E[vᵀHv] for Rademacher v (entries ±1).

Rademacher rather than Gaussian probes because their variance, 2 Σ_{i≠j} H_ij², excludes the
diagonal: for a diagonal H one probe is exact. A fixed probe count plus the standard error of the
mean is reported instead of PyHessian's stop-when-the-mean-stops-moving rule, which can stop on
two nearly equal noisy values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class TraceResult:
    trace: float
    std_error: float
    probes: int
    wall_time_s: float


def hutchinson_trace(
    hvp: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    *,
    probes: int = 100,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> TraceResult:
    t0 = time.perf_counter()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    samples = []
    for _ in range(probes):
        v = (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).to(dtype=dtype, device=device)
        samples.append(float((v.double() * hvp(v).double()).sum()))
    t = torch.tensor(samples, dtype=torch.float64)
    se = float(t.std(unbiased=True)) / math.sqrt(probes) if probes > 1 else float("nan")
    return TraceResult(float(t.mean()), se, probes, time.perf_counter() - t0)
