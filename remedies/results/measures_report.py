"""Every sharpness measure of a search side by side, with each value's doubt.

Why: the measures can disagree — near zero loss λ_max and the Hessian trace read the curvature
*at* the minimum, which shrinks with the loss, while Keskar's metric reads the largest loss in a
box around it. A search that minimises one of them should show how the others ranked the same
trials, and which values their own solver flagged (`suspect` in each measure's details).
"""

from __future__ import annotations

import itertools
from typing import Any

from remedies.stats import kendall_tau


def suspect_flags(details: list[dict[str, Any]]) -> dict[str, list[str]]:
    """key → reasons, for the values a measure flagged (empty when none was)."""
    return {d["key"]: list(d.get("suspect_why") or []) for d in details if d.get("suspect")}


def suspect_metrics(details: list[dict[str, Any]]) -> dict[str, float]:
    """`suspect_<key>` = 1.0 / 0.0 for every measured value: what a run logs to MLflow."""
    return {f"suspect_{d['key']}": float(bool(d.get("suspect"))) for d in details}


def measures_section(study) -> str:
    """Text for `remedies report`: per completed trial every measure (a `*` marks a suspect
    value), and how far each pair of measures agrees on the trials' order (Kendall τ)."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE" and t.user_attrs.get("sharpness")
    ]
    if not trials:
        return ""
    keys = sorted({k for t in trials for k in t.user_attrs["sharpness"]})
    out = [
        "",
        "Every measure per completed trial (* = flagged suspect by its solver: no "
        "progress, or a loss below float32 resolution):",
        f"{'trial':>6} " + " ".join(f"{k[:22]:>23}" for k in keys),
    ]
    for t in trials:
        sus = t.user_attrs.get("sharpness_suspect") or {}
        cells = []
        for k in keys:
            v = t.user_attrs["sharpness"].get(k)
            cells.append(f"{'' if v is None else f'{v:.4g}'}{'*' if k in sus else ' ':1}")
        out.append(f"{t.number:>6} " + " ".join(f"{c:>23}" for c in cells))
    pairs = []
    for a, b in itertools.combinations(keys, 2):
        both = [
            (t.user_attrs["sharpness"][a], t.user_attrs["sharpness"][b])
            for t in trials
            if a in t.user_attrs["sharpness"] and b in t.user_attrs["sharpness"]
        ]
        if len(both) >= 3:
            pairs.append((a, b, kendall_tau([x for x, _ in both], [y for _, y in both]), len(both)))
    if pairs:
        out += [
            "",
            "Do the measures call the same trials sharper? (Kendall τ across trials; "
            "+1 = same order, −1 = opposite):",
        ]
        out += [f"  {a} vs {b}: τ = {tau:+.2f} (n = {n})" for a, b, tau, n in pairs]
    n_sus = sum(len(t.user_attrs.get("sharpness_suspect") or {}) for t in trials)
    if n_sus:
        why = "docs/measures.md, *Which readings to trust*"
        out += ["", f"{n_sus} value(s) flagged suspect ({why}):"]
        out += [
            f"  trial {t.number} {k}: {'; '.join(why) or 'suspect'}"
            for t in trials
            for k, why in (t.user_attrs.get("sharpness_suspect") or {}).items()
        ]
    return "\n".join(out)
