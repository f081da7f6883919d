"""1-D paths between two trained models (Keskar et al. 2017, Fig. 3 linear, Fig. 7 curved).

    linear: w(α) = α w_B + (1 − α) w_A
    curved: w(α) = sin(απ/2) w_B + cos(απ/2) w_A

over all trainable parameters (BN γ/β included, as the paper's code did), α ∈ [−1, 2] at 25 points
by default, in eval mode. With running-statistics BN the statistics are re-estimated on the
training set at every α (`torch.optim.swa_utils.update_bn`, as mode-connectivity studies do):
evaluating w(α) with A's statistics would make even α = 1 — model B itself — look broken. With
batch-statistics BN there is nothing to re-estimate. Both models are left exactly as found.
"""

from __future__ import annotations

import copy
import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils import vector_to_parameters
from torch.optim.swa_utils import update_bn

from remedies.measures.objective import ModelObjective
from remedies.measures.runner import preserved

PathKind = Literal["linear", "curved"]
COLUMNS = ("alpha", "train_loss", "train_acc", "test_loss", "test_acc")


def default_alphas() -> list[float]:
    return [float(a) for a in np.linspace(-1.0, 2.0, 25)]


def path_point(wa: torch.Tensor, wb: torch.Tensor, alpha: float, path: PathKind) -> torch.Tensor:
    if path == "linear":
        return alpha * wb + (1.0 - alpha) * wa
    return math.sin(alpha * math.pi / 2) * wb + math.cos(alpha * math.pi / 2) * wa


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    alphas: Sequence[float] | None = None,
    path: PathKind = "linear",
    *,
    chunk_size: int = 4096,
) -> list[dict[str, float]]:
    """Rows {alpha, train_loss, train_acc, test_loss, test_acc}; α = 0 is model A, α = 1 model B
    (linear path)."""
    if path not in ("linear", "curved"):
        raise ValueError(f"path must be 'linear' or 'curved', but got {path=}")
    alphas = default_alphas() if alphas is None else list(alphas)
    with preserved(model_a), preserved(model_b):
        model_a.eval()
        model_b.eval()
        # a private copy whose BN buffers are re-estimated per point; the objectives read them
        model = copy.deepcopy(model_a).eval()
        tr = ModelObjective(model, *train, chunk_size=chunk_size)
        te = ModelObjective(model, *test, chunk_size=chunk_size)
        wb = ModelObjective(model_b, *train[:1], train[1][:1]).w0
        if wb.shape != tr.w0.shape:
            raise ValueError("the two models have different parameter shapes")
        params = [p for p in model.parameters() if p.requires_grad]  # tr.w0's order
        rows = []
        for a in alphas:
            w = path_point(tr.w0, wb, a, path)
            if tr.bn_kind == "running":
                with torch.no_grad():
                    vector_to_parameters(w, params)
                update_bn(train[0].split(chunk_size), model)
            rows.append(
                {
                    "alpha": float(a),
                    "train_loss": tr.loss(w),
                    "train_acc": tr.accuracy(w),
                    "test_loss": te.loss(w),
                    "test_acc": te.accuracy(w),
                }
            )
    return rows


def write_csv(table: list[dict[str, float]], csv_path: Path) -> Path:
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(table)
    return csv_path


def plot_interpolation(
    table: list[dict[str, float]],
    png_path: Path,
    *,
    labels: tuple[str, str] = ("A", "B"),
    title: str | None = None,
) -> Path:
    """Like the paper's Fig. 3: cross-entropy (left axis, solid) and accuracy (right, dashed)."""
    import matplotlib  # here: start-up cost, paid only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # (as above)

    a = [r["alpha"] for r in table]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(a, [r["train_loss"] for r in table], "b-", label="train loss")
    ax.plot(a, [r["test_loss"] for r in table], "b--", label="test loss")
    ax.set_xlabel(f"alpha  (0 = {labels[0]}, 1 = {labels[1]})")
    ax.set_ylabel("cross entropy", color="b")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot(a, [100 * r["train_acc"] for r in table], "r-", label="train accuracy")
    ax2.plot(a, [100 * r["test_acc"] for r in table], "r--", label="test accuracy")
    ax2.set_ylabel("accuracy (%)", color="r")
    ax2.set_ylim(0, 100)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(
        lines,
        [str(ln.get_label()) for ln in lines],
        loc="upper center",
        fontsize=8,
        ncol=4,
        bbox_to_anchor=(0.5, -0.16),
        frameon=False,
    )  # below the axes: never over a curve
    if title:
        ax.set_title(title)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path
