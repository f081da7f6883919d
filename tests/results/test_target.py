"""Time to SB's accuracy on synthetic curves whose answers are known by hand, McCandlish's bound
against its closed form, and the critical batch on efficiency curves with a known crossing."""

from __future__ import annotations

import math

import pytest

from remedies.results.target import (
    critical_batch_measured,
    critical_batch_predicted,
    curve_of,
    predicted_steps_ratio,
    reach,
    sb_target,
)
from remedies.search.scores import scores


def history(vals: list[float], steps_per_epoch: int, cpu: float, wall: float | None = None):
    """Per-epoch rows as the trainer writes them: that epoch's own times, cumulative steps."""
    return [
        {
            "epoch": i + 1,
            "steps": (i + 1) * steps_per_epoch,
            "train_cpu_s": cpu,
            "train_time_s": wall if wall is not None else cpu,
            "val_accuracy": v,
        }
        for i, v in enumerate(vals)
    ]


# SB: 100 steps and 2 CPU s an epoch; best 80.0 at epoch 6; 79.0 first reached at epoch 4
SB_VALS = [60.0, 70.0, 76.0, 79.0, 79.5, 80.0, 79.8, 79.9]
SB = curve_of(history(SB_VALS, 100, 2.0))


def test_curve_is_cumulative():
    c = curve_of(history([50.0, float("nan"), 70.0], 10, 1.5, wall=2.0))
    assert [r[0] for r in c] == [1, 2, 3] and [r[1] for r in c] == [10, 20, 30]
    assert [r[2] for r in c] == [2.0, 4.0, 6.0] and [r[3] for r in c] == [1.5, 3.0, 4.5]
    assert math.isnan(c[1][4])


def test_target_is_sb_best_less_one_standard_error():
    t = sb_target(SB, n_val=1600)
    se = 100 * math.sqrt(0.8 * 0.2 / 1600)  # 1.0 point
    assert t is not None and t.sb_best == 80.0
    assert t.tolerance == pytest.approx(se) and t.accuracy == pytest.approx(80.0 - se)
    assert sb_target(SB, 1600, tolerance=0.25).accuracy == 79.75
    assert sb_target(SB, 1600, accuracy=70.0).accuracy == 70.0
    assert sb_target([[1, 1, 1, 1, float("nan")]], 100) is None


def test_reach_is_the_first_evaluation_at_or_above():
    got = reach(SB, 79.0)  # epoch 4 exactly at the target: counts
    assert got is not None and (got.epoch, got.steps, got.train_cpu_s) == (4, 400, 8.0)
    assert reach(SB, 80.0).epoch == 6  # type: ignore[union-attr]
    assert reach(SB, 80.01) is None and reach(None, 1.0) is None


def refs_for(target: float, sb_curve=SB, noise: float | None = None) -> dict:
    sb = {
        "curve": sb_curve,
        "train_cpu_s": sb_curve[-1][3],
        "train_time_s": sb_curve[-1][2],
        "device": "cpu",
        "steps": sb_curve[-1][1],
        "batch_size": 64,
        "val_accuracy": 79.9,
        "noise_scale": noise,
    }
    return {"sb": sb, "target": {"accuracy": target}}


def test_speedup_to_target_against_the_whole_budget():
    """LB at 10× the batch: 10 steps, 0.5 CPU s an epoch; reaches 79 at epoch 12 of 16."""
    vals = [50 + 2.5 * i for i in range(12)] + [79.2, 79.3, 79.1, 79.4]
    vals[11] = 79.0
    lb = curve_of(history(vals, 10, 0.5))
    got = scores(
        refs_for(79.0, noise=640.0),
        {"curve": lb, "train_cpu_s": 8.0, "steps": 160, "device": "cpu", "batch_size": 640},
    )
    assert got["speedup_vs_sb_budget"] == pytest.approx(16.0 / 8.0)  # whole budgets: 2×
    assert got["time_to_target_s"] == 6.0 and got["steps_to_target"] == 120  # epoch 12
    assert got["speedup_vs_sb"] == pytest.approx(8.0 / 6.0)  # SB reaches at epoch 4: 8 s
    assert got["steps_ratio_to_target"] == pytest.approx(400 / 120)
    assert got["batch_ratio"] == 10.0
    assert got["scaling_efficiency"] == pytest.approx(400 / 120 / 10)
    # McCandlish with B_noise = 640: 10 · (64 + 640) / (640 + 640) = 5.5
    assert got["steps_ratio_bound"] == pytest.approx(5.5)
    assert got["reached_target"] == 1


def test_a_run_that_never_reaches_has_no_time_and_zero_speed():
    lb = curve_of(history([50.0, 60.0, 70.0], 10, 0.5))
    got = scores(
        refs_for(79.0),
        {"curve": lb, "train_cpu_s": 1.5, "steps": 30, "device": "cpu", "batch_size": 640},
    )
    assert got["reached_target"] == 0 and got["speedup_vs_sb"] == 0.0
    assert "time_to_target_s" not in got and "steps_ratio_to_target" not in got
    assert got["speedup_vs_sb_budget"] == pytest.approx(16.0 / 1.5)  # still reported


def test_a_search_from_before_targets_keeps_its_whole_budget_speedup():
    old = {"sb": {"train_cpu_s": 16.0, "train_time_s": 16.0, "device": "cpu", "steps": 800}}
    got = scores(old, {"train_cpu_s": 4.0, "train_time_s": 4.0, "device": "cpu", "steps": 80})
    assert got["speedup_vs_sb"] == got["speedup_vs_sb_budget"] == 4.0
    assert "reached_target" not in got


def test_data_parallel_sb_is_timed_to_target_on_its_fastest_worker_count():
    """Wall clock against SB's fastest run to the target: SB on 2 workers reaches 79 at epoch 4
    in 4 × 1.5 s = 6 s (alone: 4 × 2 s = 8 s)."""
    sb2 = {"workers": 2, "train_time_s": 12.0, "curve": curve_of(history(SB_VALS, 100, 3.0, 1.5))}
    refs = {**refs_for(79.0), "sb_speed": [sb2]}
    lb = curve_of(history([79.5] * 4, 10, 2.0, wall=1.0))  # reaches at epoch 1: 1 s wall
    got = scores(
        refs,
        {
            "curve": lb,
            "train_time_s": 4.0,
            "train_cpu_s": 8.0,
            "steps": 40,
            "device": "cpu",
            "batch_size": 640,
        },
    )
    assert got["time_to_target_s"] == 1.0 and got["speedup_vs_sb"] == pytest.approx(6.0)


@pytest.mark.parametrize("b_sb, b_noise", [(64, 100.0), (64, 5000.0), (128, 1.0)])
def test_mcandlish_bound_and_critical_batch(b_sb, b_noise):
    # S(B) = S_min (1 + B_noise / B): the ratio from the model itself
    s = lambda b: 1 + b_noise / b  # noqa: E731
    for b in (b_sb, 2 * b_sb, 10 * b_sb, 1000 * b_sb):
        r = predicted_steps_ratio(b, b_sb, b_noise)
        assert r == pytest.approx(s(b_sb) / s(b)) and r <= b / b_sb + 1e-12
    bc = critical_batch_predicted(b_sb, b_noise)
    # at B_crit the steps are 20 % above linear scaling from SB
    assert s(bc) / (s(b_sb) * b_sb / bc) == pytest.approx(1.2)


def test_critical_batch_measured_interpolates_the_crossing():
    # efficiency 1 at 64, 0.9 at 128, 0.7 at 512: crosses 1/1.2 between 128 and 512
    b, how = critical_batch_measured([(64, 1.0), (128, 0.9), (512, 0.7)])
    f = (0.9 - 1 / 1.2) / (0.9 - 0.7)
    assert b == pytest.approx(math.exp(math.log(128) + f * (math.log(512) - math.log(128))))
    assert "between batch 128 and 512" in how
    assert critical_batch_measured([(64, 1.0), (640, 0.95)])[0] is None  # not reached yet
    assert critical_batch_measured([(64, 1.0)])[0] is None
