"""SB on one worker against plain LB and a large-batch recipe on 1 and 2 data-parallel workers.

Each row is `remedies train` of one config over the same seeds, interleaved seed by seed (load on
a shared machine hits every row alike). Printed per row: test accuracy (mean ± std), training
time (the step loops, `train_time_s`; on K workers rank 0's), its ratio to SB's, and the
optimiser steps and their ratio to SB's (hardware-free, as Shallue et al. 2018 count it).

    python benchmarks/data_parallel.py [--recipe best.yaml] [--seeds 0 1 2] [--workdir DIR]

Without `--recipe` the recipe is the README's shipped example of a large-batch run with
remedies (`configs/f1_mnist1d_lb_remedies.yaml`). On a 2-core CPU two workers share the two
cores with the Ray Train controller, so the time ratio there says little about a cluster; the
steps ratio does not depend on the hardware.

Then the same rows timed to SB's accuracy (MLPerf's time to target; `benchmarks/to_target.py`):
per seed the target is that seed's SB best validation accuracy less one standard error, and each
row's time is its wall clock (rank 0's step loops) up to its first epoch at or above it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from to_target import to_target_table  # benchmarks/to_target.py, beside this script


def train(cfg: Path, seed: int, workers: int, cwd: Path, extra: list[str]) -> dict:
    out = cwd / f"{cfg.stem}-w{workers}-seed{seed}.json"
    args = [
        "remedies",
        "train",
        str(cfg),
        "--set",
        f"train.seed={seed}",
        "--set",
        f"train.workers={workers}",
        "--set",
        "measure.keskar.enabled=false",
        *extra,
        "--quiet",
        "--json",
        str(out),
    ]
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", type=Path, default=root / "configs/f1_mnist1d_lb_remedies.yaml")
    ap.add_argument("--sb", type=Path, default=root / "configs/f1_mnist1d.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="extra --set for every row")
    a = ap.parse_args()
    a.recipe, a.sb = a.recipe.resolve(), a.sb.resolve()  # the runs start in a work folder
    cwd = a.workdir or Path(tempfile.mkdtemp(prefix="dp-bench-"))
    cwd.mkdir(parents=True, exist_ok=True)
    extra = [x for s in a.set for x in ("--set", s)]
    rows = {  # name → (config, workers, overrides)
        "SB (64), 1 worker": (a.sb, 1, []),
        "plain LB (10 %), 1 worker": (a.sb, 1, ["--set", "train.batch_size=10%"]),
        "plain LB (10 %), 2 workers": (a.sb, 2, ["--set", "train.batch_size=10%"]),
        "recipe, 1 worker": (a.recipe, 1, []),
        "recipe, 2 workers": (a.recipe, 2, []),
    }
    got: dict[str, list[dict]] = {k: [] for k in rows}
    for seed in a.seeds:
        for name, (cfg, k, over) in rows.items():
            got[name].append(train(cfg, seed, k, cwd, over + extra))
            print(f"  seed {seed}: {name} done", file=sys.stderr, flush=True)
    sb = got["SB (64), 1 worker"]
    sb_t = statistics.mean(r["train_time_s"] for r in sb)
    sb_steps = statistics.mean(r["steps"] for r in sb)
    print(f"\n{len(a.seeds)} seeds; training time = the step loops; workdir {cwd}")
    print(f"{'row':<28} {'test acc %':>14} {'train s':>8} {'× SB':>6} {'steps':>7} {'× SB':>6}")
    for name, rs in got.items():
        acc = [r["test_accuracy"] for r in rs]
        t = statistics.mean(r["train_time_s"] for r in rs)
        steps = statistics.mean(r["steps"] for r in rs)
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        print(
            f"{name:<28} {statistics.mean(acc):7.2f} ± {sd:4.2f} {t:8.1f} {sb_t / t:6.2f} "
            f"{steps:7.0f} {sb_steps / steps:6.2f}"
        )
    rec = got["recipe, 2 workers"]
    gap = statistics.mean(r["test_accuracy"] for r in rec) - statistics.mean(
        r["test_accuracy"] for r in sb
    )
    speed = sb_t / statistics.mean(r["train_time_s"] for r in rec)
    verdict = "reached" if gap >= -0.5 and speed >= 3 else "not reached"
    print(
        f"\nrecipe on 2 workers vs SB on 1: {gap:+.2f} points test, {speed:.2f}× training speed "
        f"(whole budgets) — goal ≥ −0.5 points at ≥ 3×: {verdict}"
    )
    from remedies.config import parse_config, read_yaml
    from remedies.data import load_data

    n_val = len(load_data(parse_config(read_yaml(a.sb)).data).y_val)
    tt = to_target_table(got, n_val, "train_time_s", "SB (64), 1 worker")["recipe, 2 workers"]
    ok = gap >= -0.5 and bool(tt) and min(tt) >= 3
    shown = " / ".join(f"{v:.2f}" for v in tt) or "not reached"
    print(
        f"recipe on 2 workers vs SB on 1, time to SB's accuracy (wall): {shown}× per seed "
        f"— goal ≥ −0.5 points at ≥ 3× on every seed: {'reached' if ok else 'not reached'}"
    )


if __name__ == "__main__":
    main()
