"""The paper's core comparison on the offline default: SB (64) vs LB (10%) with ADAM, several seeds.

Prints per-seed test accuracy and the configured sharpness measures, then mean ± std and the
LB/SB sharpness ratio per seed. A check of the engine and measures, not a unit test.

    python benchmarks/lb_vs_sb.py [--seeds 0 1 2] [--epochs 20] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

from remedies.config import apply_overrides, parse_config
from remedies.data import load_data
from remedies.engine.trainer import train

BASE = {
    "data": {"name": "mnist1d", "num_samples": 10000},
    "model": {"name": "F1"},
    "train": {"batch_size": 64, "epochs": 20, "optimizer": "adam", "lr": 0.001, "seed": 0},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--sb", default="64")
    ap.add_argument("--lb", default="10%")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    raw = apply_overrides(BASE, [f"train.epochs={args.epochs}", *args.set])
    splits = load_data(parse_config(raw).data)
    rows = []
    for seed in args.seeds:
        for regime, bs in (("SB", args.sb), ("LB", args.lb)):
            cfg = parse_config(
                apply_overrides(raw, [f"train.seed={seed}", f"train.batch_size={bs}"])
            )
            t = time.perf_counter()
            r = train(cfg, splits=splits, progress=False)
            rows.append((seed, regime, r))
            sharp = "  ".join(f"{k}={v:.3g}" for k, v in r.sharpness.items())
            print(
                f"seed {seed} {regime} (batch {r.batch_size:>4}): train {r.train_accuracy:6.2f}%"
                f"  test {r.test_accuracy:6.2f}%  {sharp}  [{time.perf_counter() - t:.0f}s]",
                flush=True,
            )

    def ms(vals: list[float]) -> str:
        return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals) if len(vals) > 1 else 0:.2f}"

    print("\n| regime | train acc % | test acc % | " + " | ".join(rows[0][2].sharpness) + " |")
    for regime in ("SB", "LB"):
        rs = [r for _, g, r in rows if g == regime]
        cells = [ms([r.train_accuracy for r in rs]), ms([r.test_accuracy for r in rs])]
        cells += [ms([r.sharpness[k] for r in rs]) for k in rs[0].sharpness]
        print(f"| {regime} | " + " | ".join(cells) + " |")
    by_seed = {(s, g): r for s, g, r in rows}
    for s in args.seeds:
        sb, lb = by_seed[(s, "SB")], by_seed[(s, "LB")]
        ratios = "  ".join(
            f"{k}: {lb.sharpness[k] / sb.sharpness[k]:.1f}x"
            for k in sb.sharpness
            if sb.sharpness[k] > 0
        )
        print(
            f"seed {s}: test LB-SB {lb.test_accuracy - sb.test_accuracy:+.2f} pts  "
            f"sharpness LB/SB {ratios}"
        )


if __name__ == "__main__":
    main()
