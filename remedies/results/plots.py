"""The search's figures — Pareto front, accuracy vs sharpness, the sharpness evidence, learning
curves, remedies on the front — readable at any data range.

Why a module of its own: the figures take plain numbers (no Optuna study), so the tick-label layout
can be tested on any data range directly; `report.write_artifacts` feeds them a study's trials.
Matplotlib is imported only when a figure is drawn (the CLI imports `report` for every command).

Why the axis handling: sharpness spans six decades across measures and remedies — or sits within a
few percent (1.00–1.05), or every trial has the same value, or there is one trial. A log axis over
less than a decade labels its minor ticks (1.01, 1.02, … in 10^x notation) and they collide, and
symlog does the same around zero; so log is used only where it has decades to label, linear
everywhere else, and both get a bounded number of short labels.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from remedies.stats import finite

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure  # (as above)

MAX_TICKS = 7  # labelled ticks per axis at most: far fewer than a 6 × 4.5 inch axis has room for
FIGSIZE = (6.0, 4.5)  # inches; saved at 100 dpi


def spans_decades(values: Sequence[float]) -> bool:
    """True when the values are positive and at least two powers of ten lie within their range.

    Why two: a log axis labels only powers of ten, so over a narrower range it would show one
    label (or none) and fall back to labelling minor ticks, which overlap."""
    vals = [v for v in values if finite(v)]
    if not vals or min(vals) <= 0:
        return False
    lo = math.ceil(math.log10(min(vals)) - 1e-9)  # tolerance: log10(1000) = 2.9999999999999996
    hi = math.floor(math.log10(max(vals)) + 1e-9)
    return hi > lo


def readable_axis(
    ax: Axes, which: Literal["x", "y"], values: Sequence[float], *, log: bool = True
) -> None:
    """Scale and ticks of one axis so that its tick labels never overlap, at any range.

    Log (when `log` and the values span decades): at most MAX_TICKS powers of ten, labelled as
    such; minor ticks unlabelled. Otherwise linear (negative values included): at most MAX_TICKS
    ticks at round steps, with a common offset moved to the axis corner so labels stay short
    (1.00–1.05 reads 1.00 … 1.05; 10000.0–10000.5 reads 0.0 … 0.5 and +1e4). Matplotlib widens an
    all-equal or single-value range around the value, so those get several ticks too.
    """
    from matplotlib import ticker  # here: start-up cost, paid only when plotting

    axis = ax.xaxis if which == "x" else ax.yaxis
    set_scale = ax.set_xscale if which == "x" else ax.set_yscale
    if log and spans_decades(values):
        set_scale("log")  # first: setting a scale resets the locators and formatters
        axis.set_major_locator(ticker.LogLocator(base=10, numticks=MAX_TICKS))
        axis.set_major_formatter(ticker.LogFormatterSciNotation())
    else:
        set_scale("linear")
        # round steps (AutoLocator's): 1.00, 1.02, …, never 1.005, 1.020, 1.035
        axis.set_major_locator(ticker.MaxNLocator(nbins=MAX_TICKS - 1, steps=[1, 2, 2.5, 5, 10]))
        axis.set_major_formatter(ticker.ScalarFormatter(useOffset=True))
    axis.set_minor_formatter(ticker.NullFormatter())


def _new_figure() -> tuple[Figure, Axes]:
    """A figure on its own Agg canvas: no pyplot state, no global backend switch, headless."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # here: start-up cost
    from matplotlib.figure import Figure  # (as above)

    fig = Figure(figsize=FIGSIZE)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot_pareto(
    done: Sequence[tuple[float, float]],
    front: Sequence[tuple[float, float, int]],
    xlabel: str,
    ylabel: str,
    title: str,
) -> Figure:
    """All completed trials (x, y) in grey and the front (x, y, trial number) as a labelled line.

    x is the second objective (sharpness, usually: log allowed), y the first (accuracy: linear).
    """
    fig, ax = _new_figure()
    ax.scatter([x for x, _ in done], [y for _, y in done], c="lightgray", label="completed trials")
    ax.plot([x for x, _, _ in front], [y for _, y, _ in front], "o-", c="C3", label="Pareto front")
    for x, y, number in front:
        ax.annotate(str(number), (x, y), fontsize=8)
    readable_axis(ax, "x", [x for x, _ in done] + [x for x, _, _ in front])
    readable_axis(ax, "y", [y for _, y in done] + [y for _, y, _ in front], log=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_sharpness(series: Mapping[str, Sequence[tuple[float, float]]]) -> Figure:
    """One colour per sharpness measure: (sharpness, val_accuracy %) of every measured trial."""
    fig, ax = _new_figure()
    xs: list[float] = []
    ys: list[float] = []
    for i, (key, pts) in enumerate(series.items()):
        ax.scatter([a for a, _ in pts], [b for _, b in pts], label=key, c=f"C{i}", s=18)
        xs += [a for a, _ in pts]
        ys += [b for _, b in pts]
    readable_axis(ax, "x", xs)
    readable_axis(ax, "y", ys, log=False)
    ax.set_xlabel("sharpness")
    ax.set_ylabel("val_accuracy (%)")
    if series:
        ax.legend(fontsize=8)
    ax.set_title("accuracy vs sharpness, all measured trials")
    fig.tight_layout()
    return fig


def plot_sharpness_vs_accuracy(
    points: Sequence[tuple[float, float, str, bool]], xlabel: str, title: str
) -> Figure:
    """The sharpness evidence's figure: (sharpness, test accuracy %, remedy set, flagged) per
    completed trial, one colour per remedy set, flagged trials (sharper but more accurate than
    the median trial) ringed in black, the medians dotted. x is log where it spans decades
    (`readable_axis`)."""
    fig, ax = _new_figure()
    if len(points) >= 2:  # the medians the flags are drawn against
        ax.axvline(statistics.median(x for x, _, _, _ in points), c="gray", ls=":", lw=0.8)
        ax.axhline(statistics.median(y for _, y, _, _ in points), c="gray", ls=":", lw=0.8)
    labels = sorted({label for _, _, label, _ in points})
    # one distinct colour per remedy set (a search often has more than tab10's ten), and
    # a marker shape besides, so neighbours in the palette still differ
    from matplotlib import colormaps  # here: start-up cost

    cmap = colormaps["tab20"]
    for i, label in enumerate(labels):
        pts = [(x, y) for x, y, lab, _ in points if lab == label]
        ax.scatter([x for x, _ in pts], [y for _, y in pts], color=cmap(i % 20),
                   marker="osD^v"[i % 5], s=26, label=label)  # fmt: skip
    ringed = [(x, y) for x, y, _, flag in points if flag]
    if ringed:
        ax.scatter(
            [x for x, _ in ringed],
            [y for _, y in ringed],
            s=90,
            facecolors="none",
            edgecolors="black",
            label="sharper but more accurate",
        )
    readable_axis(ax, "x", [x for x, _, _, _ in points])
    readable_axis(ax, "y", [y for _, y, _, _ in points], log=False)
    ax.set_xlabel(f"{xlabel} (lower: flatter)")
    ax.set_ylabel("test_accuracy (%)")
    if points:  # beside the axes: inside, it hid the trials it names
        ax.legend(fontsize=7, title="remedies", title_fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # fmt: skip
        fig.set_size_inches(9.0, fig.get_size_inches()[1])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_learning_curves(
    curves: Mapping[int, Sequence[tuple[float, float]]], front: Sequence[int]
) -> Figure:
    """Every trial's validation accuracy per epoch on one chart: the Pareto front's trials in
    colour and named in the legend, the others thin and grey (a pruned trial's curve stops)."""
    fig, ax = _new_figure()
    ys: list[float] = []
    on_front = set(front)
    for number, pts in sorted(curves.items(), key=lambda kv: kv[0] in on_front):
        pts = [(e, v) for e, v in pts if finite(v)]
        if not pts:
            continue
        ys += [v for _, v in pts]
        if number in on_front:
            ax.plot(*zip(*pts, strict=True), "o-", ms=3, lw=1.6, label=f"trial {number}")
        else:
            ax.plot(*zip(*pts, strict=True), "-", c="lightgray", lw=0.9)
    readable_axis(ax, "y", ys, log=False)
    ax.xaxis.set_major_locator(_int_locator())
    ax.set_xlabel("epoch")
    ax.set_ylabel("val_accuracy (%)")
    if on_front & set(curves):
        ax.legend(fontsize=8, title="Pareto front", title_fontsize=8)
    ax.set_title(f"learning curves, {len(curves)} trials (grey: not on the front)")
    fig.tight_layout()
    return fig


def plot_remedy_matrix(
    trials: Sequence[int], remedies: Sequence[str], on: Sequence[Sequence[bool]]
) -> Figure:
    """Which remedies each Pareto trial switched on: one row per trial (best first), one column
    per remedy of the search, a filled cell where it was on."""
    rows, cols = max(1, len(trials)), max(1, len(remedies))
    fig, ax = _new_figure()
    fig.set_size_inches(max(4.0, 1.0 + 0.55 * cols), max(2.5, 1.6 + 0.32 * rows))
    grid = [[1.0 if v else 0.0 for v in row] for row in on] or [[0.0] * cols]
    ax.imshow(grid, cmap="Greens", vmin=0, vmax=1.3, aspect="auto")
    ax.set_xticks(range(len(remedies)), list(remedies), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(trials)), [f"trial {t}" for t in trials], fontsize=8)
    ax.set_xticks([x - 0.5 for x in range(1, cols)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, rows)], minor=True)
    ax.grid(which="minor", color="white", lw=2)
    ax.tick_params(which="minor", length=0)
    for i, row in enumerate(on):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, "on", ha="center", va="center", fontsize=7, color="white")
    ax.set_title("remedies on, Pareto-front trials", fontsize=10)
    fig.tight_layout()
    return fig


def _int_locator():
    from matplotlib import ticker  # here: start-up cost, paid only when plotting

    return ticker.MaxNLocator(nbins=MAX_TICKS - 1, integer=True)
