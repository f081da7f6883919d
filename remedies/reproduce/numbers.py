"""Numbers the reproduction report prints: mean ± std, coefficients of variation, the
thresholds its verdicts use, and reading a value's details."""

from __future__ import annotations

import math
import statistics
from typing import Any

from remedies.reproduce.protocol import data_title

CV_MAX = 0.5  # "stable across seeds": coefficient of variation at most this
RATIO_MIN = 5.0  # LB/SB sharpness the report checks for in every seed


def mean_std(vals: list[float]) -> tuple[float, float]:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def cv(vals: list[float]) -> float:
    m, s = mean_std(vals)
    return s / abs(m) if m else math.inf


def ms(vals: list[float]) -> str:
    """mean ± std with two decimals, or three significant digits for small values."""
    m, s = mean_std(vals)
    if math.isnan(m):
        return "–"
    if abs(m) >= 1 or m == 0:
        return f"{m:.2f} ± {s:.2f}"
    return f"{m:.3g} ± {s:.2g}"


def fmt_g(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def fmt_pm(p: tuple[float, float]) -> str:
    return f"{p[0]:g} ± {p[1]:g}"


def detail(r: dict[str, Any], key: str) -> dict[str, Any]:
    return next((d for d in r["details"] if d["key"] == key), {})


def over_first_order(rs: list[dict[str, Any]], key: str) -> list[float]:
    """value ÷ first_order of `key` in each run that recorded a non-zero first_order."""
    ds = [detail(r, key) for r in rs]
    return [d["value"] / d["first_order"] for d in ds if d.get("first_order")]


def label(net: str, outcomes: list) -> str:
    """`C1 / Fashion-MNIST`: every measured number is labelled with its net and data set."""
    return f"{net} / {net_data_title(net, outcomes)}"


def net_data_title(net: str, outcomes: list) -> str:
    """The data set `net` trained on in these runs, as a report names it (e.g. Fashion-MNIST)."""
    o = next(o for o in outcomes if o.spec.net == net)
    return data_title(o.result["config"]["data"]["name"])
