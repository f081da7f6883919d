"""Time to SB's accuracy: the speed-up as the field measures it, and how far the batch scales.

Why not whole budgets: SB's budget (say 20 epochs) is a choice, not a cost. A small-batch run is
usually within noise of its final accuracy well before its last epoch, so dividing SB's whole
budget by a trial's overstates every speed-up by however much SB was over-trained. MLPerf
Training stops the clock at the first evaluation that reaches a target quality; Shallue et al.
(2018) count steps to a target. Both are done here, with one target per search:

  target = the SB reference's best validation accuracy − tolerance

The tolerance defaults to one binomial standard error of that accuracy on the validation split
(`baselines.target.tolerance: se`). Why one SE: SB's best reading is the maximum over its
evaluations, each of which carries about one SE of split noise, so the maximum sits above SB's
true accuracy by about that much. A target of the raw maximum is one that SB itself only reaches
at its luckiest epoch and that a trial of equal quality misses half the time; one SE below it is
what the validation split can tell apart at all. (On the offline default, 1600 validation
samples at ~80 %: 1.0 point.) A fixed tolerance in points, or an absolute target accuracy, may
be set instead.

Each run's time to target is its training time (the clock the speed-up uses: CPU time of the
step loops on CPU, wall clock otherwise) summed up to and including the first evaluation at or
above the target; its steps to target likewise. A run that never reaches it has neither.

Scaling efficiency (Shallue et al.; McCandlish et al. 2018, "An empirical model of large-batch
training"): with S(B) the steps to target, the steps ratio S(B_SB)/S(B) over the batch ratio
B/B_SB is 1 under perfect (linear) scaling. McCandlish's model S(B) = S_min·(1 + B_noise/B), with
B_noise ≈ B_simple measured on the SB reference, bounds the steps ratio by
(B/B_SB)·(B_SB + B_noise)/(B + B_noise) ≤ B/B_SB. A measured ratio above the batch ratio is a red
flag (see `ABOVE_BATCH_RATIO`). The critical batch size is where steps exceed linear scaling by
20 % (Zhang et al. 2024, "How does critical batch size scale in pre-training?"): efficiency
1/1.2; by the model, B_crit = 1.2·B_SB + 0.2·B_noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# one row per evaluation: [epoch, steps, training wall s, training CPU s, val %], all cumulative
CURVE_KEYS = ("epoch", "steps", "train_time_s", "train_cpu_s", "val_accuracy")
OVERHEAD = 1.2  # Zhang et al. 2024: the critical batch is at 20 % more steps than linear scaling
ABOVE_BATCH_RATIO = (
    "a steps ratio above the batch ratio is more than linear scaling, which McCandlish's model "
    "does not allow: usually SB is not the best small-batch run (its lr untuned, or its schedule "
    "slower to reach the target), or the trial changed the problem and not only the batch "
    "(warm-up, an lr schedule, augmentation, fewer epochs with a decay that finishes earlier)"
)


def curve_of(history: Iterable[dict[str, Any]]) -> list[list[float]]:
    """A run's evaluations as cumulative [epoch, steps, train_time_s, train_cpu_s, val %] rows
    from the trainer's per-epoch history (each row's times are that epoch's alone)."""
    out, wall, cpu = [], 0.0, 0.0
    for r in history:
        wall += float(r.get("train_time_s") or 0.0)
        cpu += float(r.get("train_cpu_s") or 0.0)
        va = r.get("val_accuracy")
        acc = float(va) if va is not None and math.isfinite(float(va)) else float("nan")
        out.append([float(r["epoch"]), float(r.get("steps") or 0), wall, cpu, acc])
    return out


@dataclass(frozen=True)
class Target:
    """The accuracy every run is timed to, and how it was chosen."""

    accuracy: float  # validation accuracy, points
    sb_best: float  # the SB reference's best validation accuracy
    tolerance: float  # points below sb_best (0 when an absolute accuracy was set)
    basis: str  # one phrase: why this tolerance

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "sb_best": self.sb_best,
            "tolerance": self.tolerance,
            "basis": self.basis,
        }


def stderr_points(acc: float, n: int) -> float:
    """Binomial standard error of an accuracy (in points) measured on n samples."""
    p = acc / 100.0
    return 100.0 * math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan")


def best_val(curve: Sequence[Sequence[float]]) -> float | None:
    vals = [r[4] for r in curve if math.isfinite(r[4])]
    return max(vals) if vals else None


def sb_target(
    sb_curve: Sequence[Sequence[float]],
    n_val: int,
    tolerance: float | str = "se",
    accuracy: float | None = None,
) -> Target | None:
    """The search's target from its SB reference's curve; None without a finite evaluation."""
    best = best_val(sb_curve)
    if best is None:
        return None
    if accuracy is not None:
        return Target(accuracy, best, 0.0, f"set: {accuracy:g} % validation accuracy")
    if tolerance == "se":
        tol = stderr_points(best, n_val)
        return Target(best - tol, best, tol, f"1 standard error of SB's best (n = {n_val})")
    tol = float(tolerance)
    return Target(best - tol, best, tol, f"set: {tol:g} points below SB's best")


@dataclass(frozen=True)
class Reach:
    """Where a run first reached the target."""

    epoch: float
    steps: float
    train_time_s: float
    train_cpu_s: float

    def time(self, clock: str) -> float:
        return self.train_cpu_s if clock == "train_cpu_s" else self.train_time_s


def reach(curve: Sequence[Sequence[float]] | None, target: float) -> Reach | None:
    """The first evaluation at or above `target` (None: never reached, or no curve)."""
    for e, s, wall, cpu, acc in curve or []:
        if math.isfinite(acc) and acc >= target:
            return Reach(e, s, wall, cpu)
    return None


def predicted_steps_ratio(b: float, b_sb: float, b_noise: float) -> float:
    """McCandlish's S(B_SB)/S(B) for S(B) = S_min(1 + B_noise/B): at most the batch ratio."""
    return (b / b_sb) * (b_sb + b_noise) / (b + b_noise)


def critical_batch_predicted(b_sb: float, b_noise: float) -> float:
    """The batch at 20 % more steps than linear scaling from B_SB, by McCandlish's model:
    S(B)/S_lin(B) = (B + B_noise)/(B_SB + B_noise) = 1.2."""
    return OVERHEAD * b_sb + (OVERHEAD - 1) * b_noise


def critical_batch_measured(points: Iterable[tuple[float, float]]) -> tuple[float | None, str]:
    """From (batch, scaling efficiency) points, SB's (B_SB, 1) among them: the batch where the
    efficiency first falls below 1/1.2, log-interpolated between the ladder's entries.
    Returns (batch or None, a phrase saying how it was found)."""
    pts = sorted((float(b), float(e)) for b, e in points if math.isfinite(e))
    edge = 1 / OVERHEAD
    for (b0, e0), (b1, e1) in zip(pts, pts[1:], strict=False):
        if e1 < edge <= e0:
            f = (e0 - edge) / (e0 - e1)
            b = math.exp(math.log(b0) + f * (math.log(b1) - math.log(b0)))
            return b, f"efficiency crosses {edge:.2f} between batch {b0:g} and {b1:g}"
    if pts and pts[0][1] < edge:
        return pts[0][0], f"below {edge:.2f} already at batch {pts[0][0]:g}"
    if len(pts) > 1:
        return None, f"above every batch tried (efficiency ≥ {edge:.2f} up to {pts[-1][0]:g})"
    return None, "no batch besides SB reached the target"


def fastest_sb(refs: dict[str, Any]) -> tuple[int, float]:
    """(workers, training wall time) of SB on its fastest worker count: the SB reference on one
    worker, or SB timed on a trial's K (`sb_speed`)."""
    runs = [(1, float(refs["sb"]["train_time_s"]))]
    runs += [(int(r["workers"]), float(r["train_time_s"])) for r in refs.get("sb_speed") or []]
    return min(runs, key=lambda wt: wt[1])
