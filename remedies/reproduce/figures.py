"""Fig. 4 (test accuracy and sharpness against batch size) and Fig. 5 (warm start) as PNG.
Fig. 3 reuses `remedies.measures.interpolation.plot_interpolation`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_vs(
    xs: Sequence[float],
    acc: list[float],
    sharp: dict[str, list[float]],
    png: Path,
    *,
    xlabel: str,
    title: str,
    logx: bool = False,
) -> Path:
    """Test accuracy (left axis) and each sharpness series (right axis, log) against x."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(xs, acc, "ko-", label="test accuracy")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    if logx:
        ax.set_xscale("log")
    ax2 = ax.twinx()
    for (key, ys), style in zip(sharp.items(), ("bs--", "r^--", "gv--", "m*--"), strict=False):
        pos = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and y > 0]
        if pos:
            ax2.plot([p[0] for p in pos], [p[1] for p in pos], style, label=key)
    ax2.set_yscale("log")
    ax2.set_ylabel("Keskar sharpness")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(
        lines,
        [ln.get_label() for ln in lines],
        loc="upper center",
        fontsize=8,
        ncol=3,
        bbox_to_anchor=(0.5, -0.16),
        frameon=False,
    )
    ax.set_title(title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
