"""A trial's standing against the search's references: speed-up over SB and gap closed.

speedup_vs_sb = t_SB / t_trial to the target                (`remedies.results.target`: the
                first evaluation at or above SB's best validation accuracy − tolerance; 0 when
                the trial never reached it — infinitely slow: infeasible for any speed
                constraint, and still a value an objective can rank; `reached_target` 0/1)
                t: training time only, same threads — the process's CPU time on CPU, the wall
                clock on a GPU or where CPU time was not recorded
speedup_vs_sb_budget = the same clock over whole budgets     (what speedup_vs_sb was before)
speedup_vs_sb_wall = train_time_SB / train_time_trial     (wall clock, whole budgets)
                with data-parallel trials (SB also timed on K workers, `sb_speed`): the speed-ups
                are wall clock against SB on its fastest worker count, `sb_workers`
steps_to_target, time_to_target_s                           the trial's own, on that clock
steps_ratio_to_target = SB's steps to target / the trial's  (hardware-free; Shallue et al.)
batch_ratio   = B_trial / B_SB; scaling_efficiency = steps_ratio_to_target / batch_ratio
steps_ratio_bound = McCandlish's bound on the steps ratio from B_simple of SB (when measured)
steps_ratio_vs_sb = steps_SB / steps_trial                (whole budgets)
gap_closed    = (acc − acc_LB) / (acc_SB − acc_LB)         validation (selection)
test_gap_closed                                            the same on test (report only)
"""

from __future__ import annotations

import math
from typing import Any

from remedies.results.target import fastest_sb, predicted_steps_ratio, reach

# what a reference run keeps of its results
KEEP = (
    "val_accuracy",
    "test_accuracy",
    "train_accuracy",
    "train_time_s",
    "train_cpu_s",
    "epochs_run",
    "steps",
    "threads",
    "batch_size",
    "device",
    "wall_time_s",
    "noise_scale",  # B_simple at the trained point (SB references measure it)
)


def gap_closed(acc: float | None, sb: float, lb: float) -> float | None:
    """(acc − LB) / (SB − LB); None when SB is not above LB (there is no gap to close)."""
    if acc is None or not math.isfinite(acc) or sb <= lb:
        return None
    return (acc - lb) / (sb - lb)


def scores(refs: dict[str, Any] | None, metrics: dict[str, Any]) -> dict[str, float | None]:
    """A trial's reference-relative metrics from its own (`val_accuracy`, `test_accuracy`,
    `train_time_s`) and the references the search ran."""
    if not refs:
        return {}
    sb, lb = refs["sb"], refs.get("lb")
    t = metrics.get("train_time_s")
    workers, sb_t = fastest_sb(refs)
    out: dict[str, float | None] = {"speedup_vs_sb_wall": sb_t / t if t and t > 0 else None}
    c, sb_c = metrics.get("train_cpu_s"), sb.get("train_cpu_s")
    on_cpu = str(metrics.get("device", "cpu")) == "cpu" and str(sb.get("device")) == "cpu"
    one = not refs.get("sb_speed")  # no data-parallel trials: same-process CPU time applies
    cpu_clock = bool(one and on_cpu and c and sb_c)
    out["speedup_vs_sb_budget"] = sb_c / c if cpu_clock else out["speedup_vs_sb_wall"]
    # hardware-free (Shallue et al. 2018 count steps): SB's optimiser steps / the trial's
    steps, sb_steps = metrics.get("steps"), sb.get("steps")
    out["steps_ratio_vs_sb"] = sb_steps / steps if steps and sb_steps else None
    out.update(to_target(refs, {**metrics, **out}, "train_cpu_s" if cpu_clock else "train_time_s"))
    if lb:
        out["gap_closed"] = gap_closed(
            metrics.get("val_accuracy"), sb["val_accuracy"], lb["val_accuracy"]
        )
        out["test_gap_closed"] = gap_closed(
            metrics.get("test_accuracy"), sb["test_accuracy"], lb["test_accuracy"]
        )
    return out


def to_target(refs: dict[str, Any], metrics: dict[str, Any], clock: str) -> dict[str, Any]:
    """The time-to-target figures of a run with curve `metrics["curve"]` (see the module
    docstring); `speedup_vs_sb` None when it never reached the target. Without a target in
    `refs` (a search from before targets), the whole-budget ratio stands in, as it did then."""
    tgt = refs.get("target")
    if not tgt:
        return {"speedup_vs_sb": metrics.get("speedup_vs_sb_budget")}
    sb = refs["sb"]
    mine = reach(metrics.get("curve"), tgt["accuracy"])
    out: dict[str, Any] = {"reached_target": 1.0 if mine else 0.0, "speedup_vs_sb": None}
    b, b_sb = metrics.get("batch_size"), sb.get("batch_size")
    if b and b_sb:
        out["batch_ratio"] = b / b_sb
        if finite(b_noise := sb.get("noise_scale")):
            out["steps_ratio_bound"] = predicted_steps_ratio(b, b_sb, b_noise)  # type: ignore[arg-type]
    if mine is None:  # never reached: infinitely slow — 0, so a sampler can still rank it
        out["speedup_vs_sb"] = 0.0
        return out
    out["time_to_target_s"] = mine.time(clock)
    out["steps_to_target"] = mine.steps
    sb_reach = reach(sb.get("curve"), tgt["accuracy"])
    if sb_reach is None:
        return out
    if clock == "train_cpu_s":
        t_sb = sb_reach.train_cpu_s
    else:  # wall clock: SB on its fastest worker count to the target
        runs = [sb, *(refs.get("sb_speed") or [])]
        got = [r.train_time_s for x in runs if (r := reach(x.get("curve"), tgt["accuracy"]))]
        t_sb = min(got)
    if out["time_to_target_s"] > 0:
        out["speedup_vs_sb"] = t_sb / out["time_to_target_s"]
    if mine.steps > 0:
        out["steps_ratio_to_target"] = sb_reach.steps / mine.steps
        if out.get("batch_ratio"):
            out["scaling_efficiency"] = out["steps_ratio_to_target"] / out["batch_ratio"]
    return out


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
