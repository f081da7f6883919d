"""Issue 4's table: every catalogue remedy at its defaults on LB, next to plain LB and SB.

F1 on MNIST-1D (10000 samples), ADAM lr 1e-3, 20 epochs, SB = 64, LB = 10% of the training set;
each row is mean ± std over seeds of test accuracy and Keskar sharpness (full space, ε = 1e-3 and
5e-4, from `remedies.measures`). Runs go to a process pool (one torch thread each), so on a
machine with many cores `--jobs` ≈ cores finishes the 33 runs in a few minutes (16 cores: ~2 min;
2 busy cores: over an hour with measures — use `--no-measure` or fewer `--rows` there).

    python benchmarks/remedy_table.py [--seeds 0 1 2] [--jobs 4] [--rows LB sam ...] [--no-measure]
                                      [--set train.device=cpu ...] [--json runs.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

BASE: dict[str, Any] = {
    "data": {"name": "mnist1d", "num_samples": 10000},
    "model": {"name": "F1"},
    "train": {
        "batch_size": "10%",
        "epochs": 20,
        "optimizer": "adam",
        "lr": 0.001,
        "checkpoint": False,
    },
}
SB_BATCH = 64
REMEDY_ROWS = [
    "augment",
    "conservative",
    "adversarial",
    "warm_start",
    "lr_scaling",
    "ghost_bn",
    "sam",
    "train_longer",
    "batch_ramp",
    "trust_ratio",
    "grad_noise",
]
SHARP = ("keskar_full_eps1e-03", "keskar_full_eps5e-04")


def row_config(row: str, seed: int, overrides: list[str]) -> dict[str, Any]:
    """The raw run config of one table row: SB, LB, or LB + one remedy at its defaults."""
    from remedies.config import apply_overrides

    raw = apply_overrides(BASE, [f"train.seed={seed}", *overrides])
    if row == "SB":
        raw["train"]["batch_size"] = SB_BATCH
    elif row != "LB":  # the row's remedy at its defaults, or as `--set remedies.<row>.…` says
        raw["remedies"] = {row: raw.get("remedies", {}).get(row, {})}
    return raw


def run_one(job: tuple[str, int, list[str], bool]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # parallelism comes from the process pool
    from remedies.config import parse_config
    from remedies.engine.trainer import train

    row, seed, overrides, measure = job
    t = time.perf_counter()
    r = train(parse_config(row_config(row, seed, overrides)), measure=measure, progress=False)
    return {
        "row": row,
        "seed": seed,
        "test_accuracy": r.test_accuracy,
        "train_accuracy": r.train_accuracy,
        "epochs": r.epochs_run,
        "steps": r.history[-1]["steps"] if r.history else 0,
        "diverged": r.diverged,
        **{k: r.sharpness.get(k, float("nan")) for k in SHARP},
        "wall_s": time.perf_counter() - t,
    }


def ms(vals: list[float], fmt: str = ".2f") -> str:
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):{fmt}} ± {sd:{fmt}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", default=["SB", "LB", *REMEDY_ROWS])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-measure", action="store_true", help="accuracy only (fast)")
    ap.add_argument("--set", action="append", default=[], help="override for every run")
    ap.add_argument("--json", help="also write every run's numbers to this file")
    ap.add_argument("--load", help="print the table from a --json file of an earlier run")
    args = ap.parse_args()
    if args.load:
        with open(args.load) as f:
            runs = json.load(f)
        print_table([r for r in args.rows if any(x["row"] == r for x in runs)], runs)
        return

    from remedies.config import parse_config
    from remedies.data import load_data

    load_data(parse_config(row_config("LB", 0, args.set)).data)  # generate/cache data once
    jobs = [(row, s, args.set, not args.no_measure) for row in args.rows for s in args.seeds]
    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for fut in as_completed([pool.submit(run_one, j) for j in jobs]):
            res = fut.result()
            runs.append(res)
            print(
                f"  {res['row']:<13} seed {res['seed']}: test {res['test_accuracy']:6.2f}%  "
                f"sharp(1e-3) {res[SHARP[0]]:9.3f}  epochs {res['epochs']:>3}  "
                f"[{res['wall_s']:.0f}s]",
                file=sys.stderr,
                flush=True,
            )
            if args.json:  # rewritten after every run, so a cut-off job keeps what finished
                with open(args.json, "w") as f:
                    json.dump(runs, f, indent=1)

    print_table(args.rows, runs)


def print_table(rows: list[str], runs: list[dict[str, Any]]) -> None:
    lb = (
        {
            k: statistics.mean(r[k] for r in runs if r["row"] == "LB")
            for k in ("test_accuracy", SHARP[0])
        }
        if any(r["row"] == "LB" for r in runs)
        else None
    )
    print(
        "| run | test acc % | train acc % | sharpness ε=1e-3 | sharpness ε=5e-4 | "
        "sharp. vs LB | steps |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        rs = [r for r in runs if r["row"] == row]
        label = "SB (64)" if row == "SB" else "LB (10%)" if row == "LB" else f"LB + {row}"
        ratio = (
            f"{statistics.mean(r[SHARP[0]] for r in rs) / lb[SHARP[0]]:.2g}×"
            if lb and lb[SHARP[0]] > 0
            else "–"
        )
        s1, s2 = (ms([r[k] for r in rs], ".3g") for k in SHARP)
        print(
            f"| {label} | {ms([r['test_accuracy'] for r in rs])} | "
            f"{ms([r['train_accuracy'] for r in rs])} | {s1} | {s2} | {ratio} | "
            f"{rs[0]['steps']} |"
        )


if __name__ == "__main__":
    main()
