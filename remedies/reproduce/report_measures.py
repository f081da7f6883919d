"""The reproduction report's measures sections: where each Keskar maximum lies (its regime),
and every measure of seed 0's SB and LB side by side with the direction each calls."""

from __future__ import annotations

import math
from typing import Any

from remedies.reproduce.numbers import detail, fmt_g, mean_std, over_first_order


def regimes(keys: list[str], r_sb: list[dict], r_lb: list[dict]) -> list[str]:
    """How far each Keskar maximum lies from x (`reach` = ‖A y*‖) and how much of it f's linear
    model at x already gives (value / `first_order`; ≈ 1: the reading is the gradient's, not the
    landscape's) — what tells a full-space reading from a p = 100 one (docs/measures.md,
    Table 4)."""
    rows = []
    for k in keys:
        cells = []
        for rs in (r_sb, r_lb):
            reach = [d["reach"] for d in (detail(r, k) for r in rs) if "reach" in d]
            lin = over_first_order(rs, k)
            cells.append(
                (mean_std(reach)[0] if reach else math.nan, mean_std(lin)[0] if lin else math.inf)
            )
        fo = [
            mean_std([detail(r, k).get("first_order", math.nan) for r in rs])[0]
            for rs in (r_sb, r_lb)
        ]
        fo_ratio = f"{fo[1] / fo[0]:.3g}×" if fo[0] else "–"
        rows.append(
            f"| `{k}` | {fmt_g(cells[0][0])} / {fmt_g(cells[1][0])} | "
            f"{fmt_g(cells[0][1])} / {fmt_g(cells[1][1])} | {fo_ratio} |"
        )
    if not rows:
        return []
    return [
        "",
        "Where each maximum lies: `reach` = ‖A y*‖₂ (mean over seeds), and the value over "
        "`first_order`, the box maximum of f's linear model at x (≈ 1: the gradient at x set the "
        "reading, not the landscape around it). A p-dim random subspace whose columns have unit "
        "length reaches about ε·√p — far less than the full box — so near a minimum it reads "
        "first order and its LB/SB ratio follows the gradients' (last column).",
        "",
        "| measure | reach SB / LB | value ÷ first-order SB / LB | first-order LB/SB |",
        "|---|---|---|---|",
        *rows,
    ]


def suspect(r: dict[str, Any], key: str) -> bool:
    return bool(detail(r, key).get("suspect"))


CALLS = {
    "keskar": "box maximum of f",
    "lambda_max": "curvature at x",
    "trace": "curvature at x",
    "adaptive": "ball maximum",
}


def side_by_side(sb: dict[str, Any], lb: dict[str, Any]) -> list[str]:
    md = [
        "### Every measure, SB and LB side by side (seed 0)",
        "",
        "| measure | what it reads | SB | LB | LB/SB | calls LB | suspect (SB / LB) |",
        "|---|---|---|---|---|---|---|",
    ]
    det_sb = {d["key"]: d for d in sb["details"]}
    det_lb = {d["key"]: d for d in lb["details"]}
    for key, d in det_sb.items():
        if key not in det_lb or key.endswith("_se"):
            continue
        a, b = d["value"], det_lb[key]["value"]
        if d["measure"] == "noise_scale":
            call = "(batch-size diagnostic)"
        else:
            call = "sharper" if b > a else "flatter"
        ratio = f"{b / a:.2f}" if a else "–"
        sus = " / ".join(
            "yes: " + "; ".join(x["suspect_why"]) if x.get("suspect") else "no"
            for x in (d, det_lb[key])
        )
        md += [
            f"| `{key}` | {CALLS.get(d['measure'], 'B_simple')} | {fmt_g(a)} | {fmt_g(b)} | "
            f"{ratio} | {call} | {sus} |"
        ]
    md += [
        "",
        f"Train loss at the measured point: SB {sb['train_loss']:.2e}, LB "
        f"{lb['train_loss']:.2e}. λ_max and the trace read the curvature *at* the minimum, "
        "which near zero loss shrinks with the loss itself (the softmax saturates); Keskar's "
        "metric reads the largest loss in a box around it, which reaches past the saturated "
        "region. Where they disagree, docs/measures.md's *Which readings to trust* applies.",
        "",
    ]
    return md
