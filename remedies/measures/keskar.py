"""Keskar ε-sharpness (Keskar et al. 2017, Metric 2.1), full space and random subspace.

    φ(ε, A) = (max_{y ∈ C_ε} f(x + A y) − f(x)) / (1 + f(x)) × 100,
    C_ε = {z : |z_i| ≤ ε (|(A⁺x)_i| + 1)}.

The box maximum is solved inexactly, as in the paper, by L-BFGS-B (SciPy) on −f(x + Ay) with
gradient −Aᵀ∇f; the optimiser's variables are float64. The definition is the paper's; what
changed (measured on an F1/MNIST-1D LB minimum at f = 2e-5, where the old set-up read 0.006 and
this one 4056 at ε = 1e-3 — same in float64, so not a rounding problem) is how the solver is set
up to reach the maximum:

* **Steps that reach the box.** L-BFGS-B's first steps are plain gradient steps (its
  curvature estimate starts at 1 and is never updated while −f is concave), so in raw units a
  gradient of 5e-6 moved ≈ 5e-6 per iteration across a box 1e-3 wide: ten iterations ended 7 %
  of the way out. The solve runs in box units z = y / b ∈ [−1, 1]ⁿ (b the box half-widths)
  on f divided by a scale: mean(b²), which reproduces raw units' steps, or — when it is
  smaller — the start's gradient ∞-norm, so the first step moves its leading coordinate by
  a half-width. Steps are never smaller than before, and larger where they stalled. Scaling
  changes neither the feasible set nor the maximiser. Near zero loss ∇f shrinks with f (the
  softmax saturates), so this stall grew as training went on: why over-trained minima read
  flat.
* **Starts:** a seeded random point with |y_i| ≤ start·b_i (default), or the first-order vertex
  y₀ = b ⊙ sign ∇f (the box maximum of f's linear model, exact for convex f; on the F1 minimum
  above both starts reach the same value, 4056 and 4055), plus `restarts` more seeded random
  starts; the best of all is kept.
* **Say how far it moved** (share of the box width between start and answer, share of
  coordinates on a face, the KKT residual) and flag a value as suspect when the solver made no
  progress.
* **Say what regime it read:** `reach` = ‖A y*‖₂, the length of the maximising perturbation in
  parameter space, and `first_order` = Σᵢ bᵢ |(Aᵀ∇f(x))ᵢ| in the metric's units, the box maximum
  of f's linear model. A value close to `first_order` was set by the gradient at x, not by the
  landscape around it. That is what a p = 100 random subspace with unit-length columns reads:
  its reach is ε·√p (0.01 at ε = 1e-3) against ≈ 1 for the full box on F1, so near a minimum it
  ranks runs by their remaining gradient (measured on F1/MNIST-1D; docs/measures.md, Table 4).

The reported maximum is the largest f seen at any evaluated (always feasible) point. Whether f
itself is evaluated in float64 is the caller's choice (`measure.precision`; see runner.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from remedies.measures.lbfgsb import minimize_box
from remedies.measures.objective import Objective, to_numpy64

Init = Literal["vertex", "random"]

# the solver "made no progress" when its answer lies within this share of the box width of its
# start and that start is not itself a local (KKT) maximum of the box problem
MOVED_MIN = 1e-3
KKT_TOL = 1e-3


@dataclass
class KeskarResult:
    value: float  # the metric, in percent of (1 + f(x))
    f0: float
    fmax: float
    nit: int  # L-BFGS-B iterations (all starts)
    nfev: int  # full-data loss+gradient evaluations (the dominant cost), the vertex's ∇f included
    wall_time_s: float
    solver_time_s: float  # of which inside SciPy's L-BFGS-B (not in loss evaluations)
    y: np.ndarray  # maximiser in the box coordinates (float64)
    start_value: float = 0.0  # the metric at the best run's start point alone
    moved: float = 0.0  # mean |z* − z₀| / 2: how far the solver went, as a share of the box width
    at_bound: float = 0.0  # share of the maximiser's coordinates on a face of the box
    kkt_residual: float = 0.0  # ∞-norm of the projected (scaled) ascent gradient at the answer
    starts: int = 1
    suspect: list[str] = field(default_factory=list)  # reasons to doubt the value; [] = none
    reach: float = 0.0  # ‖A y*‖₂: how far from x, in parameter space, the maximum lies
    first_order: float = 0.0  # the linear model's box maximum, in the metric's units


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


def kkt_residual(z: np.ndarray, gz: np.ndarray) -> float:
    """How far z is from a local maximum of a function with ascent gradient gz over [−1, 1]ⁿ:
    the ∞-norm of the projected step clip(z + ĝ) − z, ĝ = gz / ‖gz‖∞ (0 at a KKT point)."""
    scale = float(np.max(np.abs(gz))) if gz.size else 0.0
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(np.clip(z + gz / scale, -1.0, 1.0) - z)))


def keskar_sharpness(
    obj: Objective,
    eps: float,
    *,
    subspace_dim: int | None = None,
    iters: int = 10,
    seed: int = 0,
    start: float = 0.1,
    init: Init = "random",
    restarts: int = 0,
    f0: float | None = None,
) -> KeskarResult:
    """Metric 2.1 at obj.w0; subspace_dim None means A = I.

    `init` picks the first start (a seeded random point with |y_i| ≤ start·b_i, or the
    first-order vertex); `restarts` adds that many seeded random starts; `iters` L-BFGS-B
    iterations are run from each (0: the starts are only evaluated), and the largest f seen
    anywhere is the answer. `f0`: f(obj.w0) when the caller has it already (one forward pass
    fewer; run_measures evaluates it to choose the precision).
    """
    t0 = time.perf_counter()
    x = obj.w0
    if f0 is None:
        f0 = obj.loss(x)  # forward only; not counted in nfev
    bound, lift, pull = _box(x, eps, subspace_dim, seed)
    nfev = 0

    def f_and_gz(z: np.ndarray) -> tuple[float, np.ndarray]:
        """f at y = b ⊙ z and its ascent gradient in box units, b ⊙ Aᵀ∇f."""
        nonlocal nfev
        nfev += 1
        f, g = obj.loss_grad(x + lift(bound * z))
        return f, bound * pull(g)

    # y = 0 is in the box
    best: dict[str, Any] = {"f": f0, "z": np.zeros_like(bound), "gz": None, "run": -1}
    _, gz = f_and_gz(np.zeros_like(bound))  # ∇f at x: the vertex start and `first_order`
    if init == "vertex":
        best["gz"] = gz
    starts = _starts(gz, init, start, restarts, np.random.default_rng(seed))

    runs: list[dict] = []
    nit, solver_time = 0, 0.0
    for k, z0 in enumerate(starts):
        f_start, gz_start = f_and_gz(z0)
        run = {"z0": z0, "f_start": f_start}
        runs.append(run)
        if f_start > best["f"]:
            best.update(f=f_start, z=z0.copy(), gz=gz_start, run=k)
        # step scale (see the module docstring): mean(b²) makes box units take the steps raw
        # units took; where the gradient is too small for those steps to reach a face, the
        # start's gradient ∞-norm does, so the first step moves its coordinate a half-width
        scale = min(float(np.mean(bound**2)), float(np.max(np.abs(gz_start)))) or 1.0
        cache = [(z0.copy(), f_start, gz_start)]

        def neg_f(z: np.ndarray, k=k, scale=scale, cache=cache) -> tuple[float, np.ndarray]:
            if cache and np.array_equal(z, cache[0][0]):  # the solver's first call: known
                _, f, gz = cache.pop()
            else:
                f, gz = f_and_gz(z)
            if f > best["f"]:
                best.update(f=f, z=z.copy(), gz=gz, run=k)
            return -(f - f0) / scale, -gz / scale

        if iters == 0:  # the start alone (e.g. the first-order vertex): no solver
            continue
        res = minimize_box(neg_f, z0, -np.ones_like(bound), np.ones_like(bound), maxiter=iters)
        nit += int(res.nit)
        solver_time += res.solver_time_s

    won = runs[best["run"]] if best["run"] >= 0 else {"z0": best["z"], "f_start": f0}
    out = _reading(best, won, f0, gz, bound, lift, iters)
    out.nit, out.nfev, out.starts, out.solver_time_s = nit, nfev, len(starts), solver_time
    out.wall_time_s = time.perf_counter() - t0
    return out


Lift = Callable[[np.ndarray], torch.Tensor]  # box coordinates y → a weight perturbation A y
Pull = Callable[[torch.Tensor], np.ndarray]  # ∇f in weight space → its y-coordinates, Aᵀ∇f


def _box(x: torch.Tensor, eps: float, dim: int | None, seed: int) -> tuple[np.ndarray, Lift, Pull]:
    """The box's half-widths b = ε(|A⁺x| + 1) and the maps between its coordinates and the
    weights: A = I (the full space), or a seeded random p-dim subspace."""
    if dim is None:
        return (
            eps * (np.abs(to_numpy64(x)) + 1.0),
            lambda y: torch.from_numpy(y).to(x),
            to_numpy64,
        )
    pinv, gram_inv = random_subspace(x.numel(), dim, seed, x.dtype, x.device)
    gram_inv_np = gram_inv.numpy()
    return (
        eps * (np.abs(to_numpy64(pinv @ x)) + 1.0),
        lambda y: pinv.T @ torch.from_numpy(gram_inv_np @ y).to(x),
        lambda g: gram_inv_np @ to_numpy64(pinv @ g),
    )


def _starts(
    gz: np.ndarray, init: Init, start: float, restarts: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The solver's starts in box units: the first-order vertex or a random point, then
    `restarts` seeded random points with |z_i| ≤ start."""
    if init == "vertex":
        sign = np.sign(gz)
        zero = sign == 0  # exactly flat coordinates (dead units, an exact minimum): pick a side
        sign[zero] = rng.choice([-1.0, 1.0], size=int(zero.sum()))
        first = sign
    else:
        first = rng.uniform(-start, start, size=gz.shape)
    return [first] + [rng.uniform(-start, start, size=gz.shape) for _ in range(restarts)]


def _reading(
    best: dict[str, Any],
    won: dict[str, Any],
    f0: float,
    gz: np.ndarray,
    bound: np.ndarray,
    lift: Lift,
    iters: int,
) -> KeskarResult:
    """The value at the best point seen, where it lies, and whether to doubt it; the solver's
    counts and times are the caller's to fill in."""
    fmax, z_best = best["f"], best["z"]
    moved = float(np.mean(np.abs(z_best - won["z0"]))) / 2.0
    kkt = kkt_residual(z_best, best["gz"]) if best["gz"] is not None else float("nan")
    value = (fmax - f0) / (1.0 + f0) * 100.0
    suspect = []
    if fmax <= f0:
        suspect.append("no increase found in the box")
    elif iters > 0 and moved < MOVED_MIN and not kkt <= KKT_TOL and won["f_start"] >= fmax:
        suspect.append("solver made no progress from its start (not a local maximum)")
    return KeskarResult(
        value=value,
        f0=f0,
        fmax=fmax,
        nit=0,
        nfev=0,
        wall_time_s=0.0,
        solver_time_s=0.0,
        y=bound * z_best,
        reach=float(lift(bound * z_best).double().norm()),
        first_order=float(np.abs(gz).sum()) / (1.0 + f0) * 100.0,
        start_value=(won["f_start"] - f0) / (1.0 + f0) * 100.0,
        moved=moved,
        at_bound=float(np.mean(np.abs(z_best) >= 1.0 - 1e-12)),
        kkt_residual=kkt,
        starts=0,
        suspect=suspect,
    )
