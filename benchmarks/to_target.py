"""The benchmarks' speed-ups to SB's accuracy over seeds (`remedies.results.target`), printed
beside the whole-budget ones: shared by `faster_than_sb.py` and `data_parallel.py`."""

from __future__ import annotations

import statistics

from remedies.results.target import curve_of, reach, sb_target


def to_target_table(
    runs: dict[str, list[dict]], n_val: int, clock: str, sb_row: str = "SB"
) -> dict[str, list[float]]:
    """Print, per row, the speed-up over SB to SB's accuracy (one target per seed: that seed's
    SB best validation accuracy − 1 SE) on `clock` (train_cpu_s or train_time_s), beside the
    whole-budget one, with the steps ratio and the epoch it reached; return the per-seed
    ratios. `runs`: row → one `remedies train --json` summary per seed, `sb_row` the SB row."""

    out: dict[str, list[float]] = {}
    print(f"\n{'':<28} {'to target ×SB':>15} {'budget ×SB':>12} {'steps×':>7} {'epoch':>6}")
    for label, rs in runs.items():
        ratios, budget, steps, epochs = [], [], [], []
        for i, r in enumerate(rs):
            sb = runs[sb_row][i]
            sbc = curve_of(sb["history"])
            tgt = sb_target(sbc, n_val)
            mine, theirs = reach(curve_of(r["history"]), tgt.accuracy), reach(sbc, tgt.accuracy)  # type: ignore[union-attr]
            budget.append(sb[clock] / r[clock])
            if mine and theirs:
                ratios.append(theirs.time(clock) / mine.time(clock))
                steps.append(theirs.steps / mine.steps)
                epochs.append(mine.epoch)
        out[label] = ratios
        m = f"{statistics.mean(ratios):.2f} ± {statistics.pstdev(ratios):.2f}" if ratios else "—"
        reached = f"{len(ratios)}/{len(rs)}"
        print(
            f"{label:<28} {m:>15} {statistics.mean(budget):>12.2f} "
            f"{(statistics.mean(steps) if steps else float('nan')):>7.2f} "
            f"{(statistics.mean(epochs) if epochs else float('nan')):>6.1f}  (reached {reached})"
        )
    return out
