"""The batch table on trial rows with known per-batch answers: the best recipe per batch, the
largest batch at SB's accuracy, the critical batch both ways, the red flag, the figure, and a
search from before targets."""

from __future__ import annotations

import pytest

from remedies.results.answer import answer_line
from remedies.results.batch_frontier import frontier, frontier_text, parent_metrics
from remedies.results.batch_frontier import plot_batch_frontier as plot

REFS = {
    "sb": {
        "batch_size": 64,
        "noise_scale": 640.0,
        "val_accuracy": 80.0,
        "test_accuracy": 79.0,
        "train_time_s": 20.0,
    },
    "target": {"accuracy": 79.0, "sb_best": 80.0, "tolerance": 1.0, "basis": "1 SE"},
    "n_val": 1600,
}


def row(n: int, batch: int, val: float, speed: float | None, sr: float | None) -> dict:
    m = {
        "batch_size": batch,
        "batch_ratio": batch / 64,
        "reached_target": 0.0,
        "speedup_vs_sb": 0.0,
        "speedup_vs_sb_budget": 3.0,
    }
    if speed is not None:
        m.update(
            reached_target=1.0,
            speedup_vs_sb=speed,
            steps_ratio_to_target=sr,
            scaling_efficiency=sr / (batch / 64),
            time_to_target_s=10 / speed,
            steps_to_target=1000 / sr,
        )
    return {
        "number": n,
        "state": "COMPLETE",
        "val_accuracy": val,
        "test_accuracy": val - 1,
        "metrics": m,
        "objectives": {},
        "sharpness": {},
    }


ROWS = [
    row(0, 128, 79.5, 1.5, 1.9),  # efficiency 0.95
    row(1, 128, 80.0, 1.8, 1.95),  # the faster one at 128
    row(2, 640, 79.2, 3.0, 6.0),  # efficiency 0.6
    row(3, 3200, 75.0, None, None),  # never reached
]


def test_best_recipe_per_batch_largest_and_critical():
    f = frontier(ROWS, REFS)
    assert [(t["batch"], t["row"]["number"], t["reached"]) for t in f["table"]] == [
        (128, 1, True),
        (640, 2, True),
        (3200, 3, False),
    ]
    assert f["largest"] == 640
    # efficiency 1 at 64, 0.975 at 128, 0.6 at 640: 1/1.2 crossed between 128 and 640
    assert 128 < f["critical_measured"] < 640
    assert f["critical_predicted"] == pytest.approx(1.2 * 64 + 0.2 * 640)
    assert parent_metrics(ROWS, REFS)["largest_batch_at_sb"] == 640
    # every reached batch efficient, the next never reached (efficiency 0): crossed in between
    fast = [row(0, 128, 80.0, 1.9, 1.98), row(1, 640, 79.5, 9.0, 9.5), ROWS[3]]
    f = frontier(fast, REFS)
    assert 640 < f["critical_measured"] < 3200 and "between batch 640 and 3200" in f["critical_how"]


def test_text_flags_a_steps_ratio_above_the_batch_ratio():
    text = "\n".join(frontier_text(ROWS, REFS))
    assert "largest batch that reaches SB's accuracy: 640" in text
    assert "⚠" not in text
    above = [*ROWS, row(4, 640, 79.9, 4.0, 12.0)]  # 12 steps ratio at a 10× batch
    text = "\n".join(frontier_text(above, REFS))
    assert "⚠ steps ratio > batch ratio" in text and "usually SB is not the best" in text


def test_answer_is_the_fastest_to_target_with_its_spread():
    line = answer_line(ROWS, REFS)
    assert (
        line.startswith("best recipe: trial 2,") and "3.00× faster than SB to SB's accuracy" in line
    )
    assert "whole budget 3.00×" in line and "± 1.0 validation SE" in line
    none = answer_line([ROWS[3]], REFS)
    assert "no trial reached the target 79.0 %" in none


def test_a_search_from_before_targets_says_why_not():
    old = {k: v for k, v in REFS.items() if k != "target"}
    assert "before runs stored their curves" in frontier_text(ROWS, old)[0]
    assert parent_metrics(ROWS, old) == {}


def test_the_figure_draws(tmp_path):
    plot(ROWS, REFS, "t").savefig(tmp_path / "b.png")
    assert (tmp_path / "b.png").stat().st_size > 1000
