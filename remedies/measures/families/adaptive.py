"""`adaptive`: adaptive sharpness, worst and average case (`remedies/measures/adaptive.py`)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from remedies.measures.adaptive import average_sharpness, worst_case_sharpness
from remedies.measures.objective import ModelObjective
from remedies.measures.registry import Measure, Record, Section, fmt, register_measure

KEY_PATTERN = r"(adaptive|sharp)_(l2|linf|avg)_rho([0-9.eE+-]+)"


class AdaptiveConfig(Section):
    """Adaptive sharpness: perturbations scaled elementwise by |w| + eta (Kwon et al. 2021).

    With eta = 0 the value is exactly invariant to the ReLU rescalings of Dinh et al. 2017; a
    positive eta keeps zero weights perturbable at the cost of exact invariance.
    """

    enabled: bool = False
    l2_rho: list[PositiveFloat] = [0.5]  # worst case in ‖δ/(|w|+η)‖₂ ≤ ρ → adaptive_l2_rho…
    linf_rho: list[PositiveFloat] = [2e-3]  # worst case in ‖δ/(|w|+η)‖∞ ≤ ρ → adaptive_linf_rho…
    average_rho: list[PositiveFloat] = [0.05]  # E f(w + (|w|+η)⊙ρξ) − f(w) → adaptive_avg_rho…
    average_dist: Literal["gaussian", "uniform"] = "gaussian"  # ξ ~ N(0, I) or U[−1, 1]ⁿ
    average_samples: int = Field(default=20, ge=2)  # Monte-Carlo samples (standard error kept)
    steps: PositiveInt = 20  # projected-ascent steps for the worst case
    eta: float = Field(default=0.0, ge=0.0)
    seed: int = 0


def adaptive_key(kind: str, rho: float) -> str:
    """`adaptive_l2_rho5e-01`, `adaptive_linf_rho2e-03`, `adaptive_avg_rho5e-02`."""
    return f"adaptive_{kind}_rho{fmt(rho)}"


def _todo(ac: AdaptiveConfig) -> dict[str, tuple[str, float]]:
    pairs = (("l2", ac.l2_rho), ("linf", ac.linf_rho), ("avg", ac.average_rho))
    return {adaptive_key(kind, r): (kind, r) for kind, rhos in pairs for r in rhos}


def keys(ac: AdaptiveConfig) -> list[str]:
    return list(_todo(ac))


def run(obj: ModelObjective, ac: AdaptiveConfig, names: set[str] | None) -> list[Record]:
    todo = _todo(ac) if names is None or "adaptive" in names else {}
    for key in names or ():
        if (m := re.fullmatch(KEY_PATTERN, key)) is not None and m[1] == "adaptive":
            todo[adaptive_key(m[2], float(m[3]))] = (m[2], float(m[3]))
    scale = obj.w0.abs() + ac.eta
    out = []
    for key, (kind, rho) in todo.items():
        extra: dict[str, Any]
        if kind == "avg":
            r = average_sharpness(
                obj, rho, ac.average_dist, scale=scale, samples=ac.average_samples, seed=ac.seed
            )
            extra = {
                "dist": ac.average_dist,
                "samples": ac.average_samples,
                "std_error": r.std_error,
            }
        else:
            r = worst_case_sharpness(obj, rho, kind, scale=scale, steps=ac.steps, seed=ac.seed)  # type: ignore[arg-type]
            extra = {"norm": kind, "steps": ac.steps}
        out.append(
            {
                "key": key,
                "value": r.value,
                "rho": rho,
                "eta": ac.eta,
                "scaling": "|w|+eta",
                "seed": ac.seed,
                "f0": r.f0,
                "function_evals": r.n_evals,
                "wall_time_s": r.wall_time_s,
                **extra,
                "suspect_why": ["no increase found"] if kind != "avg" and r.value <= 0 else [],
            }
        )
    return out


ADAPTIVE = register_measure(
    Measure("adaptive", AdaptiveConfig, keys, run, key_pattern=KEY_PATTERN, order=3)
)
