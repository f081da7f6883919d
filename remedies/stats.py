"""One rank correlation for the whole project: Kendall's τ-b (SciPy's), ties counted as ties.

Why one: the search report, the measures' agreement table and the reproduction report each had
their own τ, two of them a hand-written variant that broke ties by the other variable — two
estimators under one name. Values agree with the old ones wherever neither list has ties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy.stats import kendalltau


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """τ-b of two equally long sequences; NaN for fewer than two pairs or a constant one."""
    if len(a) != len(b):
        raise ValueError(f"kendall_tau: {len(a)} values against {len(b)}")
    if len(a) < 2:
        return math.nan
    return float(kendalltau(list(a), list(b)).statistic)


def kendall_tau_p(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(τ-b, its two-sided p-value)."""
    if len(a) < 2:
        return math.nan, math.nan
    r = kendalltau(list(a), list(b))
    return float(r.statistic), float(r.pvalue)
