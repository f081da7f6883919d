"""Service overhead: the same trials run by `remedies search` vs serially in one plain process.

Goal (issue 5): service wall time ≤ 1.15 × (serial work / concurrency) for trials of ≥ 20 s.
The trials are identical configs except the seed (random sampler over a categorical seed, ASHA
off), so the service does the same work as the serial loop; its wall time includes Ray start-up,
MLflow logging over SQLite, Optuna storage and the sharpness measures.

    python benchmarks/search_overhead.py [--trials 8] [--concurrency 2] [--epochs 130]

A third line runs the same trials in a plain `multiprocessing` pool of `concurrency` processes:
on a machine shared with other work, that — not work / concurrency — is what is attainable, and
service / pool isolates the service's own overhead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

BASE = {
    "data": {"name": "mnist1d", "num_samples": 4000},
    "model": {"name": "F1", "width": 0.5},
    "train": {"batch_size": 64, "epochs": 6, "lr": 0.001, "seed": 0, "checkpoint": False},
    "measure": {"keskar": {"eps": [1e-3], "iters": 5}, "max_samples": 1000},
}


def _one(seed_epochs: tuple[int, int]) -> float:
    seed, epochs = seed_epochs
    import torch

    from remedies.config import apply_overrides, parse_config
    from remedies.engine.trainer import train

    torch.set_num_threads(1)
    cfg = parse_config(apply_overrides(BASE, [f"train.seed={seed}", f"train.epochs={epochs}"]))
    t0 = time.perf_counter()
    train(cfg, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=130)  # ≈ 20 s per trial on one core here
    args = ap.parse_args()
    BASE["train"]["epochs"] = args.epochs

    import torch

    from remedies.config import apply_overrides, parse_config
    from remedies.data import load_data
    from remedies.engine.trainer import train

    # serial: one process, one thread per trial (what each service trial gets: resources.cpu=1)
    torch.set_num_threads(1)
    load_data(parse_config(BASE).data)
    times = []
    for seed in range(args.trials):
        cfg = parse_config(apply_overrides(BASE, [f"train.seed={seed}"]))
        t0 = time.perf_counter()
        train(cfg, progress=False)
        times.append(time.perf_counter() - t0)
        print(f"serial trial seed={seed}: {times[-1]:.1f}s", flush=True)
    work = sum(times)

    import multiprocessing as mp

    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.concurrency) as pool:
        pool.map(_one, [(s, args.epochs) for s in range(args.trials)], chunksize=1)
    pool_wall = time.perf_counter() - t0
    print(f"plain pool of {args.concurrency}: {pool_wall:.1f}s", flush=True)

    from remedies.search.driver import SearchOptions, run_search
    from remedies.search.space import parse_space

    space = parse_space(
        {
            "name": "overhead",
            "base": BASE,
            "params": {"train.seed": {"type": "categorical", "choices": list(range(args.trials))}},
            "sampler": {"name": "random", "seed": 0},
            "asha": {"enabled": False},
            "num_samples": args.trials,
            "max_concurrent": args.concurrency,
            "resources": {"cpu": 1, "gpu": 0},
        }
    )
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        t0 = time.perf_counter()
        opts = SearchOptions(
            name="overhead", quiet=True, storage=f"{d}/studies.db", results_dir=f"{d}/ray"
        )
        s = run_search(space, opts)
        wall = time.perf_counter() - t0
    ideal = work / args.concurrency
    print(f"\ntrials {args.trials} ({s['counts']}), mean serial trial {work / args.trials:.1f}s")
    print(f"serial work {work:.1f}s / concurrency {args.concurrency} = {ideal:.1f}s")
    print(f"service wall {wall:.1f}s (incl. Ray start-up) → ratio {wall / ideal:.2f} (goal ≤ 1.15)")
    run = s["wall_time_s"]  # from the Tuner's start: without Ray/MLflow/Optuna set-up
    print(f"service wall without set-up {run:.1f}s → ratio {run / ideal:.2f}")
    print(
        f"plain process pool {pool_wall:.1f}s → service / pool {wall / pool_wall:.2f} "
        f"(without set-up {run / pool_wall:.2f})"
    )


if __name__ == "__main__":
    main()
