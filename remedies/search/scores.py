"""A trial's standing against the search's references: speed-up over SB and gap closed.

speedup_vs_sb = train_cpu_SB / train_cpu_trial            (training only, same threads; on a
                GPU, or where CPU time was not recorded: train_time, the wall clock)
speedup_vs_sb_wall = train_time_SB / train_time_trial     (wall clock, always reported)
                with data-parallel trials (SB also timed on K workers, `sb_speed`): both are
                wall clock against SB on its fastest worker count, `sb_workers`
steps_ratio_vs_sb = steps_SB / steps_trial                (optimiser steps: hardware-free)
gap_closed    = (acc − acc_LB) / (acc_SB − acc_LB)         validation (selection)
test_gap_closed                                            the same on test (report only)
"""

from __future__ import annotations

import math
from typing import Any

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
    out["speedup_vs_sb"] = sb_c / c if one and on_cpu and c and sb_c else out["speedup_vs_sb_wall"]
    # hardware-free (Shallue et al. 2018 count steps): SB's optimiser steps / the trial's
    steps, sb_steps = metrics.get("steps"), sb.get("steps")
    out["steps_ratio_vs_sb"] = sb_steps / steps if steps and sb_steps else None
    if lb:
        out["gap_closed"] = gap_closed(
            metrics.get("val_accuracy"), sb["val_accuracy"], lb["val_accuracy"]
        )
        out["test_gap_closed"] = gap_closed(
            metrics.get("test_accuracy"), sb["test_accuracy"], lb["test_accuracy"]
        )
    return out


def fastest_sb(refs: dict[str, Any]) -> tuple[int, float]:
    """(workers, training wall time) of SB on its fastest worker count: the SB reference on one
    worker, or SB timed on a trial's K (`sb_speed`)."""
    runs = [(1, float(refs["sb"]["train_time_s"]))]
    runs += [(int(r["workers"]), float(r["train_time_s"])) for r in refs.get("sb_speed") or []]
    return min(runs, key=lambda wt: wt[1])
