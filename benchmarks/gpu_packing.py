"""Trials per hour on one GPU: a search whose trials share it (`gpu: 0.25`, four at once) against
the same search with a whole GPU per trial (`gpu: 1`, one at a time), run in the same process.

Small models leave most of a GPU idle, so packing should multiply throughput; this measures by
how much, through the real service (Ray Tune scheduling, Optuna, MLflow on SQLite). Each run's
tags say what it got (`device`, `gpu_ids`, `resources`). Needs a CUDA GPU.

    python benchmarks/gpu_packing.py [--trials 4] [--epochs 20] [--samples 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=2, help="rounds of (whole, packed), alternated")
    p.add_argument("--out", type=Path, default=None, help="folder for the result lines")
    args = p.parse_args()

    import torch

    from remedies.search.driver import SearchOptions, run_search
    from remedies.search.space import parse_space
    from remedies.stores import tracking

    assert torch.cuda.is_available(), "needs a CUDA GPU"
    rows = []
    # alternated rounds, so neither setting gets the warm caches (data, imports) the other paid for
    for share in [1, 0.25] * args.repeats + [1]:
        space = parse_space(
            {
                "name": f"gpu{share}",
                "base": {
                    "data": {"num_samples": args.samples},
                    "model": {"name": "F1"},
                    "train": {"batch_size": "10%", "epochs": args.epochs, "checkpoint": False},
                    "measure": {"keskar": {"eps": [1e-3], "iters": 5}, "max_samples": 1000},
                },
                "params": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
                "sampler": {"name": "random", "seed": 0},
                "asha": {"enabled": False},
                "num_samples": args.trials,
                "max_concurrent": args.trials,
                "resources": {"cpu": 1, "gpu": share},
            }
        )
        with tempfile.TemporaryDirectory() as d:
            os.chdir(d)
            t0 = time.perf_counter()
            s = run_search(space, SearchOptions(name=f"g{share}", quiet=True))
            wall = time.perf_counter() - t0
            uri = tracking.resolve_uri(None)
            every = tracking.client(uri).search_runs([tracking.experiment_id(uri, space.name)])
            parent = next(r for r in every if r.data.tags.get("role") == "search")
            runs = tracking.child_runs(uri, space.name, parent.info.run_id)
            tags = sorted(
                {
                    (
                        r.data.tags.get("device"),
                        r.data.tags.get("gpu_ids"),
                        r.data.tags.get("resources"),
                    )
                    for r in runs
                }
            )
        rows.append((share, wall, s.wall_time_s, s.counts, tags))
        print(
            f"gpu {share}: {args.trials} trials in {wall:.1f}s (search {s.wall_time_s:.1f}s) "
            f"→ {args.trials * 3600 / wall:.0f} trials/h  {s.counts}  tags {tags}",
            flush=True,
        )
    import statistics

    base = statistics.median(r[1] for r in rows[1:] if r[0] == 1)  # the first paid the caches
    packed = statistics.median(r[1] for r in rows if r[0] == 0.25)
    lines = [
        f"GPU: {torch.cuda.get_device_name(0)}",
        f"median wall: whole GPU {base:.1f}s, packed {packed:.1f}s for {args.trials} trials",
        f"packed (gpu 0.25) / whole GPU (gpu 1) throughput: {base / packed:.2f}x",
    ]
    print("\n".join(lines))
    if args.out:
        (args.out / "gpu_packing.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
