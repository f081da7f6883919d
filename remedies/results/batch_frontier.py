"""The batch axis: how large the batch can go before a recipe stops reaching SB's accuracy.

One row per batch size among a search's completed trials (a space that searches
`train.batch_size` over a ladder has several; every other search has one): the best recipe at
that batch — the fastest to the search's target, or the most accurate when none reached it —
with its accuracies, time and steps to target and scaling efficiency (`remedies.results.target`).
Then the largest batch that reached the target, the critical batch size by the measured curve and
by B_simple's prediction, and a figure of the steps ratio against the batch ratio, measured and
predicted. Reads trial rows and the references only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from remedies.results.answer import metric, reached
from remedies.results.target import (
    ABOVE_BATCH_RATIO,
    OVERHEAD,
    critical_batch_measured,
    critical_batch_predicted,
    predicted_steps_ratio,
)
from remedies.stats import finite

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def batch_of(row: dict[str, Any]) -> int | None:
    b = metric(row, "batch_size")
    return int(b) if finite(b) else None


def per_batch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best completed trial at each batch size, smallest batch first: the fastest that
    reached the target, else the most accurate (`reached` False)."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r["state"] == "COMPLETE" and finite(r.get("val_accuracy")) and (b := batch_of(r)):
            groups.setdefault(b, []).append(r)
    out = []
    for b in sorted(groups):
        rs = groups[b]
        hit = [r for r in rs if reached(r)]
        best = (
            max(hit, key=lambda r: metric(r, "speedup_vs_sb"))  # type: ignore[arg-type,return-value]
            if hit
            else max(rs, key=lambda r: r["val_accuracy"])
        )
        out.append({"batch": b, "trials": len(rs), "reached": bool(hit), "row": best})
    return out


def frontier(rows: list[dict[str, Any]], refs: dict[str, Any]) -> dict[str, Any]:
    """Per-batch rows, the largest batch at SB's accuracy and the critical batch both ways."""
    sb = refs["sb"]
    b_sb, b_noise = float(sb["batch_size"]), sb.get("noise_scale")
    table = per_batch(rows)
    # a batch at which no recipe reached the target took unboundedly many steps: efficiency 0
    pts = [(b_sb, 1.0)] + [
        (float(t["batch"]), float(e) if t["reached"] else 0.0)  # type: ignore[arg-type]
        for t in table
        if not t["reached"] or finite(e := metric(t["row"], "scaling_efficiency"))
    ]
    crit, how = critical_batch_measured(pts)
    reached = [t["batch"] for t in table if t["reached"]]
    return {
        "table": table,
        "largest": max(reached) if reached else None,
        "critical_measured": crit,
        "critical_how": how,
        "critical_predicted": critical_batch_predicted(b_sb, b_noise) if finite(b_noise) else None,
        "b_simple": b_noise if finite(b_noise) else None,
        "b_sb": b_sb,
    }


def _f(v: Any, spec: str, w: int) -> str:
    return f"{v:{spec}}".rjust(w) if finite(v) else "—".rjust(w)


def frontier_text(rows: list[dict[str, Any]], refs: dict[str, Any] | None) -> list[str]:
    """The report's batch section (empty without references)."""
    if not refs:
        return []
    tgt = refs.get("target")
    if not tgt:
        return [
            "time to target: not available — this search was run before runs stored their "
            "curves of evaluations; its speed-ups are whole budgets (re-run it to get them)"
        ]
    f = frontier(rows, refs)
    out = [
        f"time to SB's accuracy: target {tgt['accuracy']:.2f} % validation "
        f"(SB's best {tgt['sb_best']:.2f} % − {tgt['tolerance']:.2f}: {tgt['basis']})",
        f"{'batch':>6} {'trials':>6} {'trial':>5} {'val':>6} {'test':>6} {'t→tgt s':>8} "
        f"{'steps→':>7} {'× SB':>6} {'steps×':>7} {'batch×':>7} {'effic.':>6} {'bound':>6}",
    ]
    flagged = False
    for t in f["table"]:
        r = t["row"]
        sr, br = metric(r, "steps_ratio_to_target"), metric(r, "batch_ratio")
        above = finite(sr) and finite(br) and sr > br  # type: ignore[operator]
        flagged |= above
        cells = [
            _f(r["val_accuracy"], ".1f", 6),
            _f(r.get("test_accuracy"), ".1f", 6),
            _f(metric(r, "time_to_target_s"), ".1f", 8),
            _f(metric(r, "steps_to_target"), ".0f", 7),
            _f(metric(r, "speedup_vs_sb") if t["reached"] else None, ".2f", 6),
            _f(sr, ".2f", 7),
            _f(br, ".2f", 7),
            _f(metric(r, "scaling_efficiency"), ".2f", 6),
            _f(metric(r, "steps_ratio_bound"), ".2f", 6),
        ]
        out.append(
            f"{t['batch']:>6} {t['trials']:>6} {r['number']:>5} "
            + " ".join(cells)
            + ("" if t["reached"] else "  (not reached: most accurate shown)")
            + ("  ⚠ steps ratio > batch ratio" if above else "")
        )
    largest = f["largest"]
    out.append(
        f"largest batch that reaches SB's accuracy: {largest}"
        if largest
        else "largest batch that reaches SB's accuracy: none of the batches tried"
    )
    crit = f["critical_measured"]
    measured = f"≈ {crit:.0f}" if crit else "not located"
    out.append(
        f"critical batch (steps {OVERHEAD - 1:.0%} above linear scaling from SB, Zhang et al. "
        f"2024): measured {measured} ({f['critical_how']})"
    )
    if f["critical_predicted"] is not None:
        out.append(
            f"  predicted from B_simple = {f['b_simple']:.0f} (SB's trained point): "
            f"1.2·{f['b_sb']:.0f} + 0.2·B_simple = {f['critical_predicted']:.0f}"
        )
    else:
        out.append("  predicted: B_simple was not measured on the SB reference")
    if flagged:
        out.append(f"  ⚠ {ABOVE_BATCH_RATIO}")
    return out


def parent_metrics(rows: list[dict[str, Any]], refs: dict[str, Any] | None) -> dict[str, float]:
    """The batch axis's figures for the search's parent run."""
    if not refs or not refs.get("target"):
        return {}
    f = frontier(rows, refs)
    keys = ("largest", "critical_measured", "critical_predicted", "b_simple")
    names = ("largest_batch_at_sb", "critical_batch_measured", "critical_batch_predicted")
    return {n: float(f[k]) for n, k in zip((*names, "sb_b_simple"), keys, strict=True) if f[k]}


def plot_batch_frontier(rows: list[dict[str, Any]], refs: dict[str, Any], title: str) -> Figure:
    """Steps ratio to target against batch ratio: the best trial per batch (measured), linear
    scaling, and McCandlish's prediction from B_simple (when measured)."""
    import matplotlib  # here: start-up cost, paid only when plotting

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    f = frontier(rows, refs)
    b_sb = f["b_sb"]
    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.add_subplot()
    pts = [
        (t["batch"], sr)
        for t in f["table"]
        if t["reached"] and finite(sr := metric(t["row"], "steps_ratio_to_target"))
    ]
    xs = [b_sb] + [float(t["batch"]) for t in f["table"]]
    hi = max(xs) * 1.5
    grid = [b_sb * (hi / b_sb) ** (i / 50) for i in range(51)]
    ax.plot(grid, [b / b_sb for b in grid], color="grey", ls="--", lw=0.8, label="linear scaling")
    if f["b_simple"]:
        ax.plot(
            grid,
            [predicted_steps_ratio(b, b_sb, f["b_simple"]) for b in grid],
            color="C1",
            label=f"McCandlish, B_simple = {f['b_simple']:.0f}",
        )
    ax.scatter([b_sb], [1.0], marker="*", s=120, color="C2", label=f"SB (batch {b_sb:.0f})")
    if pts:
        ax.plot([b for b, _ in pts], [s for _, s in pts], "o-", color="C0", label="measured")
    for c, ls in ((f["critical_measured"], "-"), (f["critical_predicted"], ":")):
        if c:
            ax.axvline(c, color="C3", lw=0.8, ls=ls)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size (samples; red: critical batch, measured — / predicted ··)")
    ax.set_ylabel("speed-up in steps to SB's accuracy (SB = 1)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
