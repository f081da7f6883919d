"""`trace`: the Hessian trace by Hutchinson's estimator (`remedies/measures/hutchinson.py`)."""

from __future__ import annotations

import time

from pydantic import Field

from remedies.measures.hutchinson import hutchinson_trace
from remedies.measures.objective import ModelObjective
from remedies.measures.registry import Measure, Record, Section, register_measure

TRACE_KEYS = ("hessian_trace", "hessian_trace_se")


class TraceConfig(Section):
    """Hessian trace by Hutchinson's estimator with Rademacher probes (`hessian_trace`)."""

    enabled: bool = False
    probes: int = Field(default=100, ge=2)  # ≥ 2 so a standard error exists
    seed: int = 0


def keys(tc: TraceConfig) -> list[str]:
    return list(TRACE_KEYS)


def run(obj: ModelObjective, tc: TraceConfig, names: set[str] | None) -> list[Record]:
    t0 = time.perf_counter()
    r = hutchinson_trace(
        obj.hvp_at(obj.w0),
        obj.w0.numel(),
        probes=tc.probes,
        seed=tc.seed,
        dtype=obj.w0.dtype,
        device=obj.w0.device,
    )
    wall = time.perf_counter() - t0
    common = {
        "probes": tc.probes,
        "seed": tc.seed,
        "estimator": "hutchinson-rademacher",
        "hvp_products": tc.probes,
        "wall_time_s": wall,
    }
    return [
        {"key": TRACE_KEYS[0], "value": r.trace, "std_error": r.std_error, **common},
        {"key": TRACE_KEYS[1], "value": r.std_error, **common},
    ]


TRACE = register_measure(
    Measure("trace", TraceConfig, keys, run, key_pattern=r"hessian_trace(_se)?", order=2)
)
