"""Gap closed against speedup over SB: the figure that answers "as accurate as SB, how fast?".

One point per completed trial (x: `speedup_vs_sb`, y: `test_gap_closed` — or, when SB is not
above plain LB and the gap is undefined, test accuracy minus SB's), the references as markers
(SB at (1, 1), plain LB at its speedup and 0), and guides at gap 1 (SB's accuracy) and 2× speed.
Plain numbers in, a matplotlib Figure out; `report.write_artifacts` saves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from remedies.results.answer import metric
from remedies.stats import finite

if TYPE_CHECKING:
    from matplotlib.figure import Figure  # (as above)


def plot_gap_vs_speedup(rows: list[dict[str, Any]], refs: dict[str, Any], title: str) -> Figure:
    import matplotlib  # here: start-up cost, paid only when plotting

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # (as above)

    sb, lb = refs["sb"], refs.get("lb")
    gap_defined = lb is not None and sb["test_accuracy"] > lb["test_accuracy"]
    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.add_subplot()
    pts = []
    for r in rows:
        if r["state"] != "COMPLETE":
            continue
        x = metric(r, "speedup_vs_sb")
        y = (
            metric(r, "test_gap_closed")
            if gap_defined
            else (r["test_accuracy"] - sb["test_accuracy"])
            if finite(r.get("test_accuracy"))
            else None
        )
        if finite(x) and finite(y):
            pts.append((x, y, r["number"]))
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, label="trials")
        for x, y, n in pts:
            ax.annotate(str(n), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.scatter(
        [1.0],
        [1.0 if gap_defined else 0.0],
        marker="*",
        s=120,
        color="C2",
        label=f"SB (batch {sb['batch_size']})",
    )
    if lb is not None:
        ly = 0.0 if gap_defined else lb["test_accuracy"] - sb["test_accuracy"]
        ax.scatter(
            [sb["train_time_s"] / lb["train_time_s"]],
            [ly],
            marker="s",
            s=50,
            color="C3",
            label="plain LB",
        )
    ax.axhline(1.0 if gap_defined else 0.0, color="grey", lw=0.8, ls="--")
    ax.axvline(2.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("speedup vs SB (training time, same threads)")
    ax.set_ylabel("test gap closed (1 = SB)" if gap_defined else "test accuracy − SB (points)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
