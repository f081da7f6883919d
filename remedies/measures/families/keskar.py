"""`keskar`: Metric 2.1 of Keskar et al. 2017, full space and random subspaces (the solver:
`remedies/measures/keskar.py`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from remedies.measures.keskar import keskar_sharpness
from remedies.measures.objective import ModelObjective
from remedies.measures.registry import Measure, Record, Section, fmt, register_measure

KEY_PATTERN = r"keskar_(?:full|sub(\d+))_eps([0-9.eE+-]+)"


class KeskarConfig(Section):
    """Metric 2.1 of Keskar et al. 2017 (`keskar_full_eps…`, `keskar_sub{p}_eps…`)."""

    enabled: bool = True
    eps: list[PositiveFloat] = Field(default=[1e-3, 5e-4], min_length=1)  # box half-width factor
    full_space: bool = True  # A = I (Table 3)
    subspace_dims: list[PositiveInt] = []  # e.g. [100]: random A ∈ R^{n×p} (Table 4)
    # L-BFGS-B iterations, as in the paper; 0 reads the start alone (with init: vertex, the
    # box maximum of f's linear model at x: two loss+gradient passes, no solver)
    iters: int = Field(default=10, ge=0)
    seed: int = 0  # seeds the random subspace A, the random starts and ties of the vertex start
    # first start: a seeded random point inside the box, or the first-order vertex
    # y0 = b ⊙ sign ∇f (the linear model's box maximum; exact for convex f)
    init: Literal["vertex", "random"] = "random"
    restarts: int = Field(default=0, ge=0, le=20)  # more seeded random starts; the best is kept
    # random starts: y0 ~ U(-start·b, start·b) inside the box
    start: float = Field(default=0.1, gt=0.0, le=1.0)

    @field_validator("eps")
    @classmethod
    def _unique(cls, v: list[float]) -> list[float]:
        if len(set(v)) != len(v):
            raise ValueError(f"eps values must be distinct, but got {v}")
        return v


def keskar_key(eps: float, dim: int | None) -> str:
    """`keskar_full_eps1e-03` (full space) or `keskar_sub50_eps1e-03` (random 50-dim subspace)."""
    return f"keskar_{'full' if dim is None else f'sub{dim}'}_eps{fmt(eps)}"


def _todo(kc: KeskarConfig) -> dict[str, tuple[float, int | None]]:
    dims: list[int | None] = ([None] if kc.full_space else []) + list(kc.subspace_dims)
    return {keskar_key(e, d): (e, d) for d in dims for e in kc.eps}


def keys(kc: KeskarConfig) -> list[str]:
    return list(_todo(kc))


def run(obj: ModelObjective, kc: KeskarConfig, names: set[str] | None) -> list[Record]:
    todo = _todo(kc) if names is None or "keskar" in names else {}
    for key in names or ():
        if (m := re.fullmatch(KEY_PATTERN, key)) is not None:
            dim = int(m[1]) if m[1] else None
            todo[keskar_key(float(m[2]), dim)] = (float(m[2]), dim)
    out = []
    for key, (eps, dim) in todo.items():
        r = keskar_sharpness(
            obj,
            eps,
            subspace_dim=dim,
            iters=kc.iters,
            seed=kc.seed,
            start=kc.start,
            init=kc.init,
            restarts=kc.restarts,
            f0=obj.f0,
        )
        out.append(
            {
                "key": key,
                "value": r.value,
                "eps": eps,
                "space": "full" if dim is None else "random",
                "subspace_dim": dim,
                "subspace_seed": None if dim is None else kc.seed,
                "seed": kc.seed,
                "init": kc.init,
                "restarts": kc.restarts,
                "start": kc.start,
                "solver": "L-BFGS-B",
                "iters": kc.iters,
                "solver_iters": r.nit,
                "function_evals": r.nfev,
                "f0": r.f0,
                "fmax": r.fmax,
                "start_value": r.start_value,
                "moved": r.moved,
                "at_bound": r.at_bound,
                "kkt_residual": r.kkt_residual,
                "starts": r.starts,
                "reach": r.reach,
                "first_order": r.first_order,
                "wall_time_s": r.wall_time_s,
                "solver_time_s": r.solver_time_s,
                "suspect_why": list(r.suspect),
            }
        )
    return out


KESKAR = register_measure(
    Measure("keskar", KeskarConfig, keys, run, key_pattern=KEY_PATTERN, order=0)
)
