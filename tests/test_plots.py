"""The search's figures keep every tick label readable: no two drawn labels overlap on either axis,
whatever the range of the data (narrow, decades, all equal, one point, negative)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from remedies.results.plots import (
    plot_accuracy_vs_sharpness,
    plot_learning_curves,
    plot_pareto,
    plot_remedy_matrix,
    spans_decades,
)

GAP_PX = 1.0  # labels must be at least 2 px apart, not merely not intersecting

# sharpness values (x) → the x scale readable_axis should pick for them
X_RANGES = {
    "narrow_1.00-1.05": (np.linspace(1.0, 1.05, 9), "linear"),
    "narrow_1.0-1.2": (np.linspace(1.0, 1.2, 9), "linear"),
    "one_decade_1-10": (np.geomspace(1.0, 10.0, 7), "log"),
    "under_a_decade_2-50": (np.geomspace(2.0, 50.0, 7), "linear"),
    "six_decades": (np.geomspace(1e-3, 1e3, 13), "log"),
    "eighteen_decades": (np.geomspace(1e-9, 1e9, 10), "log"),
    "all_equal": (np.full(6, 2.5), "linear"),
    "single_point": (np.array([3.7]), "linear"),
    "negative_-3-2": (np.linspace(-3.0, 2.0, 8), "linear"),
    "negative_and_decades": (np.array([-5.0, 0.0, 1e-3, 1.0, 1e4]), "linear"),
    "large_offset": (np.linspace(10000.0, 10000.5, 6), "linear"),
    "tiny": (np.linspace(1e-7, 3e-7, 5), "linear"),
}
# accuracies (y): wide, narrow and constant
Y_RANGES = [np.linspace(10.0, 99.0, 13), np.linspace(97.0, 97.05, 13), np.full(13, 50.0)]


def drawn_labels(ax: Axes, axis: Axis) -> list[tuple[str, Bbox]]:
    """(text, window extent) of every tick label the renderer draws: major and minor, visible,
    non-empty, at a tick inside the axis' view interval."""
    renderer = ax.figure.canvas.get_renderer()
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
    out = []
    for minor in (False, True):
        locs = axis.get_minorticklocs() if minor else axis.get_majorticklocs()
        ticks = axis.get_minor_ticks(len(locs)) if minor else axis.get_major_ticks(len(locs))
        for loc, tick in zip(locs, ticks, strict=True):
            label = tick.label1  # the bottom/left label: the only ones these axes show
            in_view = lo - tol <= loc <= hi + tol
            if in_view and label.get_visible() and label.get_text():
                out.append((label.get_text(), label.get_window_extent(renderer)))
    return out


def assert_readable(fig: Figure) -> None:
    fig.canvas.draw()
    ax = fig.axes[0]
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        labels = drawn_labels(ax, axis)
        texts = [t for t, _ in labels]
        assert len(labels) >= 2, f"{name}: fewer than two tick labels: {texts}"
        assert len(set(texts)) == len(texts), f"{name}: repeated tick labels: {texts}"
        for (ta, a), (tb, b) in itertools.combinations(labels, 2):
            assert not a.padded(GAP_PX).overlaps(b.padded(GAP_PX)), (
                f"{name}: tick labels {ta!r} {a.bounds} and {tb!r} {b.bounds} overlap; all: {texts}"
            )


CASES = [(k, Y_RANGES[i % len(Y_RANGES)]) for i, k in enumerate(X_RANGES)]


@pytest.mark.parametrize(("case", "ys"), CASES, ids=[c for c, _ in CASES])
def test_accuracy_vs_sharpness_labels_never_overlap(case, ys):
    xs, scale = X_RANGES[case]
    ys = ys[: len(xs)]
    # two measures, as a search logs them: the same trials' accuracies against each
    half = max(1, len(xs) // 2)
    series = {
        "keskar_full_eps1e-03": list(zip(xs[:half], ys[:half], strict=True)),
        "lambda_max": list(zip(xs[half:], ys[half:], strict=True)),
    }
    fig = plot_accuracy_vs_sharpness(series)
    assert fig.axes[0].get_xscale() == scale
    assert_readable(fig)


@pytest.mark.parametrize(("case", "ys"), CASES, ids=[c for c, _ in CASES])
def test_pareto_labels_never_overlap(case, ys):
    xs, scale = X_RANGES[case]
    ys = ys[: len(xs)]
    done = list(zip(xs, ys, strict=True))
    front = [(x, y, i) for i, (x, y) in enumerate(done[:3])]
    fig = plot_pareto(
        done,
        front,
        xlabel="keskar_full_eps1e-03",
        ylabel="val_accuracy",
        title="space-20260101-120000",
    )
    assert fig.axes[0].get_xscale() == scale
    assert_readable(fig)


@pytest.mark.parametrize("case", ["narrow_1.0-1.2", "under_a_decade_2-50", "large_offset"])
def test_the_checker_catches_overlapping_labels(case):
    """The check above can fail: a plain log axis with matplotlib's default ticks (what these plots
    used before) labels minor ticks (1.025×10⁰, 1.05×10⁰, …) on top of each other here."""
    xs, _ = X_RANGES[case]
    fig = plot_accuracy_vs_sharpness({"k": list(zip(xs, Y_RANGES[0], strict=False))})
    fig.axes[0].set_xscale("log")  # resets the locators and formatters to the scale's defaults
    with pytest.raises(AssertionError, match="overlap"):
        assert_readable(fig)


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ([1.0, 10.0], True),
        ([1000.0, 1e4], True),
        ([0.999, 9.99], False),
        ([2.0, 50.0], False),
        ([1e-3, 1e3], True),
        ([0.0, 100.0], False),
        ([-1.0, 1e6], False),
        ([5.0], False),
        ([], False),
        ([float("nan"), 1.0, 100.0], True),
    ],
)
def test_spans_decades_needs_two_powers_of_ten(values, want):
    assert spans_decades(values) is want


def test_figures_save_as_png(tmp_path):
    fig = plot_accuracy_vs_sharpness({})  # no measured trial: still a valid (empty) figure
    fig.savefig(tmp_path / "a.png", dpi=100)
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("ys", Y_RANGES, ids=["wide", "narrow", "constant"])
def test_learning_curves_one_line_per_trial_front_named(ys):
    curves = {n: [(e + 1.0, float(y) - n) for e, y in enumerate(ys[: 3 + n])] for n in range(6)}
    curves[6] = [(1.0, float("nan"))]  # a diverged trial draws nothing and breaks nothing
    fig = plot_learning_curves(curves, front=[1, 4])
    assert_readable(fig)
    ax = fig.axes[0]
    assert len(ax.lines) == 6  # one per trial with a finite point
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["trial 1", "trial 4"]
    assert list(ax.lines[-1].get_xdata()) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # trial 4


def test_remedy_matrix_marks_what_each_front_trial_switched_on(tmp_path):
    names = ["augment", "ghost_bn", "sam", "warm_start"]
    on = [[True, False, True, False], [False, False, False, False], [True, True, True, True]]
    fig = plot_remedy_matrix([7, 2, 11], names, on)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == ["trial 7", "trial 2", "trial 11"]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])) for t in ax.texts}
    assert cells == {(i, j) for i, row in enumerate(on) for j, v in enumerate(row) if v}
    boxes = [t.get_window_extent() for t in ax.get_xticklabels()]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    fig.savefig(tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_remedy_matrix([], [], []).savefig(tmp_path / "empty.png")  # a front of none still draws
