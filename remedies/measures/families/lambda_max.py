"""`lambda_max`: the top-k Hessian eigenvalues by Lanczos (`remedies/measures/lanczos.py`)."""

from __future__ import annotations

import time

from pydantic import PositiveFloat, PositiveInt

from remedies.measures.lanczos import lanczos_top
from remedies.measures.objective import ModelObjective
from remedies.measures.registry import Measure, Record, Section, register_measure


class LambdaMaxConfig(Section):
    """Top-k Hessian eigenvalues by Lanczos (`lambda_max`, `lambda_2`, …)."""

    enabled: bool = False
    k: PositiveInt = 1  # how many of the largest (algebraic) eigenvalues
    tol: PositiveFloat = 1e-3  # relative bound on each eigenvalue's error (residual² / gap)
    max_iter: PositiveInt = 100  # Hessian-vector products at most
    seed: int = 0  # start vector


def lambda_key(i: int) -> str:
    """The i-th largest Hessian eigenvalue (0-based): `lambda_max`, `lambda_2`, …"""
    return "lambda_max" if i == 0 else f"lambda_{i + 1}"


def keys(lc: LambdaMaxConfig) -> list[str]:
    """k keys (Lanczos can return fewer only on a model with fewer than k parameters)."""
    return [lambda_key(i) for i in range(lc.k)]


def run(obj: ModelObjective, lc: LambdaMaxConfig, names: set[str] | None) -> list[Record]:
    t0 = time.perf_counter()
    hvp = obj.hvp_at(obj.w0)
    r = lanczos_top(
        hvp,
        obj.w0.numel(),
        k=lc.k,
        tol=lc.tol,
        max_iter=lc.max_iter,
        seed=lc.seed,
        device=obj.w0.device,
    )
    wall = time.perf_counter() - t0
    out = []
    for i, (lam, bound) in enumerate(zip(r.eigenvalues, r.error_bounds, strict=True)):
        out.append(
            {
                "key": lambda_key(i),
                "value": lam,
                "error_bound": bound,
                "tol": lc.tol,
                "k": lc.k,
                "seed": lc.seed,
                "solver": "lanczos",
                "hvp_products": r.n_products,
                "converged": r.converged,
                "wall_time_s": wall,
                "suspect_why": [] if r.converged else ["Lanczos stopped before its bound met tol"],
            }
        )
    return out


LAMBDA_MAX = register_measure(
    Measure("lambda_max", LambdaMaxConfig, keys, run, key_pattern=r"lambda_(max|\d+)", order=1)
)
