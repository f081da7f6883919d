"""Keskar ε-sharpness (Keskar et al. 2017, Metric 2.1), full space and random subspace.

    φ(ε, A) = (max_{y ∈ C_ε} f(x + A y) − f(x)) / (1 + f(x)) × 100,
    C_ε = {z : |z_i| ≤ ε (|(A⁺x)_i| + 1)}.

The box maximum is solved inexactly, as in the paper, by L-BFGS-B (SciPy) on −f(x + Ay) with
gradient −Aᵀ∇f; the optimiser's variables are float64. The solver starts at a small random point
inside the box: at a trained minimum ∇f(x) ≈ 0, and a start at y = 0 may stop at once with 0.
The reported maximum is the largest f seen at any evaluated (always feasible) point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from remedies.measures.lbfgsb import minimize_box
from remedies.measures.objective import Objective, to_numpy64


@dataclass
class KeskarResult:
    value: float  # the metric, in percent of (1 + f(x))
    f0: float
    fmax: float
    nit: int  # L-BFGS-B iterations
    nfev: int  # full-data loss+gradient evaluations (the dominant cost)
    wall_time_s: float
    solver_time_s: float  # of which inside SciPy's L-BFGS-B (not in loss evaluations)
    y: np.ndarray  # maximiser in the box coordinates (float64)


def random_subspace(
    n: int, p: int, seed: int, dtype: torch.dtype, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of A⁺ ∈ R^{p×n} uniform in [−1, 1] and normalised; A = pinv(A⁺) = A⁺ᵀ (A⁺A⁺ᵀ)⁻¹.

    Only p×n and p×p matrices are formed, never n×n. Returns (A⁺, G⁻¹) with G = A⁺A⁺ᵀ, so that
    A y = A⁺ᵀ (G⁻¹ y) and Aᵀ g = G⁻¹ (A⁺ g). A⁺ is held in the model's dtype (it is n·p numbers);
    the Gram matrix is formed and inverted in float64.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    pinv = torch.rand(p, n, generator=gen, dtype=torch.float64) * 2 - 1
    pinv /= pinv.norm(dim=1, keepdim=True)
    gram_inv = torch.linalg.inv(pinv @ pinv.T)  # p×p, well conditioned for p ≪ n
    return pinv.to(dtype=dtype, device=device), gram_inv


def keskar_sharpness(
    obj: Objective,
    eps: float,
    *,
    subspace_dim: int | None = None,
    iters: int = 10,
    seed: int = 0,
    start: float = 0.1,
) -> KeskarResult:
    """Metric 2.1 at obj.w0; subspace_dim None means A = I."""
    t0 = time.perf_counter()
    x = obj.w0
    f0 = obj.loss(x)  # forward only; not counted in nfev
    if subspace_dim is None:
        bound = eps * (np.abs(to_numpy64(x)) + 1.0)

        def lift(y: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(y).to(x)

        def pull(g: torch.Tensor) -> np.ndarray:
            return to_numpy64(g)
    else:
        pinv, gram_inv = random_subspace(x.numel(), subspace_dim, seed, x.dtype, x.device)
        bound = eps * (np.abs(to_numpy64(pinv @ x)) + 1.0)
        gram_inv_np = gram_inv.numpy()

        def lift(y: np.ndarray) -> torch.Tensor:
            return pinv.T @ torch.from_numpy(gram_inv_np @ y).to(x)

        def pull(g: torch.Tensor) -> np.ndarray:
            return gram_inv_np @ to_numpy64(pinv @ g)

    best = {"f": f0, "y": np.zeros_like(bound)}

    def neg_f(y: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = obj.loss_grad(x + lift(y))
        if f > best["f"]:
            best["f"], best["y"] = f, y.copy()
        return -f, pull(g.neg_())  # negate the float32 gradient in place: no extra copy

    rng = np.random.default_rng(seed)
    y0 = rng.uniform(-start, start, size=bound.shape) * bound
    # all `iters` iterations are run (no tolerance stop): SciPy's default gtol ends the solve at
    # iteration 0 near a very low-loss minimum, where the gradient is tiny but the box still
    # holds a much higher loss — exactly the sharp minima this metric must see
    res = minimize_box(neg_f, y0, -bound, bound, maxiter=iters)
    fmax = best["f"]
    return KeskarResult(
        value=(fmax - f0) / (1.0 + f0) * 100.0,
        f0=f0,
        fmax=fmax,
        nit=int(res.nit),
        nfev=int(res.nfev),
        wall_time_s=time.perf_counter() - t0,
        solver_time_s=res.solver_time_s,
        y=best["y"],
    )
