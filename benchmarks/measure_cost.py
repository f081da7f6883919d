"""What the search's second objective costs, and whether its cheap reading ranks like the full one.

    nice -n 10 python benchmarks/measure_cost.py [--space search_spaces/quickstart.yaml]
        [--reps 3] [--cache DIR] [--candidates JSON ...]

Trains ≥ 12 models on the shipped spaces' base (MNIST-1D 4000, F1 width 0.5, 12 epochs, one
thread as a `cpu: 1` trial runs) spanning SB (batch 64), LB (10 %) and LB with remedies, then
for each model reads Keskar sharpness twice, exactly as `remedies.engine.trainer.train` does after
training (`measure_data` + `run_measures`):

* the **shipped search setting**: the space's `measure:` section (or each `--candidates` one);
* the **full default**: `MeasureConfig()` — full space, ε ∈ {1e-3, 5e-4}, 10 L-BFGS-B
  iterations, the whole training set (the paper's Table 3 measurement).

Printed per setting: measure time ÷ training time per model (median and max over the models;
training time = the `train()` call's wall time, its measure excluded, and — stricter — the step
loop alone, `train_time_s`), the measure's wall time, Kendall τ (scipy.stats.kendalltau) between
the setting's `keskar_full_eps1e-03` and the full default's over the models, and the subset's
error: the setting's reading against the same solver settings on the whole training set.
Measure times are the median of --reps repetitions; training is timed once per model.
`--cache DIR` keeps trained models (and their training times) between runs of the script; the
output says when times come from the cache.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from scipy.stats import kendalltau

from remedies.config import RunConfig, apply_overrides, parse_config
from remedies.data import load_data
from remedies.engine.trainer import measure_data, train
from remedies.measures import run_measures

KEY = "keskar_full_eps1e-03"  # the search objective of the shipped spaces

# (name, overrides on the space's base): SB, LB over seeds and lrs, LB with remedies
MODELS: list[tuple[str, list[str]]] = [
    ("SB lr1e-3 s0", ["train.batch_size=64"]),
    ("SB lr1e-3 s1", ["train.batch_size=64", "train.seed=1"]),
    ("SB lr3e-4 s0", ["train.batch_size=64", "train.lr=3e-4"]),
    ("LB lr1e-3 s0", []),
    ("LB lr1e-3 s1", ["train.seed=1"]),
    ("LB lr3e-3 s0", ["train.lr=3e-3"]),
    ("LB lr1e-2 s0", ["train.lr=1e-2"]),
    ("LB lr3e-4 s0", ["train.lr=3e-4"]),
    ("LB+augment", ["remedies.augment={}"]),
    ("LB+sam", ["remedies.sam={}"]),
    ("LB+ghost_bn", ["remedies.ghost_bn={}"]),
    ("LB+warm_start", ["remedies.warm_start={}"]),
    ("LB+lr_scaling sqrt", ["remedies.lr_scaling={}"]),
    ("LB+lr_scaling linear", ["remedies.lr_scaling={rule: linear}"]),
    ("LB+train_longer", ["remedies.train_longer={}"]),
    ("LB+ws+lrs+aug", ["remedies.warm_start={}", "remedies.lr_scaling={}", "remedies.augment={}"]),
]


def space_base(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The space's base run config (one thread, no checkpoint, no measure) and its measure."""
    space = yaml.safe_load(path.read_text())
    base = copy.deepcopy(space["base"])
    shipped = base.pop("measure", {}) or {}
    base.setdefault("train", {})["threads"] = max(1, int(space.get("resources", {}).get("cpu", 1)))
    return base, shipped


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}"
    )


def train_model(name: str, raw: dict[str, Any], splits: Any, cache: Path | None) -> dict[str, Any]:
    """Train one model (measure off) and time it; with a cache, reuse a model trained before."""
    tag = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{tag}.pt" if cache is not None else None
    if path is not None and path.exists():
        return {**torch.load(path, weights_only=False), "cached": True}
    t, c = time.perf_counter(), time.process_time()
    r = train(parse_config(raw), splits=splits, measure=False, progress=False)
    entry = {
        "raw": raw,
        "model": r.model,
        "train_wall_s": time.perf_counter() - t,
        "train_cpu_s": time.process_time() - c,
        "train_loop_s": r.train_time_s,
        "test_accuracy": r.test_accuracy,
        "train_loss": r.train_loss,
    }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(entry, path)
    return {**entry, "cached": False}


def read(entry: dict[str, Any], measure: dict[str, Any], splits: Any, reps: int) -> dict[str, Any]:
    """One setting's reading of one model, timed as `train()` times its measure (`measure_data`
    + `run_measures`); wall and CPU time are the medians of `reps` repetitions."""
    cfg: RunConfig = parse_config({**entry["raw"], "measure": measure})
    model = entry["model"]
    device = next(model.parameters()).device
    walls, cpus = [], []
    values: dict[str, float] = {}
    details: list[dict[str, Any]] = []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        X, Y = measure_data(splits, cfg, device)
        values, details = run_measures(model, X, Y, cfg.measure)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    rec = next(d for d in details if d["key"] == KEY)
    return {
        "value": values[KEY],
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "record": rec,
    }


def settings(rec: dict[str, Any]) -> str:
    """What a reading's details record says about how it was made."""
    return (
        f"n_samples {rec['n_samples']} of {rec['n_samples_total']} (subset_seed "
        f"{rec['subset_seed']}), eps {rec['eps']:g}, iters {rec['iters']}, "
        f"init {rec['init']}, seed {rec['seed']}, function_evals {rec['function_evals']}, "
        f"{rec['dtype']}"
    )


def whole_set(measure: dict[str, Any]) -> dict[str, Any]:
    """The same solver settings on the whole training set: what the subset's error is against."""
    return {k: v for k, v in measure.items() if k not in ("max_samples", "subset_seed")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", type=Path, default=Path("search_spaces/quickstart.yaml"))
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions of a cheap reading")
    ap.add_argument("--cache", type=Path, default=None, help="keep trained models here")
    ap.add_argument(
        "--candidates",
        nargs="*",
        default=[],
        help="more measure: sections (JSON) to compare with the shipped one",
    )
    ap.add_argument(
        "--subset-seeds",
        type=int,
        nargs="*",
        default=[1, 2],
        help="other subset seeds to read the shipped setting with (tau only)",
    )
    args = ap.parse_args()
    t_start = time.perf_counter()
    base, shipped = space_base(args.space)
    full: dict[str, Any] = {}  # MeasureConfig() defaults: the paper's Table 3 reading
    cheap = [shipped] + [json.loads(c) for c in args.candidates]
    reseeded = [{**shipped, "subset_seed": s} for s in args.subset_seeds]
    print(f"measure_cost: {datetime.date.today()}, {machine()}")
    print(f"space {args.space}: base {json.dumps(base)}")
    print(f"shipped setting: measure: {json.dumps(shipped)}")
    print(
        f"full default:    measure: {{}} (MeasureConfig(): {KEY} and eps 5e-04, 10 iterations, "
        "whole training set)"
    )
    splits = load_data(parse_config(base).data)
    rows = []
    print(
        f"\n{'model':<22} {'train s':>7} {'loop s':>6} {'test %':>6} {'loss':>8} | "
        f"{'full':>7} {'s':>5} | {'shipped':>7} {'s':>5}"
    )
    for name, overrides in MODELS:
        e = train_model(name, apply_overrides(base, overrides), splits, args.cache)
        row = {
            "name": name,
            "entry": e,
            "full": read(e, full, splits, 1),
            "cheap": [read(e, m, splits, args.reps) for m in cheap],
            "whole": [read(e, whole_set(m), splits, 1) for m in cheap],
            "reseeded": [read(e, m, splits, 1) for m in reseeded],
        }
        rows.append(row)
        f, c = row["full"], row["cheap"][0]
        print(
            f"{name:<22} {e['train_wall_s']:7.2f} {e['train_loop_s']:6.2f} "
            f"{e['test_accuracy']:6.1f} {e['train_loss']:8.1e} | {f['value']:7.1f} "
            f"{f['wall_s']:5.2f} | {c['value']:7.1f} {c['wall_s']:5.3f}"
            f"{'  [trained earlier: cached]' if e['cached'] else ''}",
            flush=True,
        )

    full_vals = [r["full"]["value"] for r in rows]

    def costs(key: str, i: int | None) -> dict[str, list[float]]:
        reads = [r["full"] if i is None else r[key][i] for r in rows]
        ents = [r["entry"] for r in rows]
        return {
            "wall": [m["wall_s"] / e["train_wall_s"] for m, e in zip(reads, ents, strict=True)],
            "loop": [m["wall_s"] / e["train_loop_s"] for m, e in zip(reads, ents, strict=True)],
            "cpu": [m["cpu_s"] / e["train_cpu_s"] for m, e in zip(reads, ents, strict=True)],
            "secs": [m["wall_s"] for m in reads],
        }

    def fmt_cost(c: dict[str, list[float]]) -> str:
        med, mx = statistics.median, max
        return (
            f"{med(c['wall']):6.1%} {mx(c['wall']):6.1%} | {med(c['loop']):6.1%} | "
            f"{med(c['cpu']):6.1%} {mx(c['cpu']):6.1%} | {med(c['secs']):6.3f}"
        )

    print(
        f"\nmeasure time / training time per model, {len(rows)} models (train = the train() "
        "call, measure off; loop = its step loop alone; cpu = CPU seconds of both)"
    )
    print(
        f"{'setting':<64} {'median':>6} {'max':>6} | {'loop':>6} | {'cpu':>6} {'max':>6} | "
        f"{'med s':>6} | "
        f"{'tau':>5} {'p':>7} | subset err"
    )
    print(f"{'full default {}':<64} {fmt_cost(costs('full', None))} | {1.0:5.3f} {'':>7} |")
    for i, m in enumerate(cheap):
        vals = [r["cheap"][i]["value"] for r in rows]
        tau = kendalltau(vals, full_vals)
        errs = [abs(r["cheap"][i]["value"] / r["whole"][i]["value"] - 1) for r in rows]
        label = ("shipped " if i == 0 else "") + json.dumps(m)
        print(
            f"{label:<64} {fmt_cost(costs('cheap', i))} | {tau.statistic:5.3f} "
            f"{tau.pvalue:7.1e} | median {statistics.median(errs):.1%} max {max(errs):.1%}"
        )
    for j, m in enumerate(reseeded):
        tau = kendalltau([r["reseeded"][j]["value"] for r in rows], full_vals)
        label = f"  same, subset_seed {m['subset_seed']}"
        print(f"{label:<64} {'':>53} | {tau.statistic:5.3f} {tau.pvalue:7.1e} |")
    print(f"\nshipped reading's details (first model): {settings(rows[0]['cheap'][0]['record'])}")
    print(f"full default's details (first model):    {settings(rows[0]['full']['record'])}")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
