"""Adaptive sharpness (Kwon et al. 2021; Andriushchenko et al. 2023), worst and average case.

Perturbations are δ = s ⊙ u with s = |w| + η elementwise and u in a ball of radius ρ. Why the
scaling: the ReLU rescaling of Dinh et al. 2017 (W₁ → αW₁, W₂ → W₂/α) computes the same function
but can make plain sharpness or λ_max arbitrarily large; since f'(Sw + |Sw|⊙u) = f(w + |w|⊙u),
the adaptive value with η = 0 is exactly unchanged. `scale=None` gives the plain (s = 1) versions,
whose quadratic-model oracles are ½ρ²λ_max⁺ (L2) and ½σ² tr H (Gaussian average).

Worst case: projected normalised-gradient ascent in u (step ρ, then projection onto the ball),
from a random start inside the ball; on a quadratic the L2 version reduces to power iteration on
s H s. The reported maximum is the largest f at any evaluated (feasible) point.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import torch

from remedies.measures.objective import Objective


@dataclass
class AdaptiveResult:
    value: float  # f(w + δ) − f(w): max over the ball, or the mean over samples
    f0: float
    std_error: float | None  # average case only
    n_evals: int
    wall_time_s: float


def _project(u: torch.Tensor, rho: float, norm: str) -> torch.Tensor:
    if norm == "l2":
        nrm = float(u.norm())
        return u * (rho / nrm) if nrm > rho else u
    return u.clamp(-rho, rho)


def worst_case_sharpness(
    obj: Objective,
    rho: float,
    norm: Literal["l2", "linf"] = "l2",
    *,
    scale: torch.Tensor | None = None,
    steps: int = 20,
    seed: int = 0,
) -> AdaptiveResult:
    t0 = time.perf_counter()
    w = obj.w0
    s = torch.ones_like(w) if scale is None else scale.to(w)
    f0 = obj.loss(w)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if norm == "l2":
        u = torch.randn(w.numel(), generator=gen, dtype=torch.float64).to(w)
        u *= 0.5 * rho / float(u.norm())
    else:
        u = ((torch.rand(w.numel(), generator=gen, dtype=torch.float64) - 0.5) * rho).to(w)
    best, grads = f0, 0
    for _ in range(steps):
        f, g = obj.loss_grad(w + s * u)
        grads += 1
        best = max(best, f)
        g = g * s  # chain rule: ∂/∂u f(w + s⊙u)
        if norm == "l2":
            gn = float(g.norm())
            if gn == 0.0:
                break
            u = _project(u + rho * g / gn, rho, "l2")
        else:
            u = _project(u + rho * torch.sign(g), rho, "linf")
    best = max(best, obj.loss(w + s * u))
    # evaluations actually made: f0, the ascent steps taken (fewer if ∇ vanished), the end point
    return AdaptiveResult(best - f0, f0, None, grads + 2, time.perf_counter() - t0)


def average_sharpness(
    obj: Objective,
    rho: float,
    dist: Literal["gaussian", "uniform"] = "gaussian",
    *,
    scale: torch.Tensor | None = None,
    samples: int = 20,
    seed: int = 0,
) -> AdaptiveResult:
    """E f(w + s⊙ρξ) − f(w), ξ ~ N(0, I) or U[−1, 1]ⁿ, by Monte Carlo with a standard error."""
    t0 = time.perf_counter()
    w = obj.w0
    s = torch.ones_like(w) if scale is None else scale.to(w)
    f0 = obj.loss(w)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    vals = []
    for _ in range(samples):
        if dist == "gaussian":
            xi = torch.randn(w.numel(), generator=gen, dtype=torch.float64)
        else:
            xi = torch.rand(w.numel(), generator=gen, dtype=torch.float64) * 2 - 1
        vals.append(obj.loss(w + s * rho * xi.to(w)) - f0)
    t = torch.tensor(vals, dtype=torch.float64)
    se = float(t.std(unbiased=True)) / math.sqrt(samples)
    return AdaptiveResult(float(t.mean()), f0, se, samples + 1, time.perf_counter() - t0)
